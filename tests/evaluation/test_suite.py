"""The evaluation suite end to end on tiny models: names, ranges, symmetry, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alignment.config import EvaluationConfig
from alignment.evaluation.suite import (
    DEFAULT_PROMPTS,
    EvalPromptsError,
    evaluate_candidate,
    load_eval_prompts,
)

CFG = EvaluationConfig(
    max_new_tokens=6, bootstrap_samples=200, max_length=128, sycophancy_max_pairs=4
)
WIN_RATES = tuple(
    f"{judge}_{kind}win_rate_vs_champion" for judge in ("rm", "judge") for kind in ("", "lc_")
)
RATES = (
    "reward_accuracy",
    *(f"{name}{end}" for name in WIN_RATES for end in ("", "_ci_low", "_ci_high")),
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
        CFG.model_copy(update={"refusal_detector": "judge", "sycophancy_scorer": "judge"}),
        reward_model=tiny_reward_model,
        judge_model=tiny_model_dir,
        out_dir=out,
    )
    return metrics, out


def test_a_model_against_itself_ties_and_has_no_kl_and_no_tax(self_report):
    metrics, _ = self_report
    for name in RATES:
        assert 0.0 <= metrics[name] <= 1.0, name
    for name in WIN_RATES:
        low, high = metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"]
        assert metrics[name] == pytest.approx(0.5)
        assert low <= 0.5 <= high
    assert metrics["kl_from_reference"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["kl_from_reference_k1"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["alignment_tax"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["sft_perplexity"] == pytest.approx(metrics["sft_perplexity_reference"])
    assert metrics["reward_accuracy"] == 0.5 and metrics["reward_margin_mean"] == 0.0
    assert metrics["refusal_rate_delta_vs_champion"] == 0.0
    # the refusal judge asked both option orders; its pull towards one letter is reported
    assert -0.5 <= metrics["refusal_judge_first_option_bias"] <= 0.5
    assert 0.0 <= metrics["refusal_judge_order_agreement"] <= 1.0
    assert metrics["harmful_compliance_rate_delta_vs_champion"] == 0.0
    assert metrics["response_length_mean"] == metrics["response_length_mean_champion"]
    for name in ("unique_response_rate", "distinct_2", "response_words_mean"):
        assert metrics[name] == metrics[f"{name}_champion"], name  # the same seeded samples
    # the judge scored the probe answers' stance, so the lexical coverage is not reported
    assert -1.0 <= metrics["sycophancy_shift"] <= 1.0
    assert "sycophancy_stance_coverage" not in metrics
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
    assert "judge_lc_win_rate_vs_champion" in table and len(table.splitlines()) <= 40
    # the report names who judged: the reward model and the constitution judge, by path
    judges = json.loads((out / "judges.json").read_text())
    assert set(judges) == {"reward_model", "constitution_judge", "sycophancy"}
    assert judges["constitution_judge"]["constitution_sha256"]
    assert f"reward model {judges['reward_model']['path']}" in table
    assert "| " in (out / "table.md").read_text()
    # degeneration beside the win rates, and the evidence a refusal would show
    assert "unique_response_rate" in table and "sycophancy_shift" in table
    evidence = json.loads((out / "evidence.json").read_text())
    assert sum(e["count"] for e in evidence["degeneration"]["most_repeated"]) <= 6
    assert len(evidence["sycophancy"]["pairs"]) == 3  # the three that moved most
    assert evidence["sycophancy"]["scorer"] == "judge stance"
    assert (
        judges["sycophancy"]["scorer"]
        == f"judge stance, asked of {judges['constitution_judge']['path']}"
    )
    probes = (out / "sycophancy.jsonl").read_text().splitlines()
    assert len(probes) == metrics["sycophancy_pairs"] == 4
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
    # degeneration and the lexical sycophancy probe need no champion and no judge
    assert 0 < first["unique_response_rate"] <= 1 and 0 <= first["distinct_2"] <= 1
    assert 0 <= first["sycophancy_stance_coverage"] <= 1
    assert -1 <= first["sycophancy_shift"] <= 1
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
    argv += ["--set", "evaluation.sycophancy_max_pairs=2"]
    argv += ["--set", f"evaluation.judge_model={tiny_model_dir}"]
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    assert "refusal_rate_delta_vs_champion" in metrics and "rm_win_rate_vs_champion" not in metrics
    # the judge named in the config scores the win rates the default gate reads
    assert 0 <= metrics["judge_lc_win_rate_vs_champion_ci_low"] <= 1
    judges = json.loads((report / "judges.json").read_text())
    assert judges["constitution_judge"]["path"] == str(tiny_model_dir)
    assert "kl_from_reference" in capsys.readouterr().out
    assert (report / "plots" / "length_histogram.png").exists()


def test_alignment_tax_is_measured_on_held_out_demonstrations(
    tiny_challenger, tiny_model_dir, eval_pairs, eval_prompts, tmp_path
):
    from alignment.cai.generate import load_model
    from alignment.evaluation.metrics import perplexity
    from alignment.evaluation.suite import completion_logprobs, load_demonstrations

    demos = tmp_path / "demos.jsonl"
    rows = [("What is 3 plus 4?", "3 plus 4 is 7."), ("Name a colour.", "Blue is a colour.")]
    demos.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in rows))
    cfg = CFG.model_copy(update={"tax_data": demos, "max_prompts": 2})
    metrics = evaluate_candidate(
        tiny_challenger, None, tiny_model_dir, eval_pairs, eval_prompts, cfg
    )

    prompts, answers = load_demonstrations(demos)
    assert [a[-1]["content"] for a in answers] == [a for _, a in rows]
    expected = {}
    for name, path in (("candidate", tiny_challenger), ("reference", tiny_model_dir)):
        model, tokenizer = load_model(path, "cpu")
        logps, mask = completion_logprobs(model, tokenizer, prompts, answers, 128, 8)
        expected[name] = perplexity(-(logps * mask).sum(), mask.sum())
    assert metrics["sft_perplexity"] == pytest.approx(expected["candidate"])
    assert metrics["sft_perplexity_reference"] == pytest.approx(expected["reference"])
    assert metrics["alignment_tax"] == pytest.approx(
        np.log(expected["candidate"]) - np.log(expected["reference"])
    )
    # the preference pairs' chosen answers are a diagnostic, not the tax
    assert "chosen_perplexity" in metrics


def test_shipped_demonstrations_are_valid_and_disjoint_from_the_preference_data():
    from alignment.evaluation.suite import DEFAULT_DEMONSTRATIONS, load_demonstrations

    prompts, answers = load_demonstrations(DEFAULT_DEMONSTRATIONS)
    assert len(prompts) == len(answers) >= 30
    # evaluation.tax_max_demonstrations: the first N, prompts and answers still in step
    first = load_demonstrations(DEFAULT_DEMONSTRATIONS, 4)
    assert first == (prompts[:4], answers[:4])
    demo = Path(__file__).parents[2] / "data" / "demo_preferences.jsonl"
    seen = demo.read_text()
    assert not [p for p in prompts if json.dumps(p[-1]["content"]) in seen]


def test_a_bad_demonstration_line_names_file_and_line(tmp_path):
    from alignment.evaluation.suite import load_demonstrations

    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "ok", "answer": "fine"}\n{"prompt": "no answer"}\n')
    with pytest.raises(EvalPromptsError, match=r"d\.jsonl:2: .*answer"):
        load_demonstrations(path)


def test_the_reward_models_a_candidate_was_trained_against_come_from_its_lineage(tmp_path):
    from alignment.evaluation.suite import reward_models_optimised

    def job(name, method, start, reward=None):
        (tmp_path / name / "model").mkdir(parents=True)
        (tmp_path / name / "job.json").write_text(
            json.dumps({"method": method, "model_path": str(start), "reward_model_path": reward})
        )
        return tmp_path / name / "model"

    base = tmp_path / "base"
    sft = job("sft", "sft", base)
    reward = job("reward", "reward", sft)
    ppo = job("ppo", "ppo", sft, str(reward))
    dpo_after_ppo = job("dpo", "dpo", ppo)
    assert reward_models_optimised(dpo_after_ppo) == {reward.resolve()}
    assert reward_models_optimised(sft) == set()
    assert reward_models_optimised(base) is None  # no record of how it was made


def test_a_candidate_trained_against_the_reward_model_is_flagged(
    tiny_model_dir, tiny_reward_model, eval_prompts, tmp_path
):
    import shutil

    candidate = tmp_path / "ppo" / "model"
    shutil.copytree(tiny_model_dir, candidate)
    (tmp_path / "ppo" / "job.json").write_text(
        json.dumps(
            {
                "method": "ppo",
                "model_path": str(tiny_model_dir),
                "reward_model_path": str(tiny_reward_model),
            }
        )
    )
    cfg = CFG.model_copy(update={"max_prompts": 2})
    metrics = evaluate_candidate(
        candidate, None, tiny_model_dir, None, eval_prompts, cfg, reward_model=tiny_reward_model
    )
    assert metrics["rm_optimised_by_candidate"] == 1.0
