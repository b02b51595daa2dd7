"""Two-node DeepSpeed jobs on one machine: two `alignment train` commands, one per node.

Each node is its own CLI process with its own torchrun agent (one process per node); they meet
at a static rendezvous on 127.0.0.1 and share the job folder, as nodes share a filesystem.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from multinode_job import job_config
from preference_task import preference_rows, write_rows

from alignment.train.deepspeed import bound_group_timeouts
from alignment.train.launch import peer_lost

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def train_parquet(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("prefs") / "train.parquet", preference_rows())


def _start_node(rank: int, method: str, config: Path, model: Path, data: Path, out: Path,
                *extra: str) -> subprocess.Popen:  # fmt: skip
    """`alignment train METHOD --node-rank RANK`; its console goes to out/../<job>-node<R>.txt."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.parent / f"{out.name}-node{rank}"
    command = [
        sys.executable, "-m", "alignment", "train", method,
        "--config", str(config), "--node-rank", str(rank),
        "--model", str(model), "--train-data", str(data), "--output", str(out),
        "--json", f"{stem}.json", *extra,
    ]  # fmt: skip
    with open(f"{stem}.txt", "a") as console:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc.console = Path(f"{stem}.txt")
    return proc


def _console(proc: subprocess.Popen) -> str:
    return proc.console.read_text()


def _wait(proc: subprocess.Popen, timeout: float = 900) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        raise


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a node's CLI, its torchrun agent and workers (the agent has a session of its own)."""
    try:
        tree = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        return
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait()


def _run_job(method: str, config: Path, nodes: int, model: Path, data: Path, out: Path,
             *extra: str) -> list[subprocess.Popen]:  # fmt: skip
    procs = [_start_node(r, method, config, model, data, out, *extra) for r in range(nodes)]
    try:
        for proc in procs:
            assert _wait(proc) == 0, _console(proc)[-3000:]
    finally:
        for proc in procs:
            _kill_tree(proc)
    return procs


def _losses(job: Path) -> list[float]:
    history = json.loads((job / "history.json").read_text())
    return [entry["loss"] for entry in history if "loss" in entry]


def _worker(node: subprocess.Popen) -> psutil.Process:
    """The training process under a node's torchrun agent (one process per node here)."""
    for _ in range(600):
        for p in psutil.Process(node.pid).children(recursive=True):
            cmd = " ".join(p.cmdline())
            if "alignment.train.entry" in cmd and "torch.distributed.run" not in cmd:
                return p
        time.sleep(0.2)
    raise AssertionError("no worker process under the node's agent")


def _logged_step(job: Path) -> int:
    """The last step node 0 has logged so far."""
    step = 0
    log = job / "train.log"
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("@@progress "):
                step = json.loads(line.split(" ", 1)[1])["step"]
    return step


def _two_node_matches_one_node(tmp_path, model, data, zero_stage):
    """SFT then DPO, two nodes and one node; returns {(method, nodes): job folder}."""
    jobs = {}
    for nodes in (2, 1):
        config = job_config(tmp_path / f"{nodes}n", nodes, zero_stage)
        start = model
        for method in ("sft", "dpo"):
            out = tmp_path / f"{nodes}n" / method
            _run_job(method, config, nodes, start, data, out)
            jobs[method, nodes] = out
            start = out / "model"
    for method in ("sft", "dpo"):
        two, one = _losses(jobs[method, 2]), _losses(jobs[method, 1])
        assert len(two) == len(one) == 3
        assert two == pytest.approx(one, abs=1e-5), (method, two, one)
        assert (jobs[method, 2] / "model" / "config.json").is_file()
        # both nodes took part: node 1 ran its own agent as node 1 of 2
        node1 = (jobs[method, 2] / "train-node1.log").read_text()
        assert "--nnodes 2 --node_rank 1 --nproc_per_node 1" in node1
        assert json.loads((jobs[method, 2] / "job-node1.json").read_text())["method"] == method
    assert _losses(jobs["dpo", 2])[-1] < _losses(jobs["dpo", 2])[0]  # DPO did learn
    return jobs


def test_two_node_sft_then_dpo_matches_the_one_node_run_zero2(
    tiny_model_dir, train_parquet, tmp_path
):
    _two_node_matches_one_node(tmp_path, tiny_model_dir, train_parquet, zero_stage=2)


@pytest.mark.heavy  # the ZeRO-2 test drives the same two-node path in the default suite
def test_two_node_sft_then_dpo_matches_the_one_node_run_zero3(
    tiny_model_dir, train_parquet, tmp_path
):
    _two_node_matches_one_node(tmp_path, tiny_model_dir, train_parquet, zero_stage=3)


def test_frozen_node_fails_the_job_after_the_timeout_and_resume_continues(
    tiny_model_dir, train_parquet, tmp_path
):
    timeout = 20
    config = job_config(tmp_path, 2, collective_timeout_seconds=timeout)
    cfg = yaml.safe_load(config.read_text())
    cfg["train"]["sft"].update(max_steps=8, save_steps=2)
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "sft"
    nodes = [_start_node(r, "sft", config, tiny_model_dir, train_parquet, out) for r in (0, 1)]
    try:
        worker = _worker(nodes[1])
        deadline = time.monotonic() + 600
        while _logged_step(out) < 3:  # checkpoint-2 is complete once step 3 is logged
            assert nodes[0].poll() is None, _console(nodes[0])[-3000:]
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.1)
        worker.send_signal(signal.SIGSTOP)  # node 1 freezes: its sockets stay open, it is silent
        frozen_at = time.monotonic()
        code = _wait(nodes[0], timeout=timeout + 300)
        waited = time.monotonic() - frozen_at
    finally:
        for node in nodes:
            _kill_tree(node)  # as a cluster would stop the job's other pods

    console = _console(nodes[0])
    assert code == 2, console[-3000:]
    assert "node 0 of 2 failed: a process of the job died or stopped answering" in console
    assert f"collective_timeout_seconds={timeout}" in console
    assert f"Timed out waiting {timeout * 1000}ms" in console
    assert "--resume" in console
    # bounded by the configured timeout (plus a loaded machine's teardown), not a hang
    assert timeout - 2 <= waited < timeout + 120, waited
    assert not (out / "model").exists()

    complete = [
        int(p.name.split("-")[1])
        for p in (out / "checkpoints").glob("checkpoint-*")
        if (p / "trainer_state.json").is_file()
    ]
    assert complete and max(complete) >= 2
    # the resume is timed by nothing: a loaded machine (another job beside it) may leave a node
    # silent for longer than the 20 s the freeze above is measured against
    cfg["train"]["distributed"]["collective_timeout_seconds"] = 600
    config.write_text(yaml.safe_dump(cfg))
    _run_job("sft", config, 2, tiny_model_dir, train_parquet, out, "--resume")
    log = (out / "train.log").read_text()
    resumed = log[log.rindex("--node_rank 0") :]
    first = json.loads(resumed.split("@@progress ", 1)[1].splitlines()[0])["step"]
    assert first == max(complete) + 1  # continued from the last complete checkpoint
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history if "loss" in h] == list(range(1, 9))
    result = json.loads((tmp_path / "sft-node0.json").read_text())
    assert result["metrics"]["global_step"] == 8


@pytest.mark.heavy  # the frozen-node test drives the same failure path in the default suite
def test_killed_node_fails_the_job_with_a_clear_error(tiny_model_dir, train_parquet, tmp_path):
    config = job_config(tmp_path, 2, collective_timeout_seconds=60)
    cfg = yaml.safe_load(config.read_text())
    cfg["train"]["sft"].update(max_steps=30)
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "sft"
    nodes = [_start_node(r, "sft", config, tiny_model_dir, train_parquet, out) for r in (0, 1)]
    try:
        worker = _worker(nodes[1])
        while _logged_step(out) < 1:
            assert nodes[0].poll() is None, _console(nodes[0])[-3000:]
            time.sleep(0.1)
        worker.kill()
        killed_at = time.monotonic()
        codes = [_wait(node, timeout=300) for node in nodes]
        waited = time.monotonic() - killed_at
    finally:
        for node in nodes:
            _kill_tree(node)
    assert codes == [2, 2]
    # the socket of a killed process reads as closed or reset, depending on what was in flight
    assert re.search(
        r"died or stopped answering \(Connection (closed|reset) by peer\)", _console(nodes[0])
    )
    assert "SIGKILL" in _console(nodes[1])  # node 1's own report names what happened to it
    assert waited < 60  # a closed socket is noticed at once, well before the timeout


def test_missing_node_fails_the_rendezvous_after_its_timeout(
    tiny_model_dir, train_parquet, tmp_path
):
    config = job_config(tmp_path, 2, rendezvous_timeout_seconds=5)
    started = time.monotonic()
    node0 = _start_node(0, "sft", config, tiny_model_dir, train_parquet, tmp_path / "sft")
    code = _wait(node0, timeout=300)  # node 1 never comes
    waited = time.monotonic() - started
    console = _console(node0)
    assert code == 2, console[-3000:]
    assert "waiting for clients" in console and "rendezvous_timeout_seconds=5" in console
    assert waited < 5 + 120
    assert not (tmp_path / "sft" / "checkpoints").exists()  # no process started training


def test_peer_loss_phrases_of_gloo_nccl_and_the_store():
    assert peer_lost("RuntimeError: [pair.cc:553] Connection closed by peer [127.0.0.1]:1")
    assert peer_lost("[unbound_buffer.cc:129] Timed out waiting 60000ms for send operation")
    assert peer_lost("DistStoreError: wait timeout after 60000ms, keys: /default_pg/0//cpu//0/1")
    assert peer_lost("Watchdog caught collective operation timeout: WorkNCCL(SeqNum=5)")
    assert peer_lost("Timed out after 6 seconds waiting for clients. 1/2 clients joined.")
    assert peer_lost("ValueError: train path missing.parquet does not exist") is None


def test_groups_created_without_a_timeout_get_the_configured_one():
    from datetime import timedelta

    import torch.distributed.distributed_c10d as c10d

    saved = c10d.default_pg_timeout, c10d.default_pg_nccl_timeout
    try:
        bound_group_timeouts(timedelta(seconds=7))
        # what new_group(timeout=None) falls back to, e.g. when DeepSpeed builds its groups
        assert c10d._get_default_timeout(c10d.Backend.GLOO) == timedelta(seconds=7)
    finally:
        c10d.default_pg_timeout, c10d.default_pg_nccl_timeout = saved


def test_a_peer_that_raised_is_reported_by_its_own_error_not_as_lost(tmp_path):
    from alignment.config import PipelineConfig
    from alignment.errors import PeerLost, TrainingFailed
    from alignment.train.launch import job_failure

    cfg = PipelineConfig()
    log = tmp_path / "train.log"
    log.write_text("the job's output\n")
    closed = "RuntimeError: [pair.cc:553] Connection closed by peer [127.0.0.1]:1"
    lost = job_failure("dpo", cfg, 1, [closed], "Connection closed by peer", log)
    assert type(lost) is PeerLost and "--resume" in str(lost)
    # rank 1 raised, and rank 0 lost it: the cause is rank 1's error
    failed = job_failure(
        "dpo", cfg, 1, [closed, "ValueError: bad row 7"], "Connection closed by peer", log
    )
    assert type(failed) is TrainingFailed
    assert "job error:\n  ValueError: bad row 7\n" in str(failed) and "closed" not in str(failed)
    plain = job_failure("dpo", cfg, 1, [], None, log)
    assert type(plain) is TrainingFailed and "the job's output" in str(plain)
