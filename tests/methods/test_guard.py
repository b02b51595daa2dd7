"""The over-optimisation guard: the stop rule and the kept checkpoint on synthetic signal sequences,
the ensemble reward on tensors, and the records of a real PPO job against a reward-model ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.errors import ConfigError
from alignment.methods.guard import GuardEval, judge


def _evals(proxy, held_out, kl=None, every=10):
    kl = kl or [0.0] * len(proxy)
    return [
        GuardEval(i * every, p, h, k)
        for i, (p, h, k) in enumerate(zip(proxy, held_out, kl, strict=True))
    ]


def test_proxy_up_held_out_down_for_patience_evaluations_stops_and_keeps_the_peak():
    # the hack: the held-out signal peaks at step 30, then falls while the proxy keeps rising
    evals = _evals([0.1, 0.3, 0.5, 0.7, 0.9, 1.1, 1.3], [0.0, 0.2, 0.3, 0.4, 0.35, 0.3, 0.2])
    verdict = judge(evals, patience=3, kl_budget=None)
    assert verdict.stop and verdict.reason == "over_optimisation"
    assert verdict.onset_step == 30  # the last evaluation before the decline
    assert verdict.best_step == 30  # not the last step (60)
    # one evaluation fewer: two falls in a row are not yet three
    assert not judge(evals[:-1], patience=3, kl_budget=None).stop
    assert judge(evals[:-1], patience=2, kl_budget=None).onset_step == 30


def test_a_dip_that_recovers_resets_the_streak_and_falling_proxy_is_not_gaming():
    noisy = _evals([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.0, -0.1, 0.1, 0.0, 0.2, 0.1])
    verdict = judge(noisy, patience=2, kl_budget=None)
    assert not verdict.stop and verdict.onset_step is None
    assert verdict.best_step == 40
    # both falling (a policy getting worse on everything) is not over-optimisation of the proxy
    collapse = _evals([1.0, 0.8, 0.6, 0.4], [1.0, 0.8, 0.6, 0.4])
    assert not judge(collapse, patience=2, kl_budget=None).stop
    assert judge(collapse, patience=2, kl_budget=None).best_step == 0


def test_over_the_window_a_proxy_that_dips_once_still_counts_as_rising():
    # the hack with a noisy proxy: it dips at step 50, so no three rises in a row; over the
    # window from the held-out peak (step 30) it rose while the held-out signal stayed below
    evals = _evals([0.1, 0.3, 0.5, 0.7, 0.9, 0.8, 1.0], [0.0, 0.2, 0.3, 0.4, 0.3, 0.35, 0.2])
    assert not judge(evals, patience=3, kl_budget=None).stop
    verdict = judge(evals, patience=3, kl_budget=None, rule="over_window")
    assert verdict.stop and verdict.reason == "over_optimisation"
    assert verdict.onset_step == 30 and verdict.best_step == 30
    # the held-out signal back above the onset inside the window: not yet
    recovered = _evals([0.1, 0.3, 0.5, 0.7, 0.9, 0.8, 1.0], [0.0, 0.2, 0.3, 0.4, 0.3, 0.45, 0.2])
    assert not judge(recovered, patience=3, kl_budget=None, rule="over_window").stop
    # both falling is a worse policy, not over-optimisation; and the rule is one of two
    collapse = _evals([1.0, 0.8, 0.9, 0.6, 0.4], [1.0, 0.8, 0.6, 0.5, 0.4])
    assert not judge(collapse, patience=2, kl_budget=None, rule="over_window").stop
    with pytest.raises(ConfigError, match="over_window"):
        judge(evals, patience=3, kl_budget=None, rule="window")


def test_kl_beyond_its_budget_stops_and_no_checkpoint_over_budget_is_kept():
    evals = _evals([0.1, 0.3, 0.5, 0.7], [0.0, 0.2, 0.5, 0.9], kl=[0.0, 2.0, 4.0, 9.0])
    verdict = judge(evals, patience=3, kl_budget=5.0)
    assert verdict.stop and verdict.reason == "kl_budget"
    assert verdict.best_step == 20  # step 30 has the best signal but is over the budget
    assert not judge(evals[:3], patience=3, kl_budget=5.0).stop
    assert judge([], patience=1, kl_budget=1.0) == judge([], patience=1, kl_budget=None)


def test_the_job_keeps_the_best_saved_policy_and_records_onset_stop_and_kept_step(tmp_path):
    from alignment.config import GuardConfig
    from alignment.methods.guard import GuardRunner, write_guard_report

    records = [
        {"step": e.step, "guard/proxy": e.proxy, "guard/held_out": e.held_out, "guard/kl": e.kl}
        for e in _evals([0.1, 0.3, 0.5, 0.7, 0.9], [0.0, 0.4, 0.3, 0.2, 0.1], every=5)
    ]
    out = tmp_path / "guard"
    for step in (0, 5, 15):  # best-so-far policies saved during the run
        (out / f"step-{step}").mkdir(parents=True)
        (out / f"step-{step}" / "model.safetensors").write_text(f"policy at {step}")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_text("policy at 20")
    cfg = GuardConfig(enabled=True, patience=3)
    guard = GuardRunner(cfg, None, None, None, [], out, None, records)
    assert guard.should_stop()
    metrics = guard.finish(20, model_dir)
    assert (model_dir / "model.safetensors").read_text() == "policy at 5"
    assert sorted(p.name for p in out.iterdir()) == ["step-5"]  # the others pruned
    assert metrics["guard/onset_step"] == 5 and metrics["guard/kept_step"] == 5
    assert metrics["guard/stop_reason"] == "over_optimisation" and metrics["guard/stopped"] == 1
    assert metrics["guard/kept_held_out"] == 0.4
    write_guard_report(tmp_path, records, metrics)
    assert json.loads((tmp_path / "guard.json").read_text())["verdict"] == metrics
    assert (tmp_path / "guard.png").read_bytes()[:4] == b"\x89PNG"

    # keep=last leaves the last policy, and only records
    (model_dir / "model.safetensors").write_text("policy at 20")
    last = GuardRunner(GuardConfig(enabled=True, keep="last", stop=False), None, None, None, [],
                       out, None, records)  # fmt: skip
    assert not last.should_stop()
    assert last.finish(20, model_dir)["guard/kept_step"] == 20
    assert (model_dir / "model.safetensors").read_text() == "policy at 20"


def test_ensemble_reward_is_the_mean_the_lower_bound_or_the_worst_member():
    import torch

    from alignment.methods.guard import ensemble_reward

    scores = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # 2 members, 2 responses
    assert ensemble_reward(scores, "mean", 1.0).tolist() == [2.0, 0.0]
    lower = ensemble_reward(scores, "uncertainty_weighted", 0.5)
    torch.testing.assert_close(lower, torch.tensor([2.0 - 0.5 * 2**0.5, 0.0]))
    assert ensemble_reward(scores, "worst_case", 1.0).tolist() == [1.0, 0.0]
    assert ensemble_reward(scores[:1], "worst_case", 1.0).tolist() == [1.0, 0.0]


def test_guard_config_names_what_is_missing():
    from alignment.config import load_config
    from alignment.errors import ConfigError

    with pytest.raises(ConfigError, match="held_out_reward_model"):
        load_config(None, ["train.ppo.guard.signal=held_out_reward_model"])
    cfg = load_config(None, ["train.ppo.reward_ensemble=worst_case", "train.ppo.guard.patience=2"])
    assert cfg.train.ppo.reward_ensemble == "worst_case" and cfg.train.ppo.guard.patience == 2


def test_a_held_out_reward_model_in_a_config_file_is_relative_to_that_file(tmp_path):
    from alignment.config import load_config

    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "guarded.yaml"
    path.write_text(
        "train:\n  ppo:\n    guard:\n      enabled: true\n"
        "      signal: held_out_reward_model\n      held_out_reward_model: ../models/held-out\n"
    )
    guard = load_config(path).train.ppo.guard
    assert guard.held_out_reward_model == (tmp_path / "models" / "held-out").resolve()


def test_held_out_reward_models_in_a_list_are_each_relative_to_the_config_file(tmp_path):
    from alignment.config import load_config

    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "guarded.yaml"
    path.write_text(
        "train:\n  grpo:\n    guard:\n      enabled: true\n"
        "      signal: held_out_reward_model\n"
        "      held_out_reward_model: [../models/a, /abs/b]\n"
    )
    guard = load_config(path).train.grpo.guard
    assert guard.held_out_reward_model == [(tmp_path / "models" / "a").resolve(), Path("/abs/b")]


def test_several_held_out_reward_models_give_their_mean_score(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from alignment.config import GuardConfig
    from alignment.methods.guard import held_out_signal
    from alignment.methods.ppo import reward_model_score_fn

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    paths, single = [], []
    for seed in range(2):  # two held-out models that differ by their random score head
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
        model.save_pretrained(tmp_path / f"rm{seed}")
        paths.append(tmp_path / f"rm{seed}")
        single.append(reward_model_score_fn(model.eval(), tokenizer))
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 7, 9, 9, 6]])
    attention = torch.ones_like(ids)
    response = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 1, 1]])
    load = {"dtype": torch.float32}
    for given, expected in ((paths, None), (paths[:1], single[0])):
        cfg = GuardConfig(enabled=True, signal="held_out_reward_model", held_out_reward_model=given)
        fn, proxies = held_out_signal(cfg, ["proxy"], tokenizer, load, "cpu", "ppo")
        assert proxies == ["proxy"]  # a held-out model never joins what the policy maximises
        with torch.no_grad():
            got = fn(ids, attention, response)
            members = torch.stack([f(ids, attention, response) for f in single])
        want = members.mean(0) if expected is None else expected(ids, attention, response)
        assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(members[0], members[1])  # the mean is of two different scores


def test_bootstrap_resample_draws_with_replacement_and_repeats_for_a_seed(tmp_path):
    import pandas as pd

    from alignment.train.ensemble import bootstrap_resample

    pd.DataFrame({"id": [f"r{i}" for i in range(50)]}).to_parquet(tmp_path / "train.parquet")
    a = pd.read_parquet(bootstrap_resample(tmp_path / "train.parquet", tmp_path / "a.parquet", 1))
    b = pd.read_parquet(bootstrap_resample(tmp_path / "train.parquet", tmp_path / "b.parquet", 1))
    c = pd.read_parquet(bootstrap_resample(tmp_path / "train.parquet", tmp_path / "c.parquet", 2))
    assert len(a) == 50 and a["id"].nunique() < 50  # some pairs twice, some left out
    assert a["id"].tolist() == b["id"].tolist() and a["id"].tolist() != c["id"].tolist()


@pytest.fixture(scope="module")
def reward_ensemble(tiny_model_dir, preference_parquet, tmp_path_factory):
    """Three reward models on bootstrap resamples, through the reward method's launcher."""
    from alignment.config import PipelineConfig
    from alignment.train.launch import launch_training

    # one process: the 2-process path is the reward tests' own
    cfg = PipelineConfig.model_validate(
        {
            "train": {
                "distributed": {"num_processes": 1, "zero_stage": 2, "device": "cpu"},
                "reward": {"num_train_epochs": 1, "learning_rate": 3e-3, "ensemble_size": 3},
            }
        }
    )
    return launch_training(
        "reward", cfg, tiny_model_dir, preference_parquet, tmp_path_factory.mktemp("rm-ensemble"),
        eval_path=preference_parquet, on_progress=lambda event: None,
    )  # fmt: skip


@pytest.mark.slow
def test_ppo_against_an_ensemble_records_the_guard_and_keeps_the_checkpoint_within_budget(
    tiny_model_dir, preference_parquet, reward_ensemble, rl_config, tmp_path
):
    from safetensors.torch import load_file

    from alignment.evaluation.suite import reward_models_optimised
    from alignment.train.launch import launch_training

    members = json.loads((reward_ensemble.output_dir.parent / "ensemble.json").read_text())
    assert len(members["members"]) == 3
    assert {f"member{i}/eval_accuracy" for i in range(3)} <= set(reward_ensemble.metrics)
    cfg = rl_config(
        ppo={
            "max_steps": 4,
            "per_device_train_batch_size": 4,
            "max_new_tokens": 6,
            "ppo_epochs": 2,
            "learning_rate": 3e-3,
            "reward_ensemble": "uncertainty_weighted",
            "guard": {"enabled": True, "eval_steps": 2, "eval_prompts": 8, "kl_budget": 1e-3},
        }
    )
    events = []
    result = launch_training(
        "ppo", cfg, tiny_model_dir, preference_parquet, tmp_path / "ppo",
        eval_path=preference_parquet, reward_model_path=reward_ensemble.output_dir,
        on_progress=events.append,
    )  # fmt: skip
    job = json.loads((tmp_path / "ppo" / "job.json").read_text())
    assert job["reward_model_paths"] == members["members"]
    # the gate must not judge with any member the policy was trained against
    assert {p.as_posix() for p in reward_models_optimised(result.output_dir)} >= set(
        members["members"]
    )

    report = json.loads((tmp_path / "ppo" / "guard.json").read_text())
    steps = [r["step"] for r in report["evaluations"]]
    metrics = result.metrics
    # the starting policy is its own reference (KL 0): within any budget, evaluated first
    assert steps[0] == 0 and report["evaluations"][0]["guard/kl"] == 0.0
    for record in report["evaluations"]:
        assert record["guard/disagreement"] > 0  # the two rewarding members never agree exactly
        # the third member, left out of the reward, is the held-out signal
        assert record["guard/held_out"] == record["guard/held_out_reward"]
        assert record["guard/held_out"] != record["guard/proxy"]
    over = [r["step"] for r in report["evaluations"] if r["guard/kl"] > 1e-3]
    if over:  # the budget stopped the run at the first evaluation beyond it
        assert metrics["guard/stop_reason"] == "kl_budget" and steps[-1] == over[0]
        assert metrics["global_step"] == over[0]
    within = [r for r in report["evaluations"] if r["guard/kl"] <= 1e-3]
    best = max(within, key=lambda r: r["guard/held_out"])
    assert metrics["guard/kept_step"] == best["step"]
    assert metrics["guard/kept_held_out"] == best["guard/held_out"]
    assert (tmp_path / "ppo" / "guard.png").stat().st_size > 0
    # the saved policy is the kept one: at step 0, the starting weights
    if best["step"] == 0:
        kept, start = (
            load_file(d / "model.safetensors") for d in (result.output_dir, tiny_model_dir)
        )
        assert all(kept[name].equal(start[name]) for name in start)
    # every evaluation reached the progress stream (and so MLflow) and the job's history
    streamed = {e["step"] for e in events if "guard/held_out" in e.get("logs", {})}
    assert streamed == set(steps)
    assert {h["step"] for h in result.history if "guard/held_out" in h} == set(steps)


def test_an_evaluation_scores_the_policy_s_own_samples_with_every_signal(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from alignment.config import GuardConfig, PPOConfig
    from alignment.methods.guard import EnsembleScorer, GuardRunner
    from alignment.methods.ppo import reward_model_score_fn

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    heads = []
    for seed in range(3):  # three reward models that differ only by their random score head
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
        heads.append(reward_model_score_fn(model.eval(), tokenizer))
    scorer = EnsembleScorer(heads[:2], "worst_case", 1.0)
    prompts = [[5, 6, 7], [8, 9], [5, 7], [6, 6, 9]]
    ppo_cfg = PPOConfig(max_new_tokens=5)
    scorer.calibrate(policy, prompts, ppo_cfg, tokenizer, "cpu")
    assert scorer.scale is not None and all(s > 0 for s in scorer.scale[1])
    cfg = GuardConfig(enabled=True, signal="held_out_member", eval_steps=1)
    guard = GuardRunner(cfg, ppo_cfg, scorer, heads[2], prompts, tmp_path, tokenizer, [])
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    first = guard.evaluate(0, policy, reference, 0, pad, eos)
    assert first["guard/kl"] == 0.0  # the policy is still the reference
    assert first["guard/held_out"] == first["guard/held_out_reward"]
    assert first["guard/disagreement"] > 0
    # of two members the lower is the mean minus half their gap, i.e. minus std / sqrt(2)
    spread = first["guard/disagreement"] * (1 - 2**-0.5)
    assert first["guard/proxy"] == pytest.approx(first["guard/ensemble_lower_bound"] + spread)
    assert 0 < first["guard/response_length"] <= 5 and first["guard/entropy"] > 0
    assert (tmp_path / "step-0" / "config.json").is_file()  # the first is the best so far

    with torch.no_grad():  # move the policy away from the reference
        for parameter in policy.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    second = guard.evaluate(1, policy, reference, 0, pad, eos)
    assert second["guard/kl"] > 0
    drift = second["guard/entropy"] - first["guard/entropy"]
    assert second["guard/entropy_drift"] == pytest.approx(drift)
    assert not guard.due(1, 10) and guard.due(2, 10)


@pytest.mark.heavy
def test_a_resumed_guarded_run_keeps_its_evaluations_and_the_ensemble_scale(
    tiny_model_dir, preference_parquet, reward_ensemble, rl_config, tmp_path
):
    from alignment.train.launch import launch_training

    cfg = rl_config(
        ppo={
            "max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 4,
            "max_new_tokens": 6, "ppo_epochs": 1, "reward_ensemble": "uncertainty_weighted",
            "guard": {"enabled": True, "eval_steps": 1, "eval_prompts": 8, "stop": False},
        }
    )  # fmt: skip

    class Stop(Exception):
        pass

    def stop_at_three(event):
        if event["step"] >= 3 and "reward" in event.get("logs", {}):
            raise Stop

    run = dict(
        method="ppo", cfg=cfg, model_path=tiny_model_dir, train_path=preference_parquet,
        output_dir=tmp_path / "ppo", reward_model_path=reward_ensemble.output_dir,
    )  # fmt: skip
    with pytest.raises(Stop):
        launch_training(**run, on_progress=stop_at_three)
    state = json.loads((tmp_path / "ppo" / "checkpoints" / "state.json").read_text())
    assert [r["step"] for r in state["guard"]] == [0, 1, 2]
    assert len(state["ensemble_scale"][0]) == 2  # two members reward, the third is held out

    events = []
    result = launch_training(**run, resume=True, on_progress=events.append)
    evaluated = [e["step"] for e in events if "guard/held_out" in e.get("logs", {})]
    assert evaluated == [3, 4]  # steps 0-2 were not evaluated again
    report = json.loads((tmp_path / "ppo" / "guard.json").read_text())
    assert [r["step"] for r in report["evaluations"]] == [0, 1, 2, 3, 4]
    assert report["evaluations"][:3] == state["guard"]
    assert (
        result.metrics["guard/kept_step"]
        == max(report["evaluations"], key=lambda r: r["guard/held_out"])["step"]
    )


def test_every_ensemble_member_counts_as_optimised_by_the_ppo_policy(tmp_path):
    from alignment.config import PipelineConfig
    from alignment.errors import ConfigError
    from alignment.evaluation.suite import reward_models_optimised
    from alignment.train.launch import write_job

    members = []
    for folder in (tmp_path / "reward", tmp_path / "reward" / "ensemble" / "member-1"):
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "config.json").write_text("{}")
        members.append(str((folder / "model").resolve()))
    manifest = tmp_path / "reward" / "ensemble.json"
    manifest.write_text(json.dumps({"members": members}))
    (tmp_path / "ppo").mkdir()
    write_job("ppo", PipelineConfig(), tmp_path / "sft", tmp_path / "data.parquet",
              tmp_path / "ppo", None, False, reward_model_path=tmp_path / "reward" / "model")  # fmt: skip
    assert json.loads((tmp_path / "ppo" / "job.json").read_text())["reward_model_paths"] == members
    assert reward_models_optimised(tmp_path / "ppo" / "model") == {Path(p) for p in members}

    # a manifest whose member is gone is refused, naming it
    (tmp_path / "reward" / "ensemble" / "member-1" / "model" / "config.json").unlink()
    with pytest.raises(ConfigError, match="member-1"):
        write_job("ppo", PipelineConfig(), tmp_path / "sft", tmp_path / "data.parquet",
                  tmp_path / "ppo", None, False, tmp_path / "reward" / "model")  # fmt: skip


@pytest.mark.slow
def test_a_run_that_only_observes_gives_the_stop_and_kept_step_of_a_real_guarded_run(
    tiny_model_dir, preference_parquet, reward_ensemble, tmp_path
):
    """The gaming benchmark's observe mode: one run with the guard recording, never stopping;
    replay_guarded reads off it where a guarded run stops and what it keeps. A real guarded run
    with the same seed (here stopped by a KL budget set mid-trajectory) must agree."""
    from alignment.config import PipelineConfig
    from alignment.methods.guard import replay_guarded
    from alignment.train.launch import launch_training

    def run(name: str, **guard):
        cfg = PipelineConfig.model_validate({"train": {
            "distributed": {"num_processes": 1, "zero_stage": 0, "device": "cpu"},
            "ppo": {"max_steps": 6, "per_device_train_batch_size": 4, "max_new_tokens": 6,
                    "learning_rate": 1e-2, "seed": 3,
                    "guard": {"enabled": True, "eval_steps": 1, "eval_prompts": 8, **guard}},
        }})  # fmt: skip
        result = launch_training(
            "ppo", cfg, tiny_model_dir, preference_parquet, tmp_path / name,
            eval_path=preference_parquet, reward_model_path=reward_ensemble.output_dir,
            on_progress=lambda event: None,
        )  # fmt: skip
        return result, json.loads((tmp_path / name / "guard.json").read_text())["evaluations"]

    observed, records = run("observed", stop=False, keep="last")
    assert [r["step"] for r in records] == list(range(7))  # trained to the end
    # a budget the KL passes after step 2: the guarded run must stop there, not at the end
    budget = max(r["guard/kl"] for r in records[:3]) * 1.0001
    over = [r["step"] for r in records if r["guard/kl"] > budget]
    assert over and over[0] < 6, [r["guard/kl"] for r in records]
    replayed = replay_guarded(records, patience=3, kl_budget=budget, rule="each_evaluation")
    assert replayed["guard/stopped"] == 1 and replayed["guard/final_step"] == over[0]

    guarded, guarded_records = run("guarded", stop=True, keep="best", kl_budget=budget)
    assert guarded.metrics["global_step"] == over[0] < observed.metrics["global_step"]
    for key in ("guard/stopped", "guard/final_step", "guard/kept_step", "guard/stop_reason",
                "guard/kept_held_out", "guard/kept_kl", "guard/evaluations"):  # fmt: skip
        assert guarded.metrics[key] == replayed[key], key
    # the same trajectory, step for step, up to the stop
    assert guarded_records == records[: len(guarded_records)]
