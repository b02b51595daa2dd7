"""PPO, the RL stage of classic RLHF, as a compact trainer on transformers + DeepSpeed.

TRL removed its PPOTrainer (1.13), so this file is the platform's own. It reads top to bottom:
setup (policy and value model as DeepSpeed engines, frozen reference and reward model), then per
step: rollout (sample responses to a batch of prompts), score (reward model on the rendered turn,
minus a per-token k1 KL penalty to the reference), advantages (GAE, whitened), update (several epochs
of clipped policy and value losses), and save (checkpoints at an interval; the final policy).

Each process samples for its own shard of the prompts. The losses are the pure functions of
`alignment.methods.losses`. Policy, reference and reward model must share one tokenizer (the
reward model is trained from the SFT checkpoint). ZeRO stages 0-2: the policy generates from its
whole weights, which ZeRO-3 would first have to gather.

The step itself (rollout, score, advantages, update) is ``alignment.methods.ppo_rollout``.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from alignment.errors import ConfigError
from alignment.methods.losses import AdaptiveKLController, FixedKLController

# the step's functions lived here first; other modules and tests import them from here
from alignment.methods.ppo_rollout import (  # noqa: F401
    Rollout,
    ScoreFn,
    TorchEngine,
    assistant_end_suffix,
    cut_at_eos,
    left_pad,
    position_ids,
    ppo_step,
    response_logprobs,
    reward_model_score_fn,
    rewards_and_advantages,
    rollout,
    sample_responses,
    token_scores,
    update,
)

if TYPE_CHECKING:
    from alignment.train.entry import Job


# --- the job: setup, loop, checkpoints, save ---------------------------------------------


def prompt_ids(tokenizer: Any, dataset: Any, max_prompt_length: int) -> list[list[int]]:
    """Chat-templated prompt token ids (with the generation prompt), cut from the left."""
    prompts = []
    for prompt in dataset["prompt"]:
        ids = tokenizer.apply_chat_template(
            list(prompt), add_generation_prompt=True, return_dict=False
        )
        prompts.append(list(ids)[-max_prompt_length:])
    return prompts


def prompts_for_step(shard: list, step: int, batch_size: int, seed: int) -> list:
    """The batch of a step: a fresh shuffle of the shard every epoch, the same on a resume."""
    import torch

    orders: dict[int, list[int]] = {}
    batch = []
    for k in range(step * batch_size, (step + 1) * batch_size):
        epoch, position = divmod(k, len(shard))
        if epoch not in orders:
            generator = torch.Generator().manual_seed(seed + epoch)
            orders[epoch] = torch.randperm(len(shard), generator=generator).tolist()
        batch.append(shard[orders[epoch][position]])
    return batch


def _engine(model: Any, learning_rate: float, job: Job, micro_batch: int, world: int):
    import deepspeed
    import torch

    from alignment.train.deepspeed import build_deepspeed_config

    config = build_deepspeed_config(job.cfg.train.distributed, job.device)
    config.update(
        train_micro_batch_size_per_gpu=micro_batch,
        gradient_accumulation_steps=1,
        train_batch_size=micro_batch * world,
        gradient_clipping=1.0,
        bf16={"enabled": False},  # one precision for policy, reference, value and reward
    )
    config["zero_optimization"]["reduce_bucket_size"] = 50_000_000
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=learning_rate
    )
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def _all_reduce_mean(metrics: dict[str, float], device) -> dict[str, float]:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return metrics
    keys = sorted(metrics)
    packed = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(packed)
    return {k: float(v) / dist.get_world_size() for k, v in zip(keys, packed.tolist(), strict=True)}


def train(job: Job) -> dict:
    """PPO from job.model_path (policy and reference) against job.reward_model_path."""
    import torch
    import torch.distributed as dist
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from alignment.methods.guard import build_scorer_and_guard, write_guard_report
    from alignment.train.launch import PROGRESS_PREFIX
    from alignment.workspace import atomic_write_text

    cfg = job.cfg.train.ppo
    if job.reward_model_path is None:
        raise ConfigError("ppo needs a reward model: pass reward_model_path to launch_training")
    if job.cfg.train.distributed.zero_stage == 3:
        raise ConfigError(
            "ppo runs with train.distributed.zero_stage 0-2 (it generates in-process)"
        )
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    torch.manual_seed(cfg.seed + rank)  # different samples on every rank
    device = torch.device(job.device)

    # Setup: policy and value train; reference and reward model stay frozen.
    tokenizer = AutoTokenizer.from_pretrained(job.model_path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    load = {"dtype": torch.float32, "trust_remote_code": False}
    policy_model = AutoModelForCausalLM.from_pretrained(job.model_path, **load)
    reference = AutoModelForCausalLM.from_pretrained(job.model_path, **load).to(device).eval()
    reward_models = [
        AutoModelForSequenceClassification.from_pretrained(path, **load).to(device).eval()
        for path in job.reward_model_paths
    ]
    value_model = AutoModelForSequenceClassification.from_pretrained(
        cfg.value_model_path or job.reward_model_path, num_labels=1, **load
    )
    for frozen in (reference, *reward_models):
        frozen.requires_grad_(False)
    for model in (policy_model, value_model):  # dropout would make old and new log-probs differ
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0

    prompts = Dataset.from_parquet(
        sorted(str(p) for p in job.train_path.glob("*.parquet"))
        if job.train_path.is_dir()
        else str(job.train_path),
        columns=["prompt"],
        cache_dir=str(job.output_dir / "datasets-cache"),
    )
    all_prompts = prompt_ids(tokenizer, prompts, max(1, cfg.max_length - cfg.max_new_tokens))
    shard = all_prompts[rank::world]
    if not shard:
        raise ConfigError(f"ppo: {len(all_prompts)} prompts cannot feed {world} processes")
    batch_size = cfg.per_device_train_batch_size
    mini = min(cfg.mini_batch_size or batch_size, batch_size)
    total_steps = (
        cfg.max_steps
        if cfg.max_steps > 0
        else max(1, math.ceil(cfg.num_train_epochs * len(shard) / batch_size))
    )

    policy = _engine(policy_model, cfg.learning_rate, job, mini, world)
    value = _engine(value_model, cfg.value_learning_rate or cfg.learning_rate, job, mini, world)
    kl_ctl = (
        AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon)
        if cfg.adaptive_kl
        else FixedKLController(cfg.kl_coef)
    )
    score_fn, guard = build_scorer_and_guard(
        job, tokenizer, reward_models, rank, world, load, device
    )

    # Resume: engines restore weights and optimizer state; state.json the step and KL coefficient.
    step, history, state = 0, [], {}
    state_path = job.checkpoints_dir / "state.json"
    if job.resume and state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        tag = f"step-{state['step']}"
        policy.load_checkpoint(str(job.checkpoints_dir / "policy"), tag=tag)
        value.load_checkpoint(str(job.checkpoints_dir / "value"), tag=tag)
        step, kl_ctl.value, history = state["step"], state["kl_coef"], state["history"]
    score_fn.scale = state.get("ensemble_scale")
    if len(score_fn.score_fns) > 1 and score_fn.scale is None:
        # on the starting policy's responses to the first batch
        first = prompts_for_step(shard, 0, batch_size, cfg.seed)
        score_fn.calibrate(policy.module, first, cfg, tokenizer, device)
    if guard is not None:
        guard.records = state.get("guard", [])

    def evaluate_guard() -> bool:
        """Record a held-out evaluation when one is due; True when the stop rule ends the run."""
        if guard is None or not guard.due(step, total_steps):
            return False
        record = guard.evaluate(
            step, policy.module, reference, rank, tokenizer.pad_token_id, tokenizer.eos_token_id
        )
        if rank == 0:
            event = {"step": step, "max_steps": total_steps, "logs": record}
            print(PROGRESS_PREFIX + json.dumps(event), flush=True)
        return guard.should_stop()

    start = time.monotonic()
    steps_at_start = step
    stopped = evaluate_guard()  # the starting policy: the baseline of every drift
    while step < total_steps and not stopped:
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + step)
        batch_prompts = prompts_for_step(shard, step, batch_size, cfg.seed)
        metrics = ppo_step(
            policy,
            value,
            reference,
            score_fn,
            batch_prompts,
            cfg,
            kl_ctl.value,
            tokenizer.pad_token_id,
            tokenizer.eos_token_id,
            generator,
        )
        metrics = _all_reduce_mean(metrics, device)
        metrics["kl_coef"] = kl_ctl.value
        kl_ctl.update(metrics["kl"], batch_size * world)
        step += 1
        history.append({"step": step, **metrics})
        stopped = evaluate_guard()
        if guard is not None and guard.records[-1]["step"] == step:
            history[-1].update(guard.records[-1])
        if rank == 0 and step % cfg.logging_steps == 0:
            event = {
                "step": step,
                "max_steps": total_steps,
                "epoch": step * batch_size / len(shard),
                "train_seconds": time.monotonic() - start,
                "logs": metrics,
            }
            print(PROGRESS_PREFIX + json.dumps(event), flush=True)
        if step % cfg.save_steps == 0 and step < total_steps:
            tag = f"step-{step}"
            policy.save_checkpoint(str(job.checkpoints_dir / "policy"), tag=tag)
            value.save_checkpoint(str(job.checkpoints_dir / "value"), tag=tag)
            if rank == 0:  # written last: a checkpoint counts once its state file names it
                state = {"step": step, "kl_coef": kl_ctl.value, "history": history}
                state["ensemble_scale"] = score_fn.scale
                state["guard"] = guard.records if guard is not None else []
                atomic_write_text(state_path, json.dumps(state))
                if guard is not None:
                    guard.prune()

    # Save: rank 0 writes the policy (a plain causal LM) and the value model beside it.
    train_seconds = time.monotonic() - start
    if rank == 0:
        policy.module.save_pretrained(str(job.model_dir))
        tokenizer.save_pretrained(str(job.model_dir))
        value.module.save_pretrained(str(job.output_dir / "value_model"))
        last = history[-min(len(history), 4) :]
        guard_metrics = guard.finish(step, job.model_dir) if guard is not None else {}
        metrics = {
            "global_step": step,
            "train_runtime": train_seconds,
            "train_steps_per_second": (step - steps_at_start) / max(train_seconds, 1e-9),
            "reward": sum(h["reward"] for h in last) / max(len(last), 1),
            "kl": sum(h["kl"] for h in last) / max(len(last), 1),
            "kl_coef": kl_ctl.value,
            **guard_metrics,
        }
        if guard is not None:
            write_guard_report(job.output_dir, guard.records, guard_metrics)
        atomic_write_text(job.output_dir / "metrics.json", json.dumps(metrics, indent=2))
        baseline = [guard.records[0]] if guard is not None and guard.records else []
        written = [r for r in baseline if r["step"] == 0] + history  # step 0: before training
        atomic_write_text(job.output_dir / "history.json", json.dumps(written, indent=2))
        return metrics
    return {}
