"""The reward over-optimisation guard inside TRL's online trainers (RLOO, GRPO): the same held-out
evaluations, stop rule and kept checkpoint as PPO's (`alignment.methods.guard`), driven by a
TrainerCallback.

The proxy is what these trainers maximise: the reward model TRL was given (ensemble member 0).
The held-out signal is the ensemble's last member (`signal: held_out_member`) or a reward model
trained on other labels (`held_out_reward_model`); `ensemble_lower_bound` needs the ensemble
inside the reward, which only PPO has.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from alignment.errors import ConfigError


def guard_callback(job, method_cfg, tokenizer, progress) -> Any:
    """A TrainerCallback running the guard of `method_cfg.guard` (None when it is off)."""
    import torch
    import torch.distributed as dist
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        TrainerCallback,
    )

    from alignment.methods.guard import EnsembleScorer, held_out_signal, make_guard
    from alignment.methods.ppo import reward_model_score_fn

    guard_cfg = method_cfg.guard
    if not guard_cfg.enabled:
        return None
    if guard_cfg.signal == "ensemble_lower_bound":
        raise ConfigError(
            f"train.{job.method}.guard.signal=ensemble_lower_bound: {job.method} trains against "
            "one reward model (ensemble member 0); use held_out_member or held_out_reward_model"
        )
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = torch.device(job.device)
    load = {"dtype": torch.float32, "trust_remote_code": False}
    members = [
        AutoModelForSequenceClassification.from_pretrained(path, **load).to(device).eval()
        for path in job.reward_model_paths
    ]
    score_fns = [reward_model_score_fn(m.requires_grad_(False), tokenizer) for m in members]
    held_out_fn, proxy_fns = held_out_signal(
        guard_cfg, score_fns, tokenizer, load, device, job.method
    )
    scorer = EnsembleScorer(proxy_fns[:1], "mean", 0.0)  # member 0: what TRL maximises
    sampling = SimpleNamespace(
        max_new_tokens=method_cfg.max_completion_length, temperature=method_cfg.temperature
    )
    guard = make_guard(
        job, guard_cfg, sampling, scorer, held_out_fn, tokenizer, rank, world,
        method_cfg.max_length - method_cfg.max_completion_length,
    )  # fmt: skip
    reference = AutoModelForCausalLM.from_pretrained(job.model_path, **load).to(device).eval()
    reference.requires_grad_(False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    class GuardCallback(TrainerCallback):
        """Evaluates before the first step and every eval_steps; stops training when the rule
        fires; `finish` puts the kept policy in the job's model folder."""

        def __init__(self) -> None:
            self.guard = guard

        def _evaluate(self, args, state, control, model) -> None:
            if not guard.due(state.global_step, state.max_steps):
                return
            record = guard.evaluate(
                state.global_step, model, reference, rank, pad, tokenizer.eos_token_id
            )
            # in the trainer's log history (saved with each checkpoint: a resume restores the
            # evaluations from it), and streamed as progress, so MLflow gets every evaluation
            state.log_history.append(dict(record))
            logs = {k: v for k, v in record.items() if k != "step"}
            progress.on_log(args, state, control, logs=logs)
            if guard.should_stop():
                control.should_training_stop = True

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            guard.records = [r for r in state.log_history if "guard/held_out" in r]
            self._evaluate(args, state, control, model)  # step 0: the starting policy

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self._evaluate(args, state, control, model)

        def finish(self, final_step: int) -> dict:
            """On rank 0 after the final save: the kept policy into model/, guard.json and
            guard.png beside it; the guard's metrics."""
            from alignment.methods.guard import write_guard_report

            metrics = guard.finish(final_step, job.model_dir)
            write_guard_report(job.output_dir, guard.records, metrics)
            return metrics

    return GuardCallback()
