"""Start a training job as separate processes and follow it; this side never imports torch.

Every node runs one ``torchrun`` agent: ``python -m torch.distributed.run --nnodes N
--node_rank R --nproc_per_node P ... -m alignment.train.entry job.json``. One node rendezvous
on loopback; several meet at ``train.distributed.rendezvous`` (node 0's TCP store), and each
node runs this same function with its own ``node_rank`` (a Kubernetes indexed Job, a Slurm
``srun``: see infra/). Node 0 writes the model; every node needs the workspace at the same path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import alignment
from alignment.config import PipelineConfig
from alignment.errors import ConfigError, PeerLost, TrainingFailed

PROGRESS_PREFIX = "@@progress "
ERROR_PREFIX = "@@error "
METHODS = ("sft", "dpo", "reward", "ppo", "rloo", "grpo", "kto")
_TAIL_LINES = 30


@dataclass
class TrainResult:
    """What a finished training job produced."""

    method: str
    output_dir: Path  # final HF checkpoint (model + tokenizer + chat template)
    metrics: dict
    history: list[dict] = field(default_factory=list)
    log_path: Path = Path()
    wall_seconds: float = 0.0
    live_logged: bool = False  # every step's metrics reached MLflow while it trained


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_command(cfg: PipelineConfig, job_path: Path, port: int) -> list[str]:
    """This node's torchrun agent command line for a job file, from cfg.train.distributed."""
    dist = cfg.train.distributed
    if dist.num_nodes > 1:
        host, rendezvous_port = dist.rendezvous_address()
    else:
        host, rendezvous_port = "127.0.0.1", port
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", str(dist.num_nodes),
        "--node_rank", str(dist.node_rank),
        "--nproc_per_node", str(dist.num_processes),
        # static rendezvous: node ranks are fixed, so global ranks (and data shards) are too
        "--rdzv_backend", "static",
        "--master_addr", host,
        "--master_port", str(rendezvous_port),
        "--rdzv_conf", f"timeout={dist.rendezvous_timeout_seconds}",
        # a lost process fails the job; --resume restarts it from its last checkpoint
        "--max_restarts", "0",
        "-m", "alignment.train.entry", str(job_path),
    ]  # fmt: skip


def job_environment(cfg: PipelineConfig) -> dict[str, str]:
    """Environment of the job: threads split across processes, offline hub, quiet tokenizers."""
    env = dict(os.environ)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    threads = max(1, cores // cfg.train.distributed.num_processes)
    # a caller that set fewer threads shares the cores with other work (e.g. a second test worker)
    asked = env.get("OMP_NUM_THREADS", "")
    if asked.isdigit() and int(asked) > 0:
        threads = min(threads, int(asked))
    env["OMP_NUM_THREADS"] = str(threads)
    # idle OpenMP threads sleep instead of spinning: with more busy processes than cores (two
    # ranks beside a flow, a server, another job) spinning made a 0.06 s step take seconds
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["HF_HUB_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    env.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    # The job imports this package by module name, wherever the caller runs from.
    root = str(Path(alignment.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def format_progress(method: str, event: dict) -> str:
    """One human line for a logging step: step/total, loss, tokens/s, ETA."""
    step, total = event.get("step", 0), event.get("max_steps") or 0
    logs = event.get("logs", {})
    parts = [f"[{method}] step {step}/{total}"]
    if "loss" in logs:
        parts.append(f"loss {logs['loss']:.4f}")
    for key in ("rewards/accuracies", "rewards/margins"):
        if key in logs:
            parts.append(f"{key.split('/')[1]} {logs[key]:.3f}")
    if event.get("tokens_per_second"):
        parts.append(f"{event['tokens_per_second']:.0f} tok/s")
    if event.get("eta_seconds") is not None:
        parts.append(f"ETA {_clock(event['eta_seconds'])}")
    return "  ".join(parts)


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _print_progress(event: dict) -> None:
    print(event["message"], file=sys.stderr, flush=True)


def last_lines(path: Path, n: int = _TAIL_LINES) -> str:
    with contextlib.suppress(OSError), path.open(encoding="utf-8", errors="replace") as fh:
        return "".join(deque(fh, maxlen=n))
    return ""


def write_job(method: str, cfg: PipelineConfig, model_path: Path, train_path: Path,
              output_dir: Path, eval_path: Path | None, resume: bool,
              reward_model_path: Path | None = None) -> Path:  # fmt: skip
    """Write this node's job file (job.json on node 0): everything its processes need."""
    from alignment.train.ensemble import ensemble_members
    from alignment.workspace import atomic_write_text

    job = {
        "method": method,
        "config": cfg.model_dump(mode="json"),
        "model_path": str(Path(model_path).resolve()),
        "train_path": str(Path(train_path).resolve()),
        "eval_path": str(Path(eval_path).resolve()) if eval_path else None,
        "output_dir": str(output_dir.resolve()),
        "resume": resume,
        # ppo/rloo/grpo: the learned reward model (a sequence-classification checkpoint)
        "reward_model_path": str(Path(reward_model_path).resolve()) if reward_model_path else None,
        # and, when it is member 0 of an ensemble, every member (ppo scores with all of them)
        "reward_model_paths": [str(p) for p in ensemble_members(reward_model_path)]
        if reward_model_path
        else [],
    }
    return atomic_write_text(output_dir / f"job{node_suffix(cfg)}.json", json.dumps(job, indent=2))


def node_suffix(cfg: PipelineConfig) -> str:
    """'' on node 0, '-node<R>' on the others: nodes share the job folder, not its files."""
    rank = cfg.train.distributed.node_rank
    return f"-node{rank}" if rank else ""


def launch_training(
    method: str,
    cfg: PipelineConfig,
    model_path: Path,
    train_path: Path,
    output_dir: Path,
    eval_path: Path | None = None,
    resume: bool = False,
    on_progress: Callable[[dict], None] | None = None,
    reward_model_path: Path | None = None,
) -> TrainResult:
    """Run one method as a DeepSpeed job in separate processes; return where its model is.

    A reward method with train.reward.ensemble_size > 1 runs one job per ensemble member.
    """
    from alignment.train.ensemble import MANIFEST, train_reward_ensemble

    if method not in METHODS:
        raise ConfigError(f"unknown training method {method!r}; known: {', '.join(METHODS)}")
    if method == "reward" and cfg.train.reward.ensemble_size > 1:
        return train_reward_ensemble(
            cfg, model_path, train_path, output_dir, eval_path, resume, on_progress
        )
    if method == "reward":  # a manifest left by an earlier ensemble in this folder is stale
        (Path(output_dir) / MANIFEST).unlink(missing_ok=True)
    return launch_single(
        method, cfg, model_path, train_path, output_dir, eval_path, resume, on_progress,
        reward_model_path,
    )  # fmt: skip


def launch_single(
    method: str,
    cfg: PipelineConfig,
    model_path: Path,
    train_path: Path,
    output_dir: Path,
    eval_path: Path | None = None,
    resume: bool = False,
    on_progress: Callable[[dict], None] | None = None,
    reward_model_path: Path | None = None,
) -> TrainResult:
    """One DeepSpeed job: launch, follow its progress lines, collect what it wrote."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if method in ("ppo", "rloo", "grpo") and reward_model_path is None:
        raise ConfigError(f"{method} needs reward_model_path (a trained reward model folder)")
    job_path = write_job(
        method, cfg, model_path, train_path, output_dir, eval_path, resume, reward_model_path
    )
    port = cfg.train.distributed.master_port or free_port()
    command = build_command(cfg, job_path, port)
    log_path = output_dir / f"train{node_suffix(cfg)}.log"
    report = on_progress or _print_progress
    history: list[dict] = []
    errors: list[str] = []  # the job's own one-line reasons, which torchrun's report would bury
    lost: str | None = None  # the first sign that a peer process died or stopped answering

    start = time.monotonic()
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=job_environment(cfg),
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # so an interrupt can stop the whole process group
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if ERROR_PREFIX in line:
                    reason = line.split(ERROR_PREFIX, 1)[1].strip()
                    if reason not in errors:
                        errors.append(reason)
                lost = lost or peer_lost(line)
                event = _parse_progress(line)
                if event is None:
                    continue
                history.append({"step": event.get("step"), **event.get("logs", {})})
                event["elapsed_seconds"] = time.monotonic() - start
                event["eta_seconds"] = _eta(event)
                event["method"] = method
                event["message"] = format_progress(method, event)
                report(event)
            code = proc.wait()
        except BaseException:
            _stop(proc)
            raise
    wall = time.monotonic() - start

    if code != 0:
        raise job_failure(method, cfg, code, errors, lost, log_path)
    final = output_dir / "model"
    if not (final / "config.json").is_file():
        raise TrainingFailed(
            f"{method} training exited 0 but wrote no model to {final}; log: {log_path}"
        )
    metrics = _read_json(output_dir / "metrics.json", {})
    history = _read_json(output_dir / "history.json", history)
    return TrainResult(method, final, metrics, history, log_path, wall)


def job_failure(method: str, cfg: PipelineConfig, code: int, errors: list[str],
                lost: str | None, log_path: Path) -> TrainingFailed:  # fmt: skip
    """PeerLost when a lost peer is all that went wrong here, else TrainingFailed with the reasons.

    A rank that raised takes its peers down with it ("Connection closed by peer"): its own
    error, when this node saw it, is the cause to report.
    """
    tail = f"--- last {_TAIL_LINES} lines ---\n{last_lines(log_path)}"
    own = [reason for reason in errors if not peer_lost(reason)]
    if lost and not own:
        dist = cfg.train.distributed
        return PeerLost(
            f"{method} training on node {dist.node_rank} of {dist.num_nodes} failed: a process "
            f"of the job died or stopped answering ({lost}). Waits are bounded by "
            f"train.distributed.collective_timeout_seconds={dist.collective_timeout_seconds} and "
            f"rendezvous_timeout_seconds={dist.rendezvous_timeout_seconds}. Check the other "
            f"nodes' logs (train-node<R>.log beside {log_path.name}), then start every node again "
            f"with --resume to continue from the last complete checkpoint. Log: {log_path}\n{tail}"
        )
    reasons = "".join(f"  {reason}\n" for reason in own or errors)
    return TrainingFailed(
        f"{method} training failed with exit code {code}; log: {log_path}\n"
        + (f"job error:\n{reasons}" if reasons else "")
        + tail
    )


# What torch, gloo and NCCL print when a peer is gone (socket closed) or silent (timeout).
_PEER_LOST = re.compile(
    r"Connection closed by peer|Connection reset by peer|Timed out waiting \d+ms"
    r"|DistStoreError: .*timeout|Timed out after \d+ seconds waiting for clients"
    r"|client socket has timed out|Watchdog caught collective operation timeout"
)


def peer_lost(line: str) -> str | None:
    """The matched phrase when a job's output line says a peer process is gone or silent."""
    found = _PEER_LOST.search(line)
    return found.group(0) if found else None


def _parse_progress(line: str) -> dict | None:
    at = line.find(PROGRESS_PREFIX)
    if at < 0:
        return None
    try:
        event = json.loads(line[at + len(PROGRESS_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def _eta(event: dict) -> float | None:
    step, total, spent = (
        event.get("step") or 0,
        event.get("max_steps") or 0,
        event.get("train_seconds"),
    )
    if step <= 0 or total <= 0 or spent is None:
        return None
    return spent / step * max(0, total - step)


def _read_json(path: Path, default):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return default


def _stop(proc: subprocess.Popen) -> None:
    """Stop the launcher and its workers (they share the new session's process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
