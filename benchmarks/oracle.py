"""Alignment on the oracle task: does each method raise a known reward, and at what KL?

The task (alignment/oracle) is a review-writing task whose preference is a known function, a
sentiment lexicon. The SFT policy learns the review grammar; pairs sampled from it are labelled
by the oracle with Bradley-Terry noise; each method then trains from the SFT policy through the
platform's own DeepSpeed jobs, and every policy is compared with the SFT policy in the same run,
on the same held-out prompts: mean oracle reward, win rate against the SFT policy's samples, KL
to the SFT policy, and length/repetition statistics. The reward model is scored by its pairwise
accuracy against the oracle's noiseless order on held-out pairs.

    python benchmarks/oracle.py                                  # the full sweep, tiny model
    python benchmarks/oracle.py --methods dpo,ppo --betas 0.1 --kl-coefs 0.05   # a short run
    python benchmarks/oracle.py --model smollm2                  # SmolLM2-135M-Instruct (GPU)

Methods: dpo (each --loss-types x --betas), ppo (each --kl-coefs, learned reward model), rloo,
grpo (learned reward model), cai (the same pairs labelled by the platform's AI-feedback judge,
then DPO). Prints a table, writes benchmarks/results/oracle.json and the reward-vs-KL frontier
benchmarks/results/oracle_frontier.png, logs both to MLflow (experiment 'oracle-benchmark' in the
SQLite store of --workspace, or of .alignment/ by default, unless --tracking-uri), and prints the
JSON as the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
METHODS = ("dpo", "ppo", "rloo", "grpo", "cai")
# robust DPO assumes this share of flipped labels (the oracle's noise flips about 4%)
ROBUST_LABEL_SMOOTHING = 0.1


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--config", help="pipeline config (default configs/oracle/MODEL.yaml)")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma list of " + ", ".join(METHODS)
    )
    parser.add_argument(
        "--loss-types", default="sigmoid,ipo,hinge,robust", help="DPO loss variants"
    )
    parser.add_argument("--betas", default="0.05,0.1,0.3", help="DPO beta sweep")
    parser.add_argument("--kl-coefs", default="0.01,0.05,0.2", help="PPO KL-coefficient sweep")
    parser.add_argument(
        "--kl-bound", type=float, default=15.0, help="KL (nats) a target run may reach"
    )
    parser.add_argument("--judge", help="AI-feedback judge model (default: the base model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs-per-prompt", type=int, help="sampled pairs per training prompt")
    parser.add_argument("--eval-samples-per-prompt", type=int, help="samples per held-out prompt")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override")
    parser.add_argument("--workspace", help="workspace folder (default: a temporary one)")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: SQLite in --workspace, or in .alignment/ when the "
        "workspace is temporary)",
    )
    parser.add_argument("--out", default=str(RESULTS / "oracle.json"))
    parser.add_argument("--plot", default=str(RESULTS / "oracle_frontier.png"))
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace):
    from alignment.oracle.experiment import OracleSettings

    if args.model == "smollm2":
        # 135M parameters: fewer, longer samples; sampling on the GPU when there is one
        import torch

        settings = OracleSettings(
            seed=args.seed,
            sft_per_prompt=4,
            pairs_per_prompt=4,
            eval_samples_per_prompt=4,
            max_new_tokens=32,
            device="cuda" if torch.cuda.is_available() else "cpu",
        )
    else:
        # more pairs than the test's: the reward model's held-out accuracy needs them
        settings = OracleSettings(seed=args.seed, pairs_per_prompt=12, held_out_pairs_per_prompt=8)
    given = {
        "pairs_per_prompt": args.pairs_per_prompt,
        "eval_samples_per_prompt": args.eval_samples_per_prompt,
    }
    return dataclasses.replace(settings, **{k: v for k, v in given.items() if v is not None})


def run_methods(args, cfg, prepared, base, settings) -> tuple[list[dict], list[dict], dict | None]:
    """Train and evaluate every requested run; the runs, the failed runs, the reward model's figures."""
    from alignment.errors import AlignmentError
    from alignment.oracle import experiment as ex

    methods = _names(args.methods)
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; known: {', '.join(METHODS)}")
    runs: list[dict] = []
    failures: list[dict] = []

    def attempt(*args, **kwargs):
        try:
            return ex.train(*args, **kwargs)
        except AlignmentError as exc:
            return exc

    def record(method: str, name: str, params: dict, result) -> None:
        if isinstance(result, Exception):  # a failed run is reported, the sweep goes on
            failures.append({"name": name, "method": method, **params, "error": str(result)})
            print(f"[oracle] {name} failed: {result}", file=sys.stderr)
            return
        started = time.perf_counter()
        metrics = ex.evaluate(result.output_dir, prepared.sft_model, base, settings)
        runs.append({
            "name": name, "method": method, **params,
            "train_seconds": result.wall_seconds,
            "eval_seconds": time.perf_counter() - started,
            **metrics,
        })  # fmt: skip
        row = runs[-1]
        print(f"[oracle] {name}: oracle reward {row['oracle_reward']:.3f}, win rate vs SFT "
              f"{row['win_rate_vs_sft']:.3f}, KL {row['kl_to_sft']:.2f}", file=sys.stderr)  # fmt: skip

    reward_model = rm_figures = None
    if {"ppo", "rloo", "grpo"} & set(methods) or "reward" in methods:
        result = ex.train("reward", prepared, cfg, "reward")
        reward_model = result.output_dir
        rm_figures = {
            **ex.reward_model_accuracy(reward_model, prepared.held_out_pairs, settings.device),
            "train_seconds": result.wall_seconds,
        }
        print(f"[oracle] reward model: {rm_figures}", file=sys.stderr)

    if "dpo" in methods:
        for loss in _names(args.loss_types):
            for beta in _floats(args.betas):
                overrides = {"train.dpo.loss_type": loss, "train.dpo.beta": beta,
                             "train.dpo.label_smoothing": ROBUST_LABEL_SMOOTHING if loss == "robust" else 0.0}  # fmt: skip
                name = f"dpo-{loss}-beta{beta:g}"
                result = attempt("dpo", prepared, ex.with_overrides(cfg, overrides), name)
                record("dpo", name, {"loss_type": loss, "beta": beta}, result)
    if "ppo" in methods:
        for coef in _floats(args.kl_coefs):
            name = f"ppo-kl{coef:g}"
            result = attempt("ppo", prepared, ex.with_overrides(cfg, {"train.ppo.kl_coef": coef}),
                              name, reward_model=reward_model)  # fmt: skip
            record("ppo", name, {"kl_coef": coef}, result)
    for method in ("rloo", "grpo"):
        if method in methods:
            result = attempt(method, prepared, cfg, method, reward_model=reward_model)
            record(method, method, {"beta": getattr(cfg.train, method).beta}, result)
    if "cai" in methods:
        judge = Path(args.judge) if args.judge else prepared.base_model
        started = time.perf_counter()
        try:
            labelled, agreement = ex.ai_feedback_preferences(
                judge, prepared, prepared.workdir / "ai_feedback_preferences.parquet"
            )
            result = attempt("dpo", prepared, cfg, "cai-dpo", preferences=labelled)
        except AlignmentError as exc:
            result, agreement = exc, float("nan")
        label_seconds = time.perf_counter() - started - getattr(result, "wall_seconds", 0.0)
        record("cai", "cai-dpo", {"beta": cfg.train.dpo.beta, "judge": str(judge),
                                  "judge_agreement_with_oracle": agreement,
                                  "label_seconds": label_seconds}, result)  # fmt: skip
    return runs, failures, rm_figures


def targets(result: dict, kl_bound: float) -> dict:
    """The task's targets, each with the figure it is judged on."""
    out = {}
    rm = result.get("reward_model")
    if rm:
        out["reward_model_accuracy_vs_oracle_at_least_0.9"] = rm["accuracy_vs_oracle"] >= 0.9
    for method in ("dpo", "ppo"):
        bounded = [
            r for r in result["runs"] if r["method"] == method and r["kl_to_sft"] <= kl_bound
        ]
        if any(r["method"] == method for r in result["runs"]):
            best = max((r["win_rate_vs_sft"] for r in bounded), default=float("nan"))
            out[f"{method}_best_win_rate_vs_sft_within_kl_bound"] = best
            out[f"{method}_win_rate_vs_sft_at_least_0.75"] = bool(best >= 0.75)
    return out


def table(result: dict) -> str:
    sft = result["sft"]
    lines = [
        f"oracle task, model {result['model']}: SFT oracle reward {sft['oracle_reward']:.3f} "
        f"(labels agree with the noiseless oracle on {result['label_agreement']:.3f} of pairs)",
    ]
    if result.get("reward_model"):
        rm = result["reward_model"]
        lines.append(f"reward model: held-out accuracy vs oracle order {rm['accuracy_vs_oracle']:.3f} "
                     f"({rm['pairs_with_an_oracle_order']} pairs), vs noisy labels {rm['accuracy_vs_labels']:.3f}")  # fmt: skip
    header = (f"{'run':24s} {'reward':>7s} {'sft':>6s} {'win':>6s} {'KL':>6s} {'words':>6s} "
              f"{'dist2':>6s} {'rep':>6s} {'uniq':>6s} {'garbl':>6s} {'train s':>8s}")  # fmt: skip
    lines += [header, "-" * len(header)]
    for r in [{"name": "sft", "train_seconds": result["seconds"]["sft"], **sft}, *result["runs"]]:
        lines.append(
            f"{r['name']:24s} {r['oracle_reward']:7.3f} {sft['oracle_reward']:6.3f} "
            f"{r['win_rate_vs_sft']:6.3f} {r['kl_to_sft']:6.2f} {r['length_mean']:6.1f} "
            f"{r['distinct_2']:6.3f} {r['repetition_rate']:6.3f} {r['unique_response_rate']:6.3f} "
            f"{r['off_grammar_rate']:6.3f} {r['train_seconds']:8.1f}"
        )
    lines += [f"{r['name']}: FAILED ({r['error'].splitlines()[0]})" for r in result["failed_runs"]]
    lines += [f"{k}: {v}" for k, v in result["targets"].items()]
    return "\n".join(lines)


def frontier_plot(result: dict, path: Path) -> Path:
    """Oracle reward against KL(policy || SFT), one series per method family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    families: dict[str, list[dict]] = {}
    for r in result["runs"]:
        key = f"DPO ({r['loss_type']})" if r["method"] == "dpo" else r["method"].upper()
        families.setdefault(key, []).append(r)
    for key, rows in sorted(families.items()):
        rows = sorted(rows, key=lambda r: r["kl_to_sft"])
        ax.plot([r["kl_to_sft"] for r in rows], [r["oracle_reward"] for r in rows],
                marker="o", label=key)  # fmt: skip
        for r in rows:
            knob = r.get("beta") if "kl_coef" not in r else r["kl_coef"]
            if knob is not None:
                ax.annotate(f"{knob:g}", (r["kl_to_sft"], r["oracle_reward"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))  # fmt: skip
    ax.scatter([0.0], [result["sft"]["oracle_reward"]], color="black", marker="*", s=120,
               label="SFT", zorder=5)  # fmt: skip
    ax.set_xlabel("KL(policy || SFT), nats per response")
    ax.set_ylabel("mean oracle reward (held-out prompts)")
    ax.set_title(f"Reward vs KL on the oracle task ({result['model']}); labels: beta / KL coef")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def log_to_mlflow(result: dict, files: list[Path], workspace, tracking_uri: str | None) -> str:
    """One MLflow run: the settings as params, every run's figures as metrics, the files."""
    import mlflow

    from alignment import registry
    from alignment.workspace import Workspace

    ws = Workspace(workspace.root, tracking_uri or workspace.tracking_uri_override)
    registry.connect(ws, "oracle-benchmark")
    with mlflow.start_run(run_name=f"oracle-{result['model']}") as run:
        mlflow.log_params({"model": result["model"], **result["settings"]})
        metrics = {"sft/oracle_reward": result["sft"]["oracle_reward"],
                   "label_agreement": result["label_agreement"]}  # fmt: skip
        if result.get("reward_model"):
            metrics["reward_model/accuracy_vs_oracle"] = result["reward_model"][
                "accuracy_vs_oracle"
            ]
        for r in result["runs"]:
            for key in ("oracle_reward", "win_rate_vs_sft", "kl_to_sft", "length_mean",
                        "distinct_2", "repetition_rate", "off_grammar_rate", "train_seconds"):  # fmt: skip
                metrics[f"{r['name']}/{key}"] = r[key]
        mlflow.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)})
        for path in files:
            mlflow.log_artifact(str(path))
        return run.info.run_id


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import os

    for key, value in {"HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                       "TOKENIZERS_PARALLELISM": "false"}.items():  # fmt: skip
        os.environ.setdefault(key, value)
    from alignment.config import load_config
    from alignment.oracle import experiment as ex
    from alignment.workspace import Workspace

    started = time.perf_counter()
    tmp = None
    if args.workspace:
        root = Path(args.workspace).resolve()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="oracle-bench-")
        root = Path(tmp.name)
    config = args.config or ROOT / "configs" / "oracle" / f"{args.model}.yaml"
    cfg = load_config(config, [*(args.set or []), f"workspace.root={root}"])
    settings = _settings(args)

    prepared = ex.prepare(root / "oracle", cfg, settings)
    base = ex.baseline(prepared.sft_model, settings)
    sft = ex.evaluate(prepared.sft_model, prepared.sft_model, base, settings)
    runs, failures, rm_figures = run_methods(args, cfg, prepared, base, settings)
    result = {
        "model": args.model,
        "config": str(config),
        "settings": dataclasses.asdict(settings),
        "overrides": args.set or [],
        "label_agreement": prepared.label_agreement,
        "seconds": {**prepared.seconds, "total": time.perf_counter() - started},
        "sft": sft,
        "reward_model": rm_figures,
        "runs": runs,
        "failed_runs": failures,
    }
    result["targets"] = targets(result, args.kl_bound)
    result["kl_bound"] = args.kl_bound
    print(table(result))
    out, plot = Path(args.out), frontier_plot(result, Path(args.plot))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    # a temporary workspace goes away; the MLflow record goes to the project's own workspace
    mlflow_ws = Workspace(root) if args.workspace else Workspace(ROOT / ".alignment")
    result["mlflow_run_id"] = log_to_mlflow(result, [out, plot], mlflow_ws, args.tracking_uri)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    if tmp is not None:
        tmp.cleanup()
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
