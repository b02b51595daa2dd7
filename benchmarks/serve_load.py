"""Load on the policy endpoint: 20 concurrent clients on loopback, against the bare pyfunc predict.

Registers the tiny policy in a fresh embedded workspace, starts `alignment serve` on it (a
separate process, as deployed), and alternates rounds: in an endpoint round, the clients each
send a request, then thumbs feedback on its answer (the answer is what is timed), for the
round's share of --seconds; in a bare round, the same number of threads call the same
registered model's pyfunc `predict` in this process, one generation at a time as the endpoint
does (its lock), so both sides queue alike. Latency is per request as a client sees it. Afterwards every answer and every feedback is
counted back from the MLflow store: none may be lost.

Reports p50/p95 per round for both sides, the medians of the rounds, and
`p50_ratio_vs_bare_pyfunc` (endpoint p50 / bare p50; target <= 1.10: tracing, HTTP and
feedback add at most 10% at p50). Both sides queue in arrival order, so their p50s compare
like with like; `ms_per_request_ratio_vs_bare_pyfunc` (wall time per completed request at
saturation, whatever the queue's order) says the same from throughput.

Like with like: both sides run the same greedy generation with the same max_new_tokens, and
the report gives the completion tokens per request of each (every answer re-tokenised by the
policy's tokenizer, the same way on both sides); both run torch with the same thread count and
OpenMP wait policy (--threads, --omp-wait-policy: the server's own, read from its /health, must
match this process's, or the run stops). Feedback latency is reported beside, not in the ratio.

    python benchmarks/serve_load.py [--seconds 60] [--clients 20] [--rounds 3] [--model DIR]
                                    [--smoke] [--threads N] [--omp-wait-policy PASSIVE|ACTIVE]

With the tiny policy a generation takes milliseconds, so the ratio measures the store's writes
per request against almost nothing; `--model` serves a real checkpoint (e.g. the SmolLM2 one
`make smollm2` prepares), where the target is meant.

Prints a table; writes benchmarks/results/serve_load.json and prints it as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [f"What is {a} plus {b}?" for a in range(10) for b in range(10)]
TOKEN = "bench"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _setup(root: Path, model: Path | None) -> None:
    """A workspace whose registry holds the policy (the tiny one, or ``model``) as v1, champion."""
    import mlflow
    from mlflow import MlflowClient

    from alignment import registry
    from alignment.config import ModelConfig
    from alignment.models import resolve_base_model
    from alignment.workspace import Workspace

    ws = Workspace(root).ensure()
    corpus = [
        f"What is {a} plus {b}? {a} plus {b} is {a + b}." for a in range(10) for b in range(10)
    ]
    checkpoint = model or resolve_base_model(ModelConfig(), ws, corpus)
    with mlflow.start_run(experiment_id=registry.connect(ws, "alignment")):
        registry.register_policy(checkpoint, "policy", {"method": "sft"})
    MlflowClient().set_registered_model_alias("policy", registry.CHAMPION, "1")


def _start_server(root: Path, max_new_tokens: int) -> tuple[subprocess.Popen, str, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"})
    env["ALIGNMENT_SERVE_TOKEN"] = TOKEN
    log = root / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "alignment", "serve", "policy@champion", "--workspace", str(root),
         "--port", "0", "--set", f"serve.max_new_tokens={max_new_tokens}"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return proc, found.group(1), log
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")


def _get(base: str, route: str) -> dict:
    with urllib.request.urlopen(base + route, timeout=60) as resp:
        return json.loads(resp.read())


def _post(base: str, route: str, body: dict) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    request = urllib.request.Request(base + route, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=300) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except OSError:  # timed out or refused: a failed call, counted (the server may still trace it)
        return 0, {}


class _FifoLock:
    """One holder at a time, waiters served in arrival order. ``threading.Lock`` is not fair: a
    bare-side thread that releases it and loops takes it again at once, so a few threads would
    make every call (at one generation's latency) while the rest wait out the round, and the
    p50 would compare queueing orders, not the work per request."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._issued = 0
        self._serving = 0

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._issued
            self._issued += 1
            self._cond.wait_for(lambda: self._serving == ticket)

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


def _phase(clients: int, seconds: float, call) -> tuple[list[float], float]:
    """``clients`` threads calling ``call(i, n)`` until ``seconds`` pass; the latencies (ms)
    each call returns, and the phase's wall time (s) until the last call returned."""
    latencies: list[float] = []
    lock = threading.Lock()
    began = time.monotonic()
    stop = began + seconds

    def client(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            elapsed = call(i, n)
            with lock:
                latencies.append(elapsed)
            n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.monotonic() - began


def _count_stored(root: Path) -> tuple[int, int]:
    """Request traces and user feedback the store holds."""
    import mlflow

    from alignment import registry
    from alignment.workspace import Workspace

    experiment = registry.connect(Workspace(root), "serving")
    traces = mlflow.search_traces(
        locations=[experiment],
        filter_string="tags.`alignment.role` = 'request'",
        return_type="list",
        include_spans=False,
    )
    feedback = sum(1 for t in traces for a in t.info.assessments if a.name == "user_rating")
    return len(traces), feedback


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="endpoint load in total")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two sides")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument(
        "--model",
        type=Path,
        help="a local Hugging Face folder to serve instead of the tiny policy: with the tiny "
        "one a generation takes milliseconds, so the store's writes dominate the ratio",
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds: checks it runs")
    parser.add_argument(
        "--threads", type=int, help="torch threads on both sides (default: torch's, the cores)"
    )
    parser.add_argument(
        "--omp-wait-policy",
        default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        help="OMP_WAIT_POLICY on both sides (the endpoint's default is PASSIVE)",
    )
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json"
    )
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rounds, args.max_new_tokens = 4.0, 2, 4
    for key, value in {"HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}.items():
        os.environ.setdefault(key, value)
    # before torch is imported; the server inherits both
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import mlflow
    import torch

    root = Path(tempfile.mkdtemp(prefix="serve-load-"))
    _setup(root, args.model)
    bare_model = mlflow.pyfunc.load_model("models:/policy/1")
    generation = _FifoLock()  # as the endpoint: one generation at a time, in arrival order
    params = {"max_new_tokens": args.max_new_tokens}  # greedy, as the endpoint without A/B
    texts: dict[str, list[str]] = {"endpoint": [], "bare": []}
    feedback_ms: list[float] = []

    def bare(i: int, n: int) -> float:
        start = time.perf_counter()
        with generation:
            out = bare_model.predict([PROMPTS[(i * 7 + n) % len(PROMPTS)]], params=params)
        elapsed = (time.perf_counter() - start) * 1000
        texts["bare"].append(out["response"][0])
        return elapsed

    proc, base, log = _start_server(root, args.max_new_tokens)
    sent = {"responses": 0, "feedback": 0, "failed": 0}
    count_lock = threading.Lock()

    def endpoint(i: int, n: int) -> float:
        """The answer's latency; the feedback that follows it is sent, counted, timed apart."""
        start = time.perf_counter()
        status, reply = _post(base, "/respond", {"prompt": PROMPTS[(i * 7 + n) % len(PROMPTS)]})
        elapsed = (time.perf_counter() - start) * 1000
        ok = status == 200
        if ok:
            texts["endpoint"].append(reply["response"])
            rating = "up" if n % 2 else "down"
            began = time.perf_counter()
            ok = (
                _post(base, "/feedback", {"trace_id": reply["trace_id"], "rating": rating})[0]
                == 200
            )
            feedback_ms.append((time.perf_counter() - began) * 1000)
        with count_lock:
            sent["responses"] += status == 200
            sent["feedback"] += ok
            sent["failed"] += not ok
        return elapsed

    share = args.seconds / args.rounds
    rounds = []
    try:
        served_runtime = _get(base, "/health")["runtime"]
        bare_runtime = {
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        }
        if served_runtime != bare_runtime:
            raise RuntimeError(f"unlike sides: endpoint {served_runtime}, bare {bare_runtime}")
        _phase(2, 1.0, endpoint)  # warm both sides before measuring
        _phase(2, 1.0, bare)
        for side in texts.values():
            side.clear()
        feedback_ms.clear()
        for r in range(args.rounds):
            served, served_s = _phase(args.clients, share, endpoint)
            plain, plain_s = _phase(args.clients, share, bare)
            rounds.append(
                {
                    "round": r,
                    "endpoint_requests": len(served),
                    "endpoint_p50_ms": _percentile(served, 0.5),
                    "endpoint_p95_ms": _percentile(served, 0.95),
                    "bare_calls": len(plain),
                    "bare_p50_ms": _percentile(plain, 0.5),
                    "bare_p95_ms": _percentile(plain, 0.95),
                    # wall time per completed request at saturation: independent of the order
                    # the queue serves in (20 clients, one generation at a time)
                    "endpoint_ms_per_request": served_s * 1000 / max(len(served), 1),
                    "bare_ms_per_request": plain_s * 1000 / max(len(plain), 1),
                }
            )
    finally:
        proc.terminate()
        proc.wait(timeout=300)
    stopped = re.search(r"stopped: (\{.*\})", log.read_text())
    server_counts = json.loads(stopped.group(1).replace("'", '"')) if stopped else {}
    stored_traces, stored_feedback = _count_stored(root)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    tokenizer = bare_model.unwrap_python_model().tokenizer

    def tokens_per_request(side: str) -> float:
        counts = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts[side]]
        return statistics.fmean(counts) if counts else float("nan")

    report = {
        "clients": args.clients,
        "seconds": args.seconds,
        "rounds": rounds,
        "max_new_tokens": args.max_new_tokens,
        "model": str(args.model) if args.model else "tiny",
        "runtime": bare_runtime,  # the same on both sides, checked
        "tokens_per_request_endpoint": tokens_per_request("endpoint"),
        "tokens_per_request_bare_pyfunc": tokens_per_request("bare"),
        "feedback_p50_ms": _percentile(feedback_ms, 0.5),
        "endpoint_p50_ms": median("endpoint_p50_ms"),
        "endpoint_p95_ms": median("endpoint_p95_ms"),
        "bare_pyfunc_p50_ms": median("bare_p50_ms"),
        "bare_pyfunc_p95_ms": median("bare_p95_ms"),
        "responses": sent["responses"],
        "feedback_sent": sent["feedback"],
        "failed": sent["failed"],
        "traces_stored": stored_traces,
        "feedback_stored": stored_feedback,
        "server_counts": server_counts,
        # what the server answered (a client may time out on an answer that was traced)
        "traces_lost": server_counts.get("requests", sent["responses"]) - stored_traces,
        "feedback_lost": sent["feedback"] - stored_feedback,
    }
    report["p50_ratio_vs_bare_pyfunc"] = report["endpoint_p50_ms"] / report["bare_pyfunc_p50_ms"]
    report["p95_ratio_vs_bare_pyfunc"] = report["endpoint_p95_ms"] / report["bare_pyfunc_p95_ms"]
    report["ms_per_request_ratio_vs_bare_pyfunc"] = median("endpoint_ms_per_request") / median(
        "bare_ms_per_request"
    )
    report["meets"] = {
        "p50_ratio_vs_bare_pyfunc": report["p50_ratio_vs_bare_pyfunc"] <= 1.10,
        "no_trace_lost": report["traces_lost"] == 0
        and report["failed"] == 0
        and server_counts.get("unrecorded") == 0,
        "no_feedback_lost": report["feedback_lost"] == 0,
    }

    print(
        f"{'round':>5} {'endpoint n':>10} {'p50 ms':>9} {'p95 ms':>9} {'ms/req':>8} "
        f"{'bare n':>7} {'p50 ms':>9} {'p95 ms':>9} {'ms/req':>8}"
    )
    for r in rounds:
        print(
            f"{r['round']:>5} {r['endpoint_requests']:>10} {r['endpoint_p50_ms']:>9.1f} "
            f"{r['endpoint_p95_ms']:>9.1f} {r['endpoint_ms_per_request']:>8.1f} "
            f"{r['bare_calls']:>7} {r['bare_p50_ms']:>9.1f} {r['bare_p95_ms']:>9.1f} "
            f"{r['bare_ms_per_request']:>8.1f}"
        )
    print(
        f"p50 ratio vs bare pyfunc {report['p50_ratio_vs_bare_pyfunc']:.3f} (target <= 1.10), "
        f"per request {report['ms_per_request_ratio_vs_bare_pyfunc']:.3f}; "
        f"traces {stored_traces}/{sent['responses']}, feedback {stored_feedback}/{sent['feedback']}"
    )
    print(
        f"tokens per request: endpoint {report['tokens_per_request_endpoint']:.1f}, "
        f"bare {report['tokens_per_request_bare_pyfunc']:.1f}; {bare_runtime}; "
        f"feedback p50 {report['feedback_p50_ms']:.1f} ms"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
