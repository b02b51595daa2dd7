"""Process side of a training job: ``python -m alignment.train.entry job.json`` in every rank.

Reads the job file, keeps DeepSpeed from compiling on CPU, starts the distributed backend and
hands the job to ``alignment.methods.<method>.train``. The pieces every method shares (training
arguments, progress lines, the final save) live here too.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from alignment.config import PipelineConfig
from alignment.train.deepspeed import (
    bound_group_timeouts,
    build_deepspeed_config,
    disable_cpu_jit_ops,
    resolve_device,
)
from alignment.train.launch import ERROR_PREFIX, PROGRESS_PREFIX
from alignment.workspace import atomic_write_text


@dataclass
class Job:
    """One training job as written by `launch_training`."""

    method: str
    cfg: PipelineConfig
    model_path: Path
    train_path: Path
    eval_path: Path | None
    output_dir: Path
    resume: bool
    device: str
    reward_model_path: Path | None = None  # ppo/rloo/grpo: the learned reward model
    ensemble: list[Path] | None = None  # every member, when that model is member 0 of one

    @property
    def reward_model_paths(self) -> list[Path]:
        """The reward models PPO scores with: the ensemble, or the one reward model."""
        if self.ensemble:
            return self.ensemble
        return [self.reward_model_path] if self.reward_model_path else []

    @classmethod
    def load(cls, path: Path) -> Job:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        cfg = PipelineConfig.model_validate(raw["config"])
        return cls(
            method=raw["method"],
            cfg=cfg,
            model_path=Path(raw["model_path"]),
            train_path=Path(raw["train_path"]),
            eval_path=Path(raw["eval_path"]) if raw.get("eval_path") else None,
            output_dir=Path(raw["output_dir"]),
            resume=bool(raw.get("resume")),
            device=resolve_device(cfg.train.distributed.device),
            reward_model_path=(
                Path(raw["reward_model_path"]) if raw.get("reward_model_path") else None
            ),
            ensemble=[Path(p) for p in raw.get("reward_model_paths") or []] or None,
        )

    @property
    def checkpoints_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    @property
    def model_dir(self) -> Path:
        return self.output_dir / "model"

    def _every_rank_saved(self, checkpoint: Path) -> bool:
        """Each process's RNG state is in `checkpoint` and whole (a checkpoint saved without RNG
        states, e.g. save_only_model, has none to check)."""
        if not any(checkpoint.glob("rng_state*.pth")):
            return True
        dist = self.cfg.train.distributed
        world = dist.num_processes * dist.num_nodes
        names = ["rng_state.pth"] if world == 1 else [f"rng_state_{r}.pth" for r in range(world)]
        return all(_whole_torch_file(checkpoint / name) for name in names)

    def last_checkpoint(self) -> str | None:
        """The newest complete checkpoint to resume from, when resuming and one exists.

        The trainer writes ``trainer_state.json`` after the weights, optimizer, scheduler and
        RNG states: a checkpoint without a readable one was cut off while saving (the job was
        killed then), and the one before it is used instead. Rank 0 writes that file as soon as
        its own part is saved, so with several processes every rank's RNG state (each rank's
        last write, after its optimizer shard) must be whole too: a rank frozen or killed while
        saving left a cut-off one, which the resume could not read.

        A checkpoint of the run's last step (the job stopped after it, before its final model
        was written) is passed over too: resumed from there, transformers' epoch loop takes one
        step before it checks max_steps, so the run would end a step past it. The one before it
        is used, and the steps since are trained again (from the start when there is none).
        """
        if not self.resume or not self.checkpoints_dir.is_dir():
            return None
        steps = sorted(
            (int(p.name.rpartition("-")[2]), p)
            for p in self.checkpoints_dir.glob("checkpoint-*")
            if p.is_dir() and p.name.rpartition("-")[2].isdigit()
        )
        for _, path in reversed(steps):
            try:
                state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                print(f"skipping {path.name}: cut off while it was being saved", flush=True)
                continue
            if not self._every_rank_saved(path):
                print(f"skipping {path.name}: a process's RNG state was cut off while it was being "
                      "saved", flush=True)  # fmt: skip
                continue
            last = state.get("max_steps") or 0
            if 0 < last <= (state.get("global_step") or 0):
                print(f"skipping {path.name}: the run's last step (max_steps={last}); resumed "
                      "from it the trainer would take a step more", flush=True)  # fmt: skip
                continue
            return str(path)
        return None


def _whole_torch_file(path: Path) -> bool:
    """Whether a torch.save file is whole: it is a zip archive, whose directory comes last."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def load_preferences(
    job: Job, path: Path, args, columns: tuple[str, ...] = ("prompt", "chosen", "rejected")
):
    """prompt/chosen/rejected of the canonical records in a Parquet file or folder, as a Dataset.

    File-backed in the job's own cache folder (not in memory): TRL's preprocessing and
    reference-log-prob caching run on the main process first and the other ranks read its
    cache files, which in-memory datasets keep in a per-process temporary folder.
    """
    from datasets import Dataset

    files = sorted(str(p) for p in path.glob("*.parquet")) if path.is_dir() else [str(path)]
    with args.main_process_first(desc=f"load {path.name}"):
        return Dataset.from_parquet(
            files,
            columns=list(columns),
            cache_dir=str(job.output_dir / "datasets-cache"),
        )


def training_arguments(job: Job, method_cfg) -> dict[str, Any]:
    """Keyword arguments shared by every TRL config (all are HF TrainingArguments)."""
    import torch

    on_cpu = job.device == "cpu"
    return {
        "output_dir": str(job.checkpoints_dir),
        "learning_rate": method_cfg.learning_rate,
        "lr_scheduler_type": method_cfg.lr_scheduler_type,
        "num_train_epochs": method_cfg.num_train_epochs,
        "max_steps": method_cfg.max_steps,
        "per_device_train_batch_size": method_cfg.per_device_train_batch_size,
        "per_device_eval_batch_size": method_cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": method_cfg.gradient_accumulation_steps,
        "max_length": method_cfg.max_length,
        "seed": method_cfg.seed,
        "data_seed": method_cfg.seed,
        "logging_strategy": "steps",
        "logging_steps": method_cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": method_cfg.save_steps,
        "save_total_limit": 2,
        "eval_strategy": "no",  # evaluated once at the end, see finish()
        "report_to": "none",
        "disable_tqdm": True,
        "deepspeed": build_deepspeed_config(job.cfg.train.distributed, job.device),
        "use_cpu": on_cpu,
        # DeepSpeed on CPU asserts on bf16; on GPU bf16 when the card has it.
        "bf16": (not on_cpu) and torch.cuda.is_bf16_supported(),
        "activation_checkpointing": False,
        "model_init_kwargs": {"dtype": torch.float32, "trust_remote_code": False},
        "dataloader_num_workers": 0,
        "ddp_timeout": job.cfg.train.distributed.collective_timeout_seconds,
    }


def progress_callback():
    """A TrainerCallback that prints one `@@progress {json}` line per log step on rank 0.

    It also drops the trainer's own checkpoint of the last step when that step is off the
    save interval: `finish` saves the final model, and a checkpoint beside it (weights again,
    optimizer and DeepSpeed states: 2.7 GB for a 135M model) would only be written to be
    deleted. Checkpoints on the interval stay, for `--resume` (as the PPO loop does).
    """
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.final: dict = {}
            self._t0 = time.monotonic()
            self._last: tuple[float, float | None] = (self._t0, 0)

        def on_train_begin(self, args, state, control, **kwargs):
            self._t0 = time.monotonic()
            # After a resume the token counter's starting value is unknown: no rate until the next log.
            self._last = (self._t0, 0 if state.global_step == 0 else None)

        def on_step_end(self, args, state, control, **kwargs):
            # the trainer asks for a save at the last step whatever the interval
            last = state.global_step >= state.max_steps
            if last and state.save_steps > 0 and state.global_step % state.save_steps:
                control.should_save = False
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            logs = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
            if "train_runtime" in logs:  # the trainer's closing summary, not a step
                self.final = logs
                return
            now = time.monotonic()
            event = {
                "step": state.global_step,
                "max_steps": state.max_steps,
                "epoch": state.epoch,
                "train_seconds": now - self._t0,
                "logs": logs,
            }
            tokens = logs.get("num_tokens")
            if tokens is not None:
                then, before = self._last
                if before is not None and now > then:
                    event["tokens_per_second"] = (tokens - before) / (now - then)
                self._last = (now, tokens)
            print(PROGRESS_PREFIX + json.dumps(event), flush=True)

    return ProgressCallback()


def peak_memory_mb(device: str) -> float:
    """This process's peak so far: allocated GPU memory on cuda, resident set size on CPU."""
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def finish(job: Job, trainer, train_output, progress, extra: dict | None = None) -> dict:
    """Save the final model + tokenizer, evaluate if asked, write metrics.json and history.json.

    `extra` holds figures the method measured itself (data counts), kept in metrics.json.
    """
    from alignment.methods import lora

    if lora.is_adapter_model(trainer.model):
        lora.save_merged(job, trainer)  # a plain checkpoint, adapters merged into the base
    else:
        # Every rank calls save_model: under ZeRO-3 it gathers the shards; only rank 0 writes.
        trainer.save_model(str(job.model_dir))
    metrics = {
        **progress.final,
        **train_output.metrics,
        "train_loss": train_output.training_loss,
        "global_step": train_output.global_step,
        **(extra or {}),
        "peak_memory_mb": peak_memory_mb(job.device),
    }
    if trainer.eval_dataset is not None:
        metrics.update(trainer.evaluate())
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(str(job.model_dir))
        # The trainer's log history survives a resume (it is saved in every checkpoint).
        history = [
            {k: v for k, v in entry.items() if isinstance(v, (int, float))}
            for entry in trainer.state.log_history
            if "train_runtime" not in entry
        ]
        atomic_write_text(job.output_dir / "metrics.json", json.dumps(metrics, indent=2))
        atomic_write_text(job.output_dir / "history.json", json.dumps(history, indent=2))
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m alignment.train.entry JOB.json", file=sys.stderr)
        return 2
    try:
        return run(Job.load(Path(argv[0])))
    except Exception as exc:
        # One line the launcher lifts into TrainingFailed; the traceback follows in the log.
        print(
            f"{ERROR_PREFIX}{type(exc).__name__}: {exc}".splitlines()[0],
            file=sys.stderr,
            flush=True,
        )
        raise


def run(job: Job) -> int:
    """Check inputs, start the distributed backend without compiling anything, train."""
    for name, path in (
        ("train", job.train_path),
        ("eval", job.eval_path),
        ("model", job.model_path),
        ("reward model", job.reward_model_path),
    ):
        if path is not None and not path.exists():
            # Fail before the heavy imports, so a wrong path costs seconds, not a trainer start.
            raise FileNotFoundError(f"{name} path {path} does not exist")
    if job.device == "cpu":
        disable_cpu_jit_ops()
    import deepspeed
    import torch.distributed as dist

    # Before any model is built, so ZeRO-3 can partition parameters as they are created.
    # The timeout bounds every collective: a rank whose peer died or froze fails, never hangs.
    timeout = timedelta(seconds=job.cfg.train.distributed.collective_timeout_seconds)
    bound_group_timeouts(timeout)
    deepspeed.init_distributed(
        dist_backend="gloo" if job.device == "cpu" else "nccl", timeout=timeout
    )
    try:
        method = importlib.import_module(f"alignment.methods.{job.method}")
        method.train(job)
        if dist.is_initialized():
            # Rank 0 is still writing the final files when the others return; a rank that tears
            # down gloo under a peer can abort ("terminate called without an active exception").
            dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
