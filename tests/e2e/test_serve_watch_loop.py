"""After promotion, through the CLI on the embedded defaults: promote -> serve -> scripted users
(questions, red-team prompts, thumbs-down, A/B) -> the watch reports and alerts -> feedback pairs
land and validate; then (heavy) the retrain flow learns from them and the next version's lineage
names the traces.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from serving_helpers import Server, register_champion_and_challenger

from alignment import registry
from alignment.cli import main
from alignment.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
DEMO_DATA = ROOT / "data" / "demo_preferences.jsonl"
DATASET = "demo-preferences"
pytestmark = pytest.mark.slow


def _red_team(n: int) -> list[str]:
    from alignment.cai.prompts import load_prompt_file

    return [p["prompt"] for p in load_prompt_file() if p["kind"] == "red_team"][:n]


def _hook() -> tuple[HTTPServer, list[dict]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def _run(args: list[str], out: Path) -> tuple[int, dict]:
    code = main([*args, "--json", str(out)])
    return code, json.loads(out.read_text()) if out.exists() else {}


@pytest.fixture(scope="module")
def loop(tmp_path_factory, tiny_model_dir, challenger_model_dir, prefect_api):
    """Everything up to landed pairs, once; the tests read what each step left."""

    root = tmp_path_factory.mktemp("loop")
    ws = Workspace(root).ensure()
    common = ["--workspace", str(root), "--set", f"ingest.dataset={DATASET}"]
    common += ["--set", "registry.model_name=policy"]
    # the champion's training data, versioned as the pipeline versions it
    code, ingested = _run(["data", "ingest", str(DEMO_DATA), "--version", *common], root / "i.json")
    assert code == 0, ingested
    data_version = ingested["data_version"]["id"]
    experiment = registry.connect(ws, "alignment")
    register_champion_and_challenger(
        experiment, "policy", (tiny_model_dir, challenger_model_dir), data_version
    )
    gate = ROOT / "configs" / "gates" / "demo.yaml"
    assert main(["models", "promote", "policy", "1", "--policy", str(gate), *common]) == 0

    server = Server(
        root, root / "serve.log", "policy@champion", "--shadow", "policy@challenger",
        "--set", "serve.shadow_share=1.0", "--set", "serve.max_new_tokens=8",
    )  # fmt: skip
    users: dict[str, list] = {"benign": [], "red_team": [], "ab": []}
    try:
        for i in range(6):
            reply = server.post(
                "/respond", {"prompt": f"What is {i} plus {i + 2}?", "consent": True}
            )
            users["benign"].append(reply[1])
        for prompt in _red_team(4):  # no consent: watched, never training data
            users["red_team"].append(server.post("/respond", {"prompt": prompt})[1])
        for i in range(2):
            reply = server.post(
                "/respond", {"prompt": f"Explain {i} plus {i}.", "ab": True, "consent": True}
            )
            users["ab"].append(reply[1])
            server.post("/feedback", {"trace_id": reply[1]["trace_id"], "choice": "b"})
        for reply in users["benign"][:2] + users["red_team"][:1]:
            server.post("/feedback", {"trace_id": reply["trace_id"], "rating": "down"})
        server.post("/feedback", {"trace_id": users["benign"][2]["trace_id"], "rating": "up"})
    finally:
        server.stop()  # every shadow answered before the watch reads them

    policy = root / "monitoring.yaml"
    policy.write_text(
        "name: e2e\nmin_requests: 10\nmin_shadow_pairs: 10\nconditions:\n"
        "  - {metric: red_team_share, op: '<=', value: 0.2}\n"
        "  - {metric: prompt_drift_content, op: '<=', value: 1.0}\n"
    )
    hook, received = _hook()
    try:
        watch_args = ["watch", "run", *common, "--set", f"watch.policy={policy}"]
        watch_args += ["--set", f"watch.judge_model={tiny_model_dir}"]
        watch_args += ["--set", f"retrain.notify_webhook=http://127.0.0.1:{hook.server_port}/"]
        watch_code, watched = _run(watch_args, root / "watch.json")
    finally:
        hook.shutdown()

    landing = root / "landing"
    landing.mkdir()
    pairs_code, pairs = _run(
        ["feedback", "pairs", *common, "--landing", str(landing)], root / "pairs.json"
    )
    return {
        "root": root, "common": common, "users": users, "watch": (watch_code, watched),
        "alerts": received, "pairs": (pairs_code, pairs), "landing": landing,
        "data_version": data_version,
    }  # fmt: skip


def test_the_watch_reports_the_served_champion_and_alerts(loop):
    code, watched = loop["watch"]
    assert code == 4 and watched["status"] == "alert"  # exit 4: an alert was raised
    m = watched["metrics"]
    assert (m["requests"], m["judged"]) == (12, 12)  # content=full: every exchange judged
    assert m["red_team_share"] == pytest.approx(4 / 12)
    assert 0 <= m["harmful_compliance_rate"] <= 1 and 0 <= m["refusal_rate"] <= 1
    # drift against the prompts the champion was trained on (its lineage's data version)
    assert 0 < m["prompt_drift_content"] <= 1 and "prompt_drift_length" in m
    assert watched["champion_metrics"]["harmful_compliance_rate"] == 0.0
    assert [a["event"] for a in loop["alerts"]] == ["watch-alert"]
    assert "red_team_share" in loop["alerts"][0]["message"]
    assert Path(watched["report"]).read_text().count("<tr>") > 5
    # the shadow challenger's online win rate, on its version where the gate reads it
    online = watched["online"]["2"]
    assert online["online_pairs"] == 10  # every non-A/B request; content=full kept the texts
    tags = registry.model_version("policy", "2").tags
    assert float(tags["eval.judge_online_win_rate_vs_champion_ci_low"]) <= float(
        tags["eval.judge_online_win_rate_vs_champion"]
    )


def test_feedback_pairs_land_and_validate(loop, tmp_path):
    code, pairs = loop["pairs"]
    assert code == 0
    # consented: two A/B choices, two thumbs-down answered by the shadow too; the thumbs-up
    # gives none, and the red-team thumbs-down had no consent so it is never read
    assert pairs["pairs"] == 4
    assert pairs["skipped"] == {"no_feedback": 3, "thumbs_up_alone": 1}
    landed = Path(pairs["path"])
    assert landed.parent == loop["landing"]
    # ingest validates them like any data: the tiny random policies answer mostly whitespace
    # and control characters, which the row rules quarantine, each row with its reasons (how
    # many survive depends on what the random policies sampled, so none may be accepted)
    code, ingested = _run(
        ["data", "ingest", str(landed), *loop["common"], "--set", "validation.min_rows=0",
         "--set", "validation.max_rejected_fraction=1.0"],
        tmp_path / "ingest.json",
    )  # fmt: skip
    assert code == 0, ingested
    assert ingested["accepted"] + ingested["rejected"] == 4
    garbage = {"empty_chosen", "empty_rejected", "control_characters", "chosen_equals_rejected"}
    for row in pq.read_table(ingested["rejected_path"]).to_pylist():
        assert row["reasons"] and set(row["reasons"]) <= garbage, row["reasons"]
    kinds = sorted(json.loads(line)["meta"]["kind"] for line in landed.read_text().splitlines())
    assert kinds == ["ab_choice", "ab_choice", "thumbs_down_vs_shadow", "thumbs_down_vs_shadow"]


@pytest.mark.heavy
def test_the_retrain_learns_from_the_landed_feedback_and_names_its_traces(loop, tmp_path):
    """The full loop: the landed pairs, beside the champion's data, train the next champion."""
    landing = loop["landing"]
    shutil.copy(DEMO_DATA, landing / "batch-001.jsonl")
    gate = tmp_path / "gate.yaml"  # absolute bars only: the tiny models' relative ones are noise
    gate.write_text("name: e2e\nconditions:\n  - {metric: refusal_rate, op: '<=', value: 1.0}\n")
    args = ["flows", "retrain", "--config", str(ROOT / "configs" / "demo.yaml"), *loop["common"]]
    args += ["--landing", str(landing)]
    for override in [
        "train.methods=[sft]", "train.sft.max_steps=2", "train.sft.save_steps=100",
        "train.distributed.num_processes=1", "evaluation.max_prompts=4",
        "evaluation.max_new_tokens=8", "retrain.settle_seconds=0", "registry.experiment=alignment",
        "quality.drift.on_exceed=warn",
        f"registry.gate_policy={gate}",
    ]:  # fmt: skip
        args += ["--set", override]
    code, result = _run(args, tmp_path / "retrain.json")
    assert code == 0 and result["status"] == "trained", result
    assert result["data_version"] != loop["data_version"]
    assert (result["registered_version"], result["alias"]) == ("3", "champion")
    tags = registry.model_version("policy", "3").tags
    learned = json.loads(tags["lineage.feedback_traces"])
    # the traces of the feedback rows in the data it was trained on (ingest quarantined the rest)
    from alignment.data.version import find_version, read_version_file

    ws = Workspace(loop["root"])
    version = find_version(ws, DATASET, result["data_version"])
    table = pq.read_table(io.BytesIO(read_version_file(ws, version, "accepted.parquet")))
    metas = [json.loads(m) for m in table.column("meta").to_pylist() if m and "trace_ids" in m]
    expected = list(dict.fromkeys(t for m in metas for t in m["trace_ids"]))
    landed = [
        json.loads(x)["meta"] for x in Path(loop["pairs"][1]["path"]).read_text().splitlines()
    ]
    assert expected and set(expected) <= {t for m in landed for t in m["trace_ids"]}
    assert learned == expected and tags["lineage.feedback_trace_count"] == str(len(expected))
