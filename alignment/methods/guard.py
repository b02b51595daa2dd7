"""Reward over-optimisation guard: an uncertainty-penalised ensemble reward, and a stop rule with
best-checkpoint selection over held-out evaluations.

Over-optimisation (Gao et al. 2022) shows as the proxy the policy maximises still rising while
a signal it does not maximise falls. The guard sees only what a real run has: the ensemble's
disagreement, a reward model trained on held-out labels, KL to the reference, length and
entropy. Its verdict is a pure function of the evaluations so far, so a resumed run reaches the
same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from alignment.errors import ConfigError

if TYPE_CHECKING:
    import torch


def ensemble_reward(scores: torch.Tensor, objective: str, penalty: float) -> torch.Tensor:
    """One reward per response from member scores [k, B]: mean, mean - penalty * std, or min.

    Coste et al. 2023 penalise the variance; the std keeps lambda in the reward's own units.
    With one member every objective is that member's score.
    """
    if scores.shape[0] == 1:
        return scores[0]
    if objective == "mean":
        return scores.mean(0)
    if objective == "uncertainty_weighted":
        return scores.mean(0) - penalty * scores.std(0)
    if objective == "worst_case":
        return scores.min(0).values
    raise ValueError(f"unknown reward_ensemble objective {objective!r}")


@dataclass(frozen=True)
class GuardEval:
    """What one held-out evaluation measured, at the PPO step it followed (0: before training)."""

    step: int
    proxy: float  # the reward PPO maximises, on held-out prompts
    held_out: float  # the signal PPO does not maximise
    kl: float  # KL(policy || reference) per response

    @classmethod
    def from_record(cls, record: dict) -> GuardEval:
        return cls(
            int(record["step"]),
            float(record["guard/proxy"]),
            float(record["guard/held_out"]),
            float(record["guard/kl"]),
        )


@dataclass(frozen=True)
class GuardVerdict:
    """The stop rule's decision and the checkpoint to keep, after a sequence of evaluations."""

    stop: bool
    reason: str | None  # "over_optimisation", "kl_budget" or None
    onset_step: int | None  # last evaluation before the proxy-up/held-out-down streak began
    best_step: int | None  # best held-out signal within the KL budget


STOP_RULES = ("each_evaluation", "over_window")


def judge(
    evals: list[GuardEval],
    patience: int,
    kl_budget: float | None,
    rule: str = "each_evaluation",
) -> GuardVerdict:
    """Stop when the proxy rose while the held-out signal fell for `patience` evaluations, or
    when KL passed its budget; keep the best held-out evaluation within budget.

    `rule` says how "rose while it fell for M evaluations" is read. `each_evaluation`: the proxy
    rose and the held-out signal fell at each of the last M evaluations, each against the one
    before. `over_window`: over the last M evaluations the proxy rose (the last above the one M
    back) while the held-out signal fell and stayed down (every one of the M below the one M
    back). The second lets a noisy proxy dip between two evaluations without resetting the
    count; it fires whenever the first does. A policy getting worse on both is no
    over-optimisation under either.

    The onset is the evaluation the streak started from: the held-out signal's local peak, after
    which optimising the proxy stopped helping.
    """
    if rule not in STOP_RULES:
        raise ConfigError(f"guard stop rule {rule!r}: choose one of {', '.join(STOP_RULES)}")
    within = [e for e in evals if kl_budget is None or e.kl <= kl_budget]
    best = max(within, key=lambda e: e.held_out, default=None)  # first of equals: less drift
    best_step = best.step if best is not None else None
    streak = 0
    for i, current in enumerate(evals):
        if kl_budget is not None and current.kl > kl_budget:
            return GuardVerdict(True, "kl_budget", None, best_step)
        if i == 0:
            continue
        if rule == "over_window":
            if i >= patience:
                onset = evals[i - patience]
                window = evals[i - patience + 1 : i + 1]
                if current.proxy > onset.proxy and all(e.held_out < onset.held_out for e in window):
                    return GuardVerdict(True, "over_optimisation", onset.step, best_step)
            continue
        before = evals[i - 1]
        worse = current.proxy > before.proxy and current.held_out < before.held_out
        streak = streak + 1 if worse else 0
        if streak >= patience:
            return GuardVerdict(True, "over_optimisation", evals[i - streak].step, best_step)
    return GuardVerdict(False, None, None, best_step)


def replay_guarded(records: list[dict], patience: int, kl_budget: float | None, rule: str) -> dict:
    """What a guarded run (stop on, keep the best) would have reported, read from the evaluations
    of a run that only observed (stop off) with the same seed and settings.

    Exact by construction: `stop` and `keep` are read only after an evaluation (should the run
    end?) and at the end (which policy to keep), never by a training step, so up to its stop the
    guarded run is the observing run step for step. It stops at the first evaluation whose
    prefix the stop rule fires on, and keeps that prefix's best held-out evaluation, as
    `GuardRunner.finish` does. Returns the same `guard/...` metrics.
    """
    evals = [GuardEval.from_record(r) for r in records]
    end = len(evals)
    for i in range(1, len(evals) + 1):
        if judge(evals[:i], patience, kl_budget, rule).stop:
            end = i
            break
    verdict = judge(evals[:end], patience, kl_budget, rule)
    final_step = evals[end - 1].step if evals else 0
    kept = verdict.best_step if verdict.best_step is not None else final_step
    metrics = {
        "guard/kept_step": kept,
        "guard/stopped": int(verdict.stop),
        "guard/final_step": final_step,
        "guard/evaluations": end,
    }
    if verdict.onset_step is not None:
        metrics["guard/onset_step"] = verdict.onset_step
    if verdict.reason is not None:
        metrics["guard/stop_reason"] = verdict.reason
    kept_record = next((r for r in records[:end] if r["step"] == kept), None)
    if kept_record is not None:
        metrics["guard/kept_held_out"] = kept_record["guard/held_out"]
        metrics["guard/kept_kl"] = kept_record["guard/kl"]
    return metrics


# --- in the PPO job: ensemble scoring, held-out evaluations, the kept checkpoint ---------------


class EnsembleScorer:
    """k reward models scoring the same responses; called as a score function, the configured
    ensemble reward. Members are put on one scale (mean 0, std 1 on a calibration batch), so
    their spread measures disagreement rather than each model's own offset."""

    def __init__(self, score_fns: list, objective: str, penalty: float) -> None:
        self.score_fns, self.objective, self.penalty = score_fns, objective, penalty
        self.scale: tuple[list[float], list[float]] | None = None  # per member (mean, std)

    def members(self, query_responses, attention_mask, response_mask) -> torch.Tensor:
        """Member scores [k, B], normalised once calibrated."""
        import torch

        raw = torch.stack(
            [fn(query_responses, attention_mask, response_mask) for fn in self.score_fns]
        )
        if self.scale is None:
            return raw
        mean, std = (torch.tensor(v, dtype=raw.dtype, device=raw.device) for v in self.scale)
        return (raw - mean[:, None]) / std[:, None]

    def calibrate(self, policy, prompts, ppo_cfg, tokenizer, device) -> None:
        """Set each member's mean and std from the policy's responses to prompts (averaged over
        processes)."""
        import torch

        from alignment.methods.ppo import _all_reduce_mean, sample_responses

        policy.eval()
        with torch.no_grad():
            samples = sample_responses(
                policy, prompts, ppo_cfg, tokenizer.pad_token_id, tokenizer.eos_token_id
            )
            raw = self.members(*samples[:3]).float()
        policy.train()
        stats = {f"mean{i}": float(row.mean()) for i, row in enumerate(raw)}
        stats |= {f"std{i}": float(row.std()) for i, row in enumerate(raw)}
        stats = _all_reduce_mean(stats, device)
        k = len(self.score_fns)
        self.scale = (
            [stats[f"mean{i}"] for i in range(k)],
            [max(stats[f"std{i}"], 1e-6) for i in range(k)],
        )

    def __call__(self, query_responses, attention_mask, response_mask) -> torch.Tensor:
        members = self.members(query_responses, attention_mask, response_mask)
        return ensemble_reward(members, self.objective, self.penalty)


def policy_statistics(model, query_responses, attention_mask, context_length, temperature):
    """log pi of each sampled response token and the entropy of pi at it: ([B, R], [B, R])."""
    import torch

    from alignment.methods.ppo import position_ids

    logits = model(
        input_ids=query_responses,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
    ).logits[:, context_length - 1 : -1]
    logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)
    tokens = query_responses[:, context_length:].unsqueeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp_all.gather(-1, tokens).squeeze(-1), entropy


SIGNAL_KEYS = {
    "held_out_member": "guard/held_out_reward",
    "held_out_reward_model": "guard/held_out_reward",
    "ensemble_lower_bound": "guard/ensemble_lower_bound",
}


class GuardRunner:
    """Evaluates the policy on fixed held-out prompts every eval_steps, applies the stop rule and
    keeps the policy of the best held-out evaluation. Every process evaluates its share of the
    prompts and reaches the same verdict from the averaged records."""

    def __init__(self, cfg, ppo_cfg, scorer, held_out_fn, prompts, out_dir, tokenizer, records):
        self.cfg, self.ppo_cfg, self.scorer, self.held_out_fn = cfg, ppo_cfg, scorer, held_out_fn
        self.prompts, self.out_dir, self.tokenizer = prompts, out_dir, tokenizer
        self.records: list[dict] = list(records)  # restored on a resume

    def due(self, step: int, total_steps: int) -> bool:
        evaluated = {r["step"] for r in self.records}
        return (step % self.cfg.eval_steps == 0 or step == total_steps) and step not in evaluated

    @property
    def verdict(self) -> GuardVerdict:
        return judge(
            [GuardEval.from_record(r) for r in self.records],
            self.cfg.patience,
            self.cfg.kl_budget,
            self.cfg.stop_rule,
        )

    def evaluate(self, step: int, policy, reference, rank: int, pad_id: int, eos_id: int) -> dict:
        """One held-out evaluation of the policy; saves it when its held-out signal is the best."""
        import torch

        from alignment.methods.losses import kl_penalty, masked_mean
        from alignment.methods.ppo import _all_reduce_mean, response_logprobs, sample_responses

        device = next(policy.parameters()).device
        policy.eval()
        with torch.no_grad():
            ids, attention, mask, context = sample_responses(
                policy, self.prompts, self.ppo_cfg, pad_id, eos_id
            )
            members = self.scorer.members(ids, attention, mask)
            logp, entropy = policy_statistics(
                policy, ids, attention, context, self.ppo_cfg.temperature
            )
            ref_logp = response_logprobs(
                reference, ids, attention, context, self.ppo_cfg.temperature
            )
            values = {
                "guard/proxy": float(
                    ensemble_reward(members, self.scorer.objective, self.scorer.penalty).mean()
                ),
                "guard/disagreement": float(members.std(0).mean()) if len(members) > 1 else 0.0,
                "guard/ensemble_lower_bound": float((members.mean(0) - members.std(0)).mean())
                if len(members) > 1
                else float(members[0].mean()),
                # k3: unbiased and never negative, so one noisy batch cannot hide a KL overrun
                "guard/kl": float((kl_penalty(logp, ref_logp, "k3") * mask).sum(1).mean()),
                "guard/response_length": float(mask.sum(1).float().mean()),
                "guard/entropy": float(masked_mean(entropy, mask)),
            }
            if self.held_out_fn is not None:
                values["guard/held_out_reward"] = float(
                    self.held_out_fn(ids, attention, mask).mean()
                )
            if self.cfg.record_samples:
                self._write_samples(step, ids, mask, context, rank)
        policy.train()
        values = _all_reduce_mean(values, device)
        values["guard/held_out"] = values[SIGNAL_KEYS[self.cfg.signal]]
        if self.records:  # drift from the first evaluation, the starting policy's
            first = self.records[0]
            for name in ("response_length", "entropy"):
                values[f"guard/{name}_drift"] = values[f"guard/{name}"] - first[f"guard/{name}"]
        record = {"step": step, **values}
        self.records.append(record)
        verdict = self.verdict
        if rank == 0 and verdict.best_step == step:
            self._save_best(policy, step)
        return record

    def _write_samples(self, step: int, ids, mask, context: int, rank: int) -> None:
        """This process's held-out prompts and responses of one evaluation, as JSONL, so that a
        task with a known truth (the oracle task) can score them after the run."""
        import json

        from alignment.workspace import atomic_write_text

        lines = []
        for row in range(ids.shape[0]):
            query = self.tokenizer.decode(ids[row, :context], skip_special_tokens=True)
            kept = ids[row, context:][mask[row].bool()]
            response = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
            lines.append(json.dumps({"step": step, "prompt": query, "response": response}))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"samples-step-{step}-rank-{rank}.jsonl"
        atomic_write_text(path, "\n".join(lines) + "\n")

    def _save_best(self, policy, step: int) -> None:
        import shutil

        folder = self.out_dir / f"step-{step}"
        tmp = self.out_dir / f".step-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        policy.save_pretrained(str(tmp))
        self.tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)

    def prune(self) -> None:
        """Drop every saved policy but the best; called once a resume could no longer need them
        (after a checkpoint records these evaluations, and at the end)."""
        import shutil

        best = self.verdict.best_step
        for folder in self.out_dir.glob("step-*"):
            if folder.name != f"step-{best}":
                shutil.rmtree(folder, ignore_errors=True)

    def should_stop(self) -> bool:
        return self.cfg.stop and self.verdict.stop

    def finish(self, final_step: int, model_dir) -> dict:
        """Put the kept policy in model_dir (rank 0 after the final save); the job's guard metrics."""
        import shutil

        verdict = self.verdict
        self.prune()
        kept = final_step
        if self.cfg.keep == "best" and verdict.best_step is not None:
            best = self.out_dir / f"step-{verdict.best_step}"
            if verdict.best_step != final_step and best.is_dir():
                shutil.copytree(best, model_dir, dirs_exist_ok=True)
                kept = verdict.best_step
            elif verdict.best_step != final_step:
                raise FileNotFoundError(f"guard: the kept checkpoint {best} is missing")
        metrics = {
            "guard/kept_step": kept,
            "guard/stopped": int(verdict.stop and self.cfg.stop),
            "guard/final_step": final_step,
            "guard/evaluations": len(self.records),
        }
        if verdict.onset_step is not None:
            metrics["guard/onset_step"] = verdict.onset_step
        if verdict.reason is not None:
            metrics["guard/stop_reason"] = verdict.reason
        kept_record = next((r for r in self.records if r["step"] == kept), None)
        if kept_record is not None:
            metrics["guard/kept_held_out"] = kept_record["guard/held_out"]
            metrics["guard/kept_kl"] = kept_record["guard/kl"]
        return metrics


def held_out_signal(guard_cfg, score_fns: list, tokenizer, load, device, section: str):
    """The held-out score function the guard watches (None when the signal needs none), and the
    members left for the proxy: signal=held_out_member takes the last member out of them."""
    from transformers import AutoModelForSequenceClassification

    from alignment.methods.ppo import reward_model_score_fn

    ensemble_signal = guard_cfg.signal in ("held_out_member", "ensemble_lower_bound")
    if guard_cfg.enabled and ensemble_signal and len(score_fns) < 2:
        raise ConfigError(
            f"train.{section}.guard.signal={guard_cfg.signal} needs a reward-model ensemble "
            "(train.reward.ensemble_size >= 2), or signal=held_out_reward_model"
        )
    if not guard_cfg.enabled:
        return None, score_fns
    if guard_cfg.signal == "held_out_member":
        return score_fns[-1], score_fns[:-1]
    if guard_cfg.signal == "held_out_reward_model":
        paths = guard_cfg.held_out_reward_model
        fns = [
            reward_model_score_fn(
                AutoModelForSequenceClassification.from_pretrained(path, **load)
                .to(device)
                .eval()
                .requires_grad_(False),
                tokenizer,
            )
            for path in (paths if isinstance(paths, list) else [paths])
        ]
        if len(fns) == 1:
            return fns[0], score_fns

        def mean_score(query_responses, attention_mask, response_mask):
            """The held-out models' mean score: each trained the same way on the same held-out
            labels, so their scores share a scale and the mean averages out each one's quirks."""
            import torch

            return torch.stack(
                [fn(query_responses, attention_mask, response_mask) for fn in fns]
            ).mean(0)

        return mean_score, score_fns
    return None, score_fns


def make_guard(
    job, guard_cfg, sampling_cfg, scorer, held_out_fn, tokenizer, rank, world, max_prompt_length
):
    """A GuardRunner on this process's share of the held-out prompts: the eval split's when the
    job has one, else the training's. `sampling_cfg` gives max_new_tokens and temperature."""
    from datasets import Dataset

    from alignment.methods.ppo import prompt_ids

    source = job.eval_path or job.train_path
    files = sorted(str(p) for p in source.glob("*.parquet")) if source.is_dir() else str(source)
    rows = Dataset.from_parquet(
        files, columns=["prompt"], cache_dir=str(job.output_dir / "datasets-cache")
    )
    held_out = prompt_ids(tokenizer, rows, max(1, max_prompt_length))
    share = held_out[: guard_cfg.eval_prompts][rank::world]
    if not share:
        raise ConfigError(
            f"guard.eval_prompts={guard_cfg.eval_prompts} ({len(held_out)} prompts in "
            f"{source}) leaves no held-out prompt for each of {world} processes"
        )
    return GuardRunner(
        guard_cfg,
        sampling_cfg,
        scorer,
        held_out_fn,
        share,
        job.output_dir / "guard",
        tokenizer,
        [],
    )


def build_scorer_and_guard(job, tokenizer, reward_models, rank: int, world: int, load, device):
    """The reward PPO maximises, and the over-optimisation guard (None when off) on this process's
    share of the held-out prompts: the eval split's when the job has one, else the training's.

    With signal=held_out_member the last ensemble member is left out of the reward and watched.
    """
    from alignment.methods.ppo import reward_model_score_fn

    cfg = job.cfg.train.ppo
    score_fns = [reward_model_score_fn(model, tokenizer) for model in reward_models]
    held_out_fn, score_fns = held_out_signal(cfg.guard, score_fns, tokenizer, load, device, "ppo")
    scorer = EnsembleScorer(score_fns, cfg.reward_ensemble, cfg.uncertainty_penalty)
    if not cfg.guard.enabled:
        return scorer, None
    guard = make_guard(
        job, cfg.guard, cfg, scorer, held_out_fn, tokenizer, rank, world,
        cfg.max_length - cfg.max_new_tokens,
    )  # fmt: skip
    return scorer, guard


def write_guard_report(out_dir, records: list[dict], metrics: dict) -> None:
    """guard.json (every evaluation and the verdict) and guard.png (proxy and held-out signal
    over steps, the onset and the stop marked) in the job folder."""
    import json

    from alignment.workspace import atomic_write_text

    report = {"evaluations": records, "verdict": metrics}
    atomic_write_text(out_dir / "guard.json", json.dumps(report, indent=2))
    if not records:
        return
    import matplotlib

    matplotlib.use("Agg")  # no display; set before pyplot is imported
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, proxy_axis = plt.subplots(figsize=(6, 3.5))
    proxy_axis.plot(steps, [r["guard/proxy"] for r in records], "o-", label="proxy")
    proxy_axis.set_xlabel("PPO step")
    proxy_axis.set_ylabel("proxy reward")
    held_axis = proxy_axis.twinx()
    held_axis.plot(
        steps, [r["guard/held_out"] for r in records], "s--", color="tab:orange", label="held-out"
    )
    held_axis.set_ylabel("held-out signal")
    for key, style in (("guard/onset_step", "r:"), ("guard/kept_step", "g-")):
        if key in metrics:
            proxy_axis.axvline(metrics[key], color=style[0], linestyle=style[1:], label=key[6:])
    if metrics.get("guard/stopped"):
        proxy_axis.axvline(metrics["guard/final_step"], color="k", linestyle="--", label="stop")
    fig.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    tmp = out_dir / ".guard.png.tmp"
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(out_dir / "guard.png")
