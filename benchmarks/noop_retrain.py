"""Time a scheduled retrain that finds no new data, against a running Prefect server.

Starts a real `prefect server` on loopback the way the integration tests do
(tests/integration/servers.py: PostgreSQL-backed, API auth on; `--database sqlite` for a
machine without PostgreSQL), trains once through the retrain flow so the landing data has a
registered model, then triggers the retrain N times per variant with nothing new, the variants
interleaved round by round (the first one alternates):

- served: `alignment flows serve-retrain` serves the retrain deployment; its runner starts each
  run (what a team without workers runs);
- pool: the retrain deployment as prefect.yaml declares it, on a CPU process pool with a
  `prefect worker` (as tests/integration/test_work_pools.py runs it), its training deployment
  on a second, GPU pool. A worker starts every run as a process of its own, so this is the
  light pool's trigger-to-done.

Trigger-to-done is the wall time from `run_deployment` (which creates the flow run from the
deployment) to the run's terminal state, polled every 0.2 s: what a schedule sees. The run's
own duration as the server recorded it is reported beside it. Target: a median trigger-to-done
under 5 s for each variant. Exits 1 unless every run ended `nothing-new` and no run was ever
created on the GPU pool (a no-op must not hold a GPU).

    python benchmarks/noop_retrain.py [--runs 5] [--variants served,pool] [--database sqlite]

A few minutes on two quiet cores at 5 runs per variant (PostgreSQL and server start, one
training, then the triggers); over ten on cores shared with other work. Prints a table; writes benchmarks/results/noop_retrain.json and prints it as the
last line.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# the integration tests' servers: PostgreSQL and a Prefect server, started and stopped the same way
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from servers import (  # noqa: E402
    BIN,
    QUIET_ENV,
    PostgresServer,
    PrefectServer,
    ServerError,
    log_tail,
    postgres_bin_dir,
)

CHEAP = ["train.methods=[sft]", "train.sft.max_steps=2", "train.sft.save_steps=100"]
CHEAP += ["retrain.settle_seconds=0"]  # the landing file is copied in whole before the first run
CPU_POOL, GPU_POOL = "cpu-light", "gpu"
RETRAIN = "retrain-demo-policy"  # prefect.yaml's retrain deployment
TRAINING = "train-demo-policy"  # prefect.yaml's training deployment (the GPU pool)
# `serve-retrain` names its deployment retrain-<model name>, as prefect.yaml does: the pool's
# copy of the same declaration gets a name of its own on the shared server
POOL_DEPLOYMENT = f"{RETRAIN}-on-pool"
TARGET_S = 5.0
VARIANTS = ("served", "pool")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="triggers per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="served,pool or one")
    parser.add_argument(
        "--database",
        choices=("postgres", "sqlite"),
        default="postgres" if postgres_bin_dir() else "sqlite",
        help="the Prefect server's database (default: PostgreSQL where its binaries exist)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "noop_retrain.json"
    )
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")

    tmp = Path(tempfile.mkdtemp(prefix="noop-retrain-"))
    ws, landing = tmp / "ws", tmp / "landing"
    landing.mkdir(parents=True)
    shutil.copy(ROOT / "data" / "demo_preferences.jsonl", landing / "batch-001.jsonl")
    postgres = PostgresServer(postgres_bin_dir()) if args.database == "postgres" else None
    children: list[subprocess.Popen] = []
    server = None
    try:
        if postgres is not None:
            database_url = postgres.start().create_database("prefect", driver="asyncpg")
        else:
            database_url = f"sqlite+aiosqlite:///{tmp / 'prefect.db'}"
        server = PrefectServer(tmp / "prefect", database_url, auth=f"admin:{secrets.token_hex(8)}")
        server.start(timeout=180)
        env = _client_env(server, tmp)
        common = ["--config", str(ROOT / "configs" / "demo.yaml"), "--workspace", str(ws)]
        common += ["--landing", str(landing)]
        for override in CHEAP:
            common += ["--set", override]
        print("server healthy; first retrain (trains once)...", file=sys.stderr)
        _run([sys.executable, "-m", "alignment", "flows", "retrain", *common], env)
        if "served" in variants:
            serve = [sys.executable, "-m", "alignment", "flows", "serve-retrain", *common]
            children.append(_start([*serve, "--cron", "0 0 1 1 *"], env, tmp / "serving.log"))
        if "pool" in variants:
            for pool in (CPU_POOL, GPU_POOL):
                _run([str(BIN / "prefect"), "--no-prompt", "work-pool", "create", pool,
                      "--type", "process", "--overwrite"], env)  # fmt: skip
            _run([str(BIN / "prefect"), "--no-prompt", "deploy", "--name", TRAINING,
                  "--pool", GPU_POOL], env)  # fmt: skip
            worker = [str(BIN / "prefect"), "worker", "start", "--pool", CPU_POOL]
            children.append(_start([*worker, "--type", "process"], env, tmp / "worker.log"))
        plan = _plan(variants, args.runs, ws, landing)
        try:
            report = _trigger(env, plan)
        except RuntimeError as exc:
            logs = [f"{p.name}:\n{log_tail(p, 30)}" for p in sorted(tmp.glob("*.log"))]
            raise RuntimeError("\n".join([str(exc), *logs])) from None
    finally:
        for proc in children:  # workers and the serving process first, or they hang
            _stop(proc)
        if server is not None:
            server.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    result = summarize(report["rows"], variants, report["gpu_pool_runs"], args.database)
    _print_table(report["rows"], result)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    if not result["meets"]["every_run_nothing_new"]:
        print(f"error: not every run was a no-op: {result['statuses']}", file=sys.stderr)
        return 1
    if not result["meets"]["no_gpu_pool_run"]:
        print(f"error: {result['gpu_pool_runs']} run(s) on the GPU pool", file=sys.stderr)
        return 1
    return 0


def summarize(rows: list[dict], variants: list[str], gpu_pool_runs: int, database: str) -> dict:
    """Medians per variant, the pool's ratio to the served runner, and the verdicts."""
    per_variant = {}
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        per_variant[variant] = {
            "runs": len(mine),
            "statuses": sorted({r["status"] for r in mine}),
            # what a schedule sees: from the trigger to a finished run (the target is judged on it)
            "median_trigger_to_done_s": statistics.median(r["trigger_to_done_s"] for r in mine),
            # the server's record of the run alone, for comparison
            "median_flow_run_s": statistics.median(r["flow_run_s"] for r in mine),
        }
    result = {
        "benchmark": "noop_retrain",
        "prefect_database": database,
        "runs_per_variant": len(rows) // len(variants),
        "statuses": sorted({r["status"] for r in rows}),
        "variants": per_variant,
        "target_s": TARGET_S,
    }
    for variant, figures in per_variant.items():
        result[f"ratio_{variant}_trigger_to_done_vs_target"] = (
            figures["median_trigger_to_done_s"] / TARGET_S
        )
    if len(per_variant) == 2:
        result["ratio_pool_vs_served_trigger_to_done"] = (
            per_variant["pool"]["median_trigger_to_done_s"]
            / per_variant["served"]["median_trigger_to_done_s"]
        )
    if "pool" in per_variant:
        result["gpu_pool_runs"] = gpu_pool_runs
    result["meets"] = {
        **{
            f"{variant}_trigger_to_done_s": figures["median_trigger_to_done_s"] < TARGET_S
            for variant, figures in per_variant.items()
        },
        "every_run_nothing_new": all(r["status"] == "nothing-new" for r in rows),
        "no_gpu_pool_run": gpu_pool_runs == 0,
    }
    result["rows"] = rows
    return result


def _print_table(rows: list[dict], result: dict) -> None:
    print(f"{'run':>4} {'variant':>8} {'status':>12} {'flow run s':>11} {'trigger->done s':>16}")
    for i, r in enumerate(rows, 1):
        print(
            f"{i:>4} {r['variant']:>8} {r['status']:>12} {r['flow_run_s']:>11.2f} "
            f"{r['trigger_to_done_s']:>16.2f}"
        )
    for variant, figures in result["variants"].items():
        print(
            f"median {variant:>8}: trigger->done {figures['median_trigger_to_done_s']:.2f} s, "
            f"flow run {figures['median_flow_run_s']:.2f} s (target < {TARGET_S:g} s)"
        )
    if "gpu_pool_runs" in result:
        print(f"runs created on the GPU pool: {result['gpu_pool_runs']}")


def _plan(variants: list[str], runs: int, ws: Path, landing: Path) -> dict:
    """What the trigger process does: deployments to wait for, and the interleaved triggers."""
    # the pool's deployment from prefect.yaml's declaration: entry point, parameters, limit
    declared = {
        d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    }
    retrain = declared[RETRAIN]
    overrides = [f"workspace.root={ws}", *CHEAP]
    # as prefect.yaml's parameters: training goes to the GPU pool's deployment; were a run to
    # train anyway, its wait is short, and the GPU run it created is counted
    overrides += retrain["parameters"]["overrides"]
    overrides += ["retrain.training_timeout_s=30"]
    order = []
    for round_ in range(runs):
        order += variants if round_ % 2 == 0 else variants[::-1]
    return {
        "order": order,
        "served": f"retrain/{RETRAIN}",
        "pool": {
            "name": POOL_DEPLOYMENT,
            "entrypoint": retrain["entrypoint"],
            "concurrency_limit": retrain.get("concurrency_limit"),
            "parameters": {
                "config_path": str(ROOT / retrain["parameters"]["config_path"]),
                "overrides": overrides,
                "landing": str(landing),
            },
        },
        "cpu_pool": CPU_POOL,
        "gpu_pool": GPU_POOL,
        "root": str(ROOT),
    }


# Runs in a process of its own with the server's client settings: deploys the pool's retrain,
# waits for the deployments, triggers them in the planned order, reads each run's own summary
# (the flow's `retrain-result` artifact, readable wherever the run ran) and counts GPU-pool runs.
TRIGGER = """
import json, sys, time
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter, ArtifactFilterFlowRunId, WorkPoolFilter, WorkPoolFilterName)
from prefect.deployments import run_deployment

plan = json.loads(sys.argv[1])
names = {}
if "pool" in plan["order"]:
    spec = plan["pool"]
    source = flow.from_source(plan["root"], spec["entrypoint"])
    source.deploy(name=spec["name"], work_pool_name=plan["cpu_pool"],
                  parameters=spec["parameters"], concurrency_limit=spec["concurrency_limit"],
                  print_next_steps=False)
    names["pool"] = "retrain/" + spec["name"]
if "served" in plan["order"]:
    names["served"] = plan["served"]

with get_client(sync_client=True) as client:
    for _ in range(600):
        have = {"retrain/" + d.name for d in client.read_deployments()}
        if set(names.values()) <= have:
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"deployments never appeared: {sorted(set(names.values()) - have)}")

    rows = []
    for variant in plan["order"]:
        start = time.perf_counter()
        run = run_deployment(names[variant], timeout=600, poll_interval=0.2)
        wall = time.perf_counter() - start
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
        table = {a.key: a.data for a in artifacts}.get("retrain-result", "")
        summary = dict(
            (k.strip(), v.strip())
            for k, v in (line.strip("|").split("|") for line in table.splitlines()[2:]))
        rows.append({"variant": variant, "status": summary.get("status", run.state.type.value),
                     "state": run.state.type.value, "trigger_to_done_s": wall,
                     "flow_run_s": run.total_run_time.total_seconds()})
    gpu_runs = client.read_flow_runs(
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[plan["gpu_pool"]])))
print(json.dumps({"rows": rows, "gpu_pool_runs": len(gpu_runs)}))
"""


def _trigger(env: dict, plan: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", TRIGGER, json.dumps(plan)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _client_env(server: PrefectServer, tmp: Path) -> dict[str, str]:
    """What every client, worker and flow run here gets: the server, and nothing of the caller's
    servers (an MLflow server in the caller's environment would take the workspace's place)."""
    skip = ("PREFECT_API_", "PREFECT_HOME", "MLFLOW_TRACKING_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    return {
        **env,
        **QUIET_ENV,
        **server.client_env(),
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # the serving process (default 10 s)
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # the worker (default 10 s)
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        "GX_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _run(command: list[str], env: dict) -> None:
    proc = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise ServerError(
            f"{' '.join(command[1:5])} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, env=env, cwd=log.parent, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


if __name__ == "__main__":
    raise SystemExit(main())
