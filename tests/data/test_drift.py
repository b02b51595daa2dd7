"""Drift between data versions: measured on planted batches, in `data diff` and the retrain flow."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
from data_helpers import conv, run_cli, write_jsonl

from alignment.data.quality.drift import js_distance, ks_distance, tv_distance

pytestmark = pytest.mark.slow

WORDS = [
    "apple",
    "river",
    "green",
    "quickly",
    "house",
    "model",
    "answer",
    "seven",
    "light",
    "stone",
    "paper",
    "cloud",
]


def _batch(seed: int, n: int = 40, drifted: bool = False) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.randint(4, 10) * (5 if drifted else 1)
        prompt = " ".join(rng.choice(WORDS) for _ in range(words))
        prompt += " Объясни подробно" if drifted else ""
        chosen = "Sure: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 9)))
        rows.append(conv(f"{prompt} (case {seed}-{i})?", chosen, "I cannot say."))
    return rows


def test_distances_are_zero_for_equal_samples_and_one_for_disjoint():
    a = np.array([1, 2, 3, 4])
    assert ks_distance(a, a) == 0 and ks_distance(a, a + 10) == 1
    assert tv_distance(np.array(["x", "y"]), np.array(["y", "x"])) == 0
    assert tv_distance(np.array(["x"]), np.array(["y"])) == 1
    assert js_distance(np.array([1.0, 0]), np.array([0, 1.0])) == pytest.approx(1.0)
    assert ks_distance(a, np.array([])) is None


def test_data_diff_names_the_measures_a_drifted_batch_exceeds(tmp_path):
    ws = tmp_path / "ws"
    ids = []
    for name, rows in (("v1", _batch(1)), ("v2", _batch(2)), ("v3", _batch(3, drifted=True))):
        out = tmp_path / f"{name}.json"
        raw = write_jsonl(tmp_path / f"{name}.jsonl", rows)
        run_cli("data", "ingest", str(raw), "--version", "--json", str(out), ws=ws)
        ids.append(json.loads(out.read_text())["data_version"]["id"])
    same = run_cli("data", "diff", ids[0], ids[1], "--json", str(tmp_path / "d12.json"), ws=ws)
    assert "EXCEEDED" not in same.stdout
    page = tmp_path / "drift.html"
    drifted = run_cli(
        "data",
        "diff",
        ids[0],
        ids[2],
        "--json",
        str(tmp_path / "d13.json"),
        "--html",
        str(page),
        ws=ws,
    )
    drift = json.loads((tmp_path / "d13.json").read_text())["drift"]
    assert {"prompt_length", "script"} <= set(drift["exceeded"])
    assert drift["measures"]["script"]["value"] == 1.0
    assert not drift["measures"]["turns"]["exceeded"]
    line = next(x for x in drifted.stdout.splitlines() if x.strip().startswith("prompt_length"))
    assert line.endswith("EXCEEDED")
    assert "prompt_length" in page.read_text() and "EXCEEDED" in page.read_text()


def _champion_on(ws: Path, model_name: str, data_version: str) -> None:
    """Register a version (no weights needed: the flow stops before it would load one) trained
    on ``data_version`` and make it the champion."""
    from mlflow import MlflowClient

    from alignment import registry
    from alignment.config import WorkspaceConfig
    from alignment.workspace import Workspace

    registry.connect(Workspace.from_config(WorkspaceConfig(root=ws)), "drift")
    client = MlflowClient()
    client.create_registered_model(model_name)
    mv = client.create_model_version(
        model_name, source=(ws / "nowhere").as_uri(), tags={"data_version": data_version}
    )
    client.set_registered_model_alias(model_name, registry.CHAMPION, mv.version)


def test_retrain_stops_before_training_on_drift_from_the_champions_data(tmp_path):
    ws = tmp_path / "ws"
    out = tmp_path / "v1.json"
    raw = write_jsonl(tmp_path / "v1.jsonl", _batch(1))
    run_cli("data", "ingest", str(raw), "--version", "--json", str(out), ws=ws)
    _champion_on(ws, "drift-policy", json.loads(out.read_text())["data_version"]["id"])
    landing = tmp_path / "landing"
    landing.mkdir()
    write_jsonl(landing / "batch.jsonl", _batch(3, drifted=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    proc = run_cli(
        "flows",
        "retrain",
        "--landing",
        str(landing),
        "--set",
        "registry.model_name=drift-policy",
        "--set",
        "registry.experiment=drift",
        "--set",
        "quality.drift.on_exceed=stop",
        "--set",
        "retrain.settle_seconds=0",  # the batch was written a moment ago
        ws=ws,
        check=False,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "drifted from the champion's" in proc.stderr and "prompt_length" in proc.stderr
    assert "Not training" in proc.stderr
    reports = list((ws / "reports").glob("drift-*.html"))
    assert len(reports) == 1 and "EXCEEDED" in reports[0].read_text()
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir())


# only as much training as a registered candidate needs: the path under test ends before it
CHEAP = [
    "train.methods=[sft]",
    "train.sft.max_steps=1",
    "train.distributed.num_processes=1",
    "evaluation.max_prompts=2",
    "evaluation.max_new_tokens=4",
]


def _real_champion_on(ws: Path, model_name: str, data_version: str, checkpoint: Path) -> None:
    """Register ``checkpoint`` as trained on ``data_version`` and make it the champion (the
    retrain evaluates its candidate against it, so it needs weights)."""
    import mlflow
    from mlflow import MlflowClient

    from alignment import registry
    from alignment.config import WorkspaceConfig
    from alignment.workspace import Workspace

    registry.connect(Workspace.from_config(WorkspaceConfig(root=ws)), "drift")
    with mlflow.start_run():
        tags = {"data_version": data_version, "eval.reward_accuracy": "0.5"}
        version = registry.register_policy(checkpoint, model_name, tags).version
    MlflowClient().set_registered_model_alias(model_name, registry.CHAMPION, version)


class _Webhook:
    """A local endpoint that keeps what the retrain flow posts to its notify webhook."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, HTTPServer

        posted = self.posted = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# trains a candidate (minutes): test_retrain_cli drives that path; this adds drift's warning
@pytest.mark.heavy
def test_retrain_with_warn_trains_on_drifted_data_and_sends_the_warning(tmp_path, tiny_model_dir):
    ws = tmp_path / "ws"
    out = tmp_path / "v1.json"
    raw = write_jsonl(tmp_path / "v1.jsonl", _batch(1))
    run_cli("data", "ingest", str(raw), "--version", "--json", str(out), ws=ws)
    before = json.loads(out.read_text())["data_version"]["id"]
    _real_champion_on(ws, "drift-warned", before, tiny_model_dir)
    landing = tmp_path / "landing"
    landing.mkdir()
    write_jsonl(landing / "batch.jsonl", _batch(3, drifted=True))
    hook = _Webhook()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    sets = [
        "registry.model_name=drift-warned",
        "registry.experiment=drift",
        "quality.drift.on_exceed=warn",
        "retrain.settle_seconds=0",
        f"retrain.notify_webhook={hook.url}",
        *CHEAP,
    ]
    result_path = tmp_path / "retrain.json"
    proc = run_cli(
        "flows",
        "retrain",
        "--landing",
        str(landing),
        "--json",
        str(result_path),
        *[arg for s in sets for arg in ("--set", s)],
        ws=ws,
        check=False,
        env=env,
        timeout=1200,  # it trains and evaluates: minutes on a busy machine
    )
    hook.server.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(result_path.read_text())
    # it did not stop: the drifted version was trained on and registered beside the champion
    assert result["status"] == "trained" and result["data_version"] != before
    assert result["registered_version"] == "2"
    assert {"prompt_length", "script"} <= set(result["drift_exceeded"])
    # the warning went out: in the log, to the webhook, and as the HTML report
    assert "drifted from the champion's" in proc.stderr and "training anyway" in proc.stderr
    (sent,) = [p for p in hook.posted if p["event"] == "data-drift"]
    assert sent["data_version"] == result["data_version"]
    assert set(sent["exceeded"]) == set(result["drift_exceeded"])
    assert "prompt_length" in sent["message"] and "on_exceed=warn" in sent["message"]
    assert "EXCEEDED" in Path(sent["report"]).read_text()
