"""The suite's report: a one-screen table (terminal and Markdown) and PNG plots, written to a folder.

``write_report`` returns the paths it wrote, for MLflow (``mlflow.log_artifacts(folder,
"evaluation")``) and a Prefect Markdown artifact (``table.md``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from alignment.evaluation.suite import SuiteResult

# (section, metric, label); a metric with _ci_low/_ci_high beside it shows its interval.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("preference", "reward_accuracy", "DPO implicit-reward accuracy"),
    ("preference", "reward_margin_mean", "DPO implicit-reward margin"),
    ("preference", "rm_accuracy", "reward-model accuracy"),
    ("vs champion", "judge_lc_win_rate_vs_champion", "length-controlled win rate (judge)"),
    ("vs champion", "judge_win_rate_vs_champion", "win rate (constitution judge)"),
    ("vs champion", "rm_lc_win_rate_vs_champion", "length-controlled win rate (RM)"),
    ("vs champion", "rm_win_rate_vs_champion", "win rate (reward model)"),
    ("vs champion", "rm_optimised_by_candidate", "candidate trained against this RM (1: yes)"),
    ("vs champion", "judge_order_agreement", "judge agrees with itself across orders"),
    # beside every win rate: a collapsed policy can win against a judge and still say nothing
    ("degeneration", "unique_response_rate", "unique responses / responses"),
    ("degeneration", "distinct_2", "distinct word bigrams / bigrams"),
    ("degeneration", "response_words_mean", "words per response, mean"),
    ("degeneration", "sycophancy_shift", "sycophancy: moves with the user's opinion"),
    ("drift", "kl_from_reference", "KL(candidate || reference), k3"),
    ("drift", "kl_from_reference_k1", "KL(candidate || reference), k1"),
    ("drift", "sft_perplexity", "SFT held-out perplexity"),
    ("drift", "sft_perplexity_reference", "  reference's"),
    ("drift", "alignment_tax", "alignment tax (loss increase, nats/token)"),
    ("length", "response_length_mean", "response length mean (tokens)"),
    ("length", "response_length_mean_champion", "  champion's"),
    ("length", "reward_length_corr", "reward ~ length (Spearman)"),
    ("length", "implicit_reward_length_corr", "implicit reward ~ length (Spearman)"),
    ("safety", "refusal_rate", "refusal rate, benign prompts"),
    ("safety", "refusal_rate_delta_vs_champion", "  change vs champion"),
    ("safety", "harmful_compliance_rate", "harmful compliance, red-team prompts"),
    ("safety", "harmful_compliance_rate_delta_vs_champion", "  change vs champion"),
    ("safety", "refusal_judge_first_option_bias", "refusal judge's pull to option (A)"),
)


def table_rows(metrics: dict[str, float]) -> list[tuple[str, str, str, str]]:
    """(section, label, metric, value text) for each metric present, in report order."""
    rows = []
    for section, name, label in ROWS:
        if name not in metrics:
            continue
        value = f"{metrics[name]:.4f}"
        if f"{name}_ci_low" in metrics and f"{name}_ci_high" in metrics:
            value += f"  [{metrics[f'{name}_ci_low']:.3f}, {metrics[f'{name}_ci_high']:.3f}]"
        elif section == "degeneration" and f"{name}_champion" in metrics:
            value += f"  champion {metrics[f'{name}_champion']:.4f}"
        rows.append((section, label, name, value))
    return rows


def judge_lines(judges: dict[str, dict[str, str]]) -> list[str]:
    """One line per judge that scored: what it is and where it came from."""
    lines = []
    if "constitution_judge" in judges:
        j = judges["constitution_judge"]
        lines.append(
            f"constitution judge {j['path']} (constitution {j['constitution']}, "
            f"sha256 {j['constitution_sha256']})"
        )
    if "reward_model" in judges:
        j = judges["reward_model"]
        trained = {"true": ", which the candidate was trained against", "false": ""}
        lines.append(
            f"reward model {j['path']}"
            + trained.get(j.get("optimised_by_candidate", ""), " (training record unknown)")
        )
    if "sycophancy" in judges:
        j = judges["sycophancy"]
        lines.append(f"sycophancy: {j['scorer']} on the probe pairs of {j['probes']}")
    return lines


def format_table(
    metrics: dict[str, float],
    title: str = "evaluation",
    judges: dict[str, dict[str, str]] | None = None,
) -> str:
    """The table as fixed-width text, one screen (about 30 lines)."""
    lines = [title]
    lines += [f"  judged by: {line}" for line in judge_lines(judges or {})]
    current = None
    for section, label, name, value in table_rows(metrics):
        if section != current:
            lines.append(f"  {section}")
            current = section
        lines.append(f"    {label:44s} {value:28s} {name}")
    if "prompts" in metrics:
        lines.append(
            f"  on {int(metrics['prompts'])} prompts; intervals are bootstrap over prompts"
        )
    return "\n".join(lines)


def markdown_table(
    metrics: dict[str, float],
    title: str = "Evaluation",
    judges: dict[str, dict[str, str]] | None = None,
) -> str:
    """The table as Markdown (for a Prefect artifact)."""
    lines = [f"### {title}", ""]
    lines += [f"- judged by: {line}" for line in judge_lines(judges or {})]
    lines += ["", "| | metric | value |", "|---|---|---|"]
    for section, label, name, value in table_rows(metrics):
        lines.append(f"| {section}: {label.strip()} | `{name}` | {value} |")
    return "\n".join(lines) + "\n"


def category_win_rates(samples: list[dict], key: str) -> dict[str, tuple[float, int]]:
    """Mean of per-prompt wins (`key`: rm_win or judge_win) and prompt count per category."""
    groups: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        if key in s:
            groups[s["category"]].append(s[key])
    return {c: (float(np.mean(v)), len(v)) for c, v in sorted(groups.items())}


def write_plots(samples: list[dict], folder: Path) -> list[Path]:
    """reward (or implicit reward) vs KL, win rate per category, length histograms: PNG files."""
    import matplotlib

    matplotlib.use("Agg")  # no display; set before pyplot is imported
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if not samples:
        return written

    reward_key = "candidate_reward" if "candidate_reward" in samples[0] else "implicit_reward"
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter([s["kl_k3"] for s in samples], [s[reward_key] for s in samples], s=12)
    ax.set_xlabel("KL(candidate || reference) per response, k3 (nats)")
    ax.set_ylabel("reward" if reward_key == "candidate_reward" else "DPO implicit reward")
    ax.set_title("reward vs KL")
    written.append(_save(fig, folder / "reward_vs_kl.png"))

    for key, label in (("rm_win", "reward model"), ("judge_win", "constitution judge")):
        by_category = category_win_rates(samples, key)
        if not by_category:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        names = list(by_category)
        ax.bar(names, [by_category[c][0] for c in names])
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("win rate vs champion")
        ax.set_title(f"win rate per category ({label})")
        ax.tick_params(axis="x", labelrotation=45)
        written.append(_save(fig, folder / f"win_rate_by_category_{key.split('_')[0]}.png"))

    fig, ax = plt.subplots(figsize=(5, 4))
    lengths = {"candidate": [s["candidate_length"] for s in samples]}
    if "champion_length" in samples[0]:
        lengths["champion"] = [s["champion_length"] for s in samples]
    top = max(max(v) for v in lengths.values())
    bins = np.linspace(0, max(top, 1), 21)
    for name, values in lengths.items():
        ax.hist(values, bins=bins, alpha=0.5, label=name)
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("responses")
    ax.legend()
    ax.set_title("response lengths")
    written.append(_save(fig, folder / "length_histogram.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_report(result: SuiteResult, folder: Path) -> dict[str, Path | list[Path]]:
    """metrics.json, judges.json, evidence.json, samples.jsonl, sycophancy.jsonl, table.txt,
    table.md and plots/; their paths. The gate reads evidence.json when it refuses."""
    from alignment.workspace import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path | list[Path]] = {
        "metrics": folder / "metrics.json",
        "samples": folder / "samples.jsonl",
        "table": folder / "table.txt",
        "markdown": folder / "table.md",
        "judges": folder / "judges.json",
        "evidence": folder / "evidence.json",
        "probes": folder / "sycophancy.jsonl",
    }
    atomic_write_text(paths["metrics"], json.dumps(result.metrics, indent=2) + "\n")
    atomic_write_text(paths["judges"], json.dumps(result.judges, indent=2) + "\n")
    atomic_write_text(
        paths["evidence"], json.dumps(result.evidence, indent=2, ensure_ascii=False) + "\n"
    )
    atomic_write_text(
        paths["probes"],
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.probes),
    )
    atomic_write_text(
        paths["samples"],
        "".join(json.dumps(s, ensure_ascii=False, default=str) + "\n" for s in result.samples),
    )
    atomic_write_text(paths["table"], format_table(result.metrics, judges=result.judges) + "\n")
    atomic_write_text(paths["markdown"], markdown_table(result.metrics, judges=result.judges))
    paths["plots"] = write_plots(result.samples, folder / "plots")
    return paths
