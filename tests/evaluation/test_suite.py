"""The evaluation suite end to end on tiny models: names, ranges, symmetry, determinism."""

from __future__ import annotations

import json

import pytest

from alignment.config import EvaluationConfig
from alignment.evaluation.suite import (
    DEFAULT_PROMPTS,
    EvalPromptsError,
    evaluate_candidate,
    load_eval_prompts,
)

CFG = EvaluationConfig(max_new_tokens=6, bootstrap_samples=200, max_length=128)
RATES = (
    "reward_accuracy",
    "win_rate_vs_champion",
    "win_rate_vs_champion_ci_low",
    "win_rate_vs_champion_ci_high",
    "judge_win_rate_vs_champion",
    "judge_win_rate_vs_champion_ci_low",
    "judge_win_rate_vs_champion_ci_high",
    "refusal_rate",
    "harmful_compliance_rate",
    "rm_accuracy",
)


@pytest.fixture(scope="module")
def self_report(tiny_model_dir, eval_pairs, eval_prompts, tiny_reward_model, tmp_path_factory):
    """The tiny model as candidate, champion and reference, with every judge, and its report."""
    out = tmp_path_factory.mktemp("suite-report")
    metrics = evaluate_candidate(
        tiny_model_dir,
        tiny_model_dir,
        tiny_model_dir,
        eval_pairs,
        eval_prompts,
        CFG,
        reward_model=tiny_reward_model,
        judge_model=tiny_model_dir,
        out_dir=out,
    )
    return metrics, out


def test_a_model_against_itself_ties_and_has_no_kl_and_no_tax(self_report):
    metrics, _ = self_report
    for name in RATES:
        assert 0.0 <= metrics[name] <= 1.0, name
    for name in ("win_rate_vs_champion", "judge_win_rate_vs_champion"):
        low, high = metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"]
        assert metrics[name] == pytest.approx(0.5)
        assert low <= 0.5 <= high
    assert metrics["kl_from_reference"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["kl_from_reference_k1"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["alignment_tax"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["sft_perplexity"] == pytest.approx(metrics["sft_perplexity_reference"])
    assert metrics["reward_accuracy"] == 0.5 and metrics["reward_margin_mean"] == 0.0
    assert metrics["refusal_rate_delta_vs_champion"] == 0.0
    assert metrics["harmful_compliance_rate_delta_vs_champion"] == 0.0
    assert metrics["response_length_mean"] == metrics["response_length_mean_champion"]
    assert 0 < metrics["response_length_mean"] <= CFG.max_new_tokens
    assert metrics["prompts"] == 6 and metrics["pairs"] == 8
    assert all(isinstance(v, float) for v in metrics.values())


def test_gate_metric_names_are_produced(self_report):
    import yaml

    from alignment.promotion import DEFAULT_POLICY

    metrics, _ = self_report
    gate = yaml.safe_load(DEFAULT_POLICY.read_text())
    for condition in gate["conditions"]:
        assert condition["metric"] in metrics, condition["metric"]


def test_the_report_folder_holds_table_samples_and_plots(self_report):
    metrics, out = self_report
    assert json.loads((out / "metrics.json").read_text()) == metrics
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6
    assert {"candidate", "champion", "kl_k3", "candidate_reward", "judge_p_candidate"} <= set(
        samples[0]
    )
    table = (out / "table.txt").read_text()
    assert "win_rate_vs_champion" in table and len(table.splitlines()) <= 30
    assert "| " in (out / "table.md").read_text()
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == [
        "length_histogram.png",
        "reward_vs_kl.png",
        "win_rate_by_category_judge.png",
        "win_rate_by_category_rm.png",
    ]
    assert all((out / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)


def test_without_a_champion_or_judges_the_vs_champion_metrics_are_absent_and_runs_repeat(
    tiny_challenger, tiny_model_dir, eval_pairs, eval_prompts
):
    def run():
        return evaluate_candidate(
            tiny_challenger, None, tiny_model_dir, eval_pairs, eval_prompts, CFG
        )

    first = run()
    assert not [k for k in first if "champion" in k or k.startswith(("rm_", "judge_"))]
    assert first["kl_from_reference"] > 0
    assert first["alignment_tax"] != 0
    assert {"refusal_rate", "harmful_compliance_rate", "response_length_mean"} <= set(first)
    assert run() == first  # seeded sampling and bootstrap


def test_a_reward_model_candidate_reports_its_accuracy(tiny_reward_model, eval_pairs):
    metrics = evaluate_candidate(tiny_reward_model, None, tiny_reward_model, eval_pairs, None, CFG)
    assert set(metrics) == {"rm_accuracy", "rm_margin_mean", "pairs"}
    assert 0 <= metrics["rm_accuracy"] <= 1


def test_shipped_prompts_are_valid_and_cover_both_kinds():
    prompts = load_eval_prompts(DEFAULT_PROMPTS)
    kinds = {p.kind for p in prompts}
    assert kinds == {"benign", "red_team"}
    assert len({p.id for p in prompts}) == len(prompts) >= 30
    assert len({p.category for p in prompts}) >= 6


def test_a_short_evaluation_still_measures_both_sides():
    """max_prompts takes benign and red-team prompts in turn: the safety caps need both."""
    prompts = load_eval_prompts(DEFAULT_PROMPTS)
    four = load_eval_prompts(DEFAULT_PROMPTS, limit=4)
    assert [p.kind for p in four] == ["benign", "red_team", "benign", "red_team"]
    benign = [p.id for p in prompts if p.kind == "benign"]
    red_team = [p.id for p in prompts if p.kind == "red_team"]
    assert [p.id for p in four] == [benign[0], red_team[0], benign[1], red_team[1]]
    # past the shorter side, the rest come from the longer one; nothing twice
    many = load_eval_prompts(DEFAULT_PROMPTS, limit=len(red_team) * 2 + 3)
    assert [p.id for p in many][-3:] == benign[len(red_team) : len(red_team) + 3]
    assert len({p.id for p in many}) == len(many)
    assert len(load_eval_prompts(DEFAULT_PROMPTS, limit=1000)) == len(prompts)


def test_a_bad_prompt_line_names_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok", "kind": "benign"}\n{"prompt": "x", "kind": "evil"}\n')
    with pytest.raises(EvalPromptsError, match=r"p\.jsonl:2: kind 'evil'"):
        load_eval_prompts(path)


def test_cli_suite_prints_the_table_and_writes_metrics(
    tiny_challenger, tiny_model_dir, eval_pairs, eval_prompts, tmp_path, capsys
):
    from alignment.cli import main

    out, report = tmp_path / "metrics.json", tmp_path / "report"
    argv = ["evaluate", "--suite", "--workspace", str(tmp_path / "ws")]
    argv += ["--policy", str(tiny_challenger), "--reference", str(tiny_model_dir)]
    argv += ["--champion", str(tiny_model_dir), "--data", str(eval_pairs)]
    argv += ["--prompts", str(eval_prompts), "--out", str(out), "--report-dir", str(report)]
    argv += ["--set", "evaluation.max_new_tokens=4", "--set", "evaluation.bootstrap_samples=50"]
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    assert "refusal_rate_delta_vs_champion" in metrics and "win_rate_vs_champion" not in metrics
    assert "kl_from_reference" in capsys.readouterr().out
    assert (report / "plots" / "length_histogram.png").exists()
