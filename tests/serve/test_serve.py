"""``alignment serve`` as a process against a real MLflow SQLite store, driven over HTTP.

Traces, feedback and shadow answers are read back through MLflow; ``alignment feedback pairs``
writes the consented feedback as pairs that the ingest reader takes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path

import pytest
from serving_helpers import Server

from alignment import registry
from alignment.cli import main
from alignment.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, challenger_model_dir) -> Path:
    """A workspace whose registry holds 'policy': champion v1, challenger v2 (answers differ)."""
    import mlflow

    root = tmp_path_factory.mktemp("serve-ws")
    ws = Workspace(root).ensure()
    experiment = registry.connect(ws, "alignment")
    for checkpoint in (tiny_model_dir, challenger_model_dir):
        with mlflow.start_run(experiment_id=experiment):
            registry.register_policy(checkpoint, "policy", {"method": "sft"})
    # registration makes challengers; the gate makes champions: here, v1 by hand
    mlflow.MlflowClient().set_registered_model_alias("policy", registry.CHAMPION, "1")
    return root


def _traces(root: Path, experiment: str = "serving") -> dict:
    import mlflow

    experiment_id = registry.connect(Workspace(root), experiment)
    found = mlflow.search_traces(locations=[experiment_id], return_type="list")
    return {t.info.trace_id: t for t in found}


def _root_span(trace):
    return next(s for s in trace.data.spans if s.parent_id is None)


def test_serve_traces_answers_shadows_and_takes_feedback_then_pairs_land(store, tmp_path):
    server = Server(
        store,
        tmp_path / "serve.log",
        "policy@champion",
        "--shadow", "policy@challenger",
        "--set", "serve.shadow_share=1.0",
        "--set", "serve.content=hash",
        "--set", "serve.max_new_tokens=8",
    )  # fmt: skip
    try:
        # torch's OpenMP workers sleep when they wait, unless the operator chose otherwise: a
        # team that spins loses its core to the store's writes and the clients (see the module)
        runtime = server.get("/health")["runtime"]
        assert runtime["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
        assert runtime["torch_threads"] >= 1
        assert server.post("/respond", {"prompt": "hi"}, token="wrong")[0] == 401
        status, err = server.post("/respond", {"prompt": ""})
        assert status == 400 and "'prompt'" in err["error"]
        assert server.oversized() == 413

        status, plain = server.post("/respond", {"prompt": "What is 2 plus 3?", "consent": True})
        assert status == 200 and plain["version"] == "1" and plain["response"]
        status, private = server.post("/respond", {"prompt": "my secret question"})
        assert status == 200
        status, ab = server.post(
            "/respond", {"prompt": "What is 4 plus 4?", "ab": True, "consent": True}
        )
        assert status == 200 and len(ab["responses"]) == 2
        assert ab["responses"][0] != ab["responses"][1]  # sampled, on a random tiny model

        assert server.post("/feedback", {"trace_id": plain["trace_id"], "rating": "down",
                                         "comment": "wrong sum"})[0] == 200  # fmt: skip
        assert (
            server.post("/feedback", {"trace_id": private["trace_id"], "rating": "down"})[0] == 200
        )
        # the user changes their mind: the newest choice counts
        assert server.post("/feedback", {"trace_id": ab["trace_id"], "choice": "a"})[0] == 200
        assert server.post("/feedback", {"trace_id": ab["trace_id"], "choice": "b"})[0] == 200
        # bad feedback is refused, naming what is wrong
        status, err = server.post("/feedback", {"trace_id": plain["trace_id"], "rating": "meh"})
        assert status == 400 and "'rating'" in err["error"]
        status, err = server.post("/feedback", {"trace_id": plain["trace_id"], "choice": "a"})
        assert status == 400 and "A/B" in err["error"]
        assert server.post("/feedback", {"trace_id": "tr-nope", "rating": "up"})[0] == 404

        # load: 20 concurrent clients on loopback; count that every answer and feedback is kept
        results: list[tuple[int, dict, int]] = []

        def client(i: int) -> None:
            for j in range(2):
                status, reply = server.post(
                    "/respond", {"prompt": f"load {i} {j}", "max_new_tokens": 4}
                )
                rating = "up" if (i + j) % 2 else "down"
                fb = server.post("/feedback", {"trace_id": reply.get("trace_id"), "rating": rating})
                results.append((status, reply, fb[0]))

        clients = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=300)
        assert len(results) == 40 and all(s == 200 and f == 200 for s, _, f in results)
        load_ids = {reply["trace_id"] for _, reply, _ in results}
        assert len(load_ids) == 40
    finally:
        log = server.stop()
    counts = json.loads(re.search(r"stopped: (\{.*\})", log).group(1).replace("'", '"'))
    # every non-A/B request shadowed; nothing skipped, nothing unrecorded
    assert counts == {
        "requests": 43,
        "feedback": 44,
        "shadowed": 42,
        "shadow_skipped": 0,
        "unrecorded": 0,
    }

    traces = _traces(store)
    requests = {k: t for k, t in traces.items() if t.info.tags["alignment.role"] == "request"}
    shadows = {k: t for k, t in traces.items() if t.info.tags["alignment.role"] == "shadow"}
    assert load_ids <= set(requests) and len(requests) == 43 and len(shadows) == 42
    for trace_id in load_ids:
        ratings = [a for a in requests[trace_id].info.assessments if a.name == "user_rating"]
        assert len(ratings) == 1 and ratings[0].source.source_type == "HUMAN"
    # every shadow answer points at its request, and the request at it
    assert {t.info.tags["alignment.shadow_of"] for t in shadows.values()} == {
        k for k, t in requests.items() if t.info.tags["alignment.ab"] == "false"
    }
    for shadow_id, shadow in shadows.items():
        assert (
            requests[shadow.info.tags["alignment.shadow_of"]].info.tags["alignment.shadow_trace"]
            == shadow_id
        )
        assert shadow.info.tags["alignment.model_version"] == "2"

    first = requests[plain["trace_id"]]
    assert first.info.tags["alignment.model_version"] == "1"
    assert first.info.tags["alignment.alias"] == "champion"
    assert _root_span(first).inputs == {"prompt": "What is 2 plus 3?"}  # consented: kept
    generate = next(s for s in first.data.spans if s.parent_id is not None)
    usage = generate.attributes["mlflow.chat.tokenUsage"]
    assert usage["input_tokens"] > 4 and 1 <= usage["output_tokens"] <= 8
    assert generate.attributes["latency_ms"] > 0
    [rating] = [a for a in first.info.assessments if a.name == "user_rating"]
    assert rating.feedback.value is False and rating.rationale == "wrong sum"

    hidden = requests[private["trace_id"]]
    digest = "sha256:" + hashlib.sha256(b"my secret question").hexdigest()
    assert _root_span(hidden).inputs == {"prompt": digest}  # no consent: hashed
    assert "my secret question" not in json.dumps(hidden.to_dict())
    assert private["response"] not in json.dumps(hidden.to_dict())

    landing = tmp_path / "landing"
    assert main(["feedback", "pairs", "--workspace", str(store), "--landing", str(landing),
                 "--json", str(tmp_path / "pairs.json")]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "pairs.json").read_text())
    # consented: the thumbs-down and the A/B choice; the private thumbs-down and the load
    # requests gave no consent (their hashed answers differ, so only consent keeps them out)
    assert summary["pairs"] == 2 and summary["skipped"] == {}
    from alignment.data.formats import read_preferences

    read = read_preferences(Path(summary["path"]))
    assert not read.malformed and len(read.records) == 2
    by_kind = {json.loads(r["meta"])["kind"]: r for r in read.records}
    chosen_b = by_kind["ab_choice"]
    assert chosen_b["chosen"][0]["content"] == ab["responses"][1]
    assert chosen_b["rejected"][0]["content"] == ab["responses"][0]
    assert json.loads(chosen_b["meta"])["trace_ids"] == [ab["trace_id"]]
    down = by_kind["thumbs_down_vs_shadow"]
    down_meta = json.loads(down["meta"])
    shadow_id = first.info.tags["alignment.shadow_trace"]
    assert down_meta["trace_ids"] == [plain["trace_id"], shadow_id]
    assert (down_meta["model_version"], down_meta["chosen_model_version"]) == ("1", "2")
    assert down["rejected"][0]["content"] == plain["response"]
    assert down["chosen"][0]["content"] == _root_span(shadows[shadow_id]).outputs["response"]
    assert down["prompt"] == [{"role": "user", "content": "What is 2 plus 3?"}]

    # exported feedback is not exported again
    assert main(["feedback", "pairs", "--workspace", str(store), "--landing", str(landing),
                 "--json", str(tmp_path / "again.json")]) == 0  # fmt: skip
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["pairs"] == 0 and again["path"] is None
    assert [p.name for p in landing.iterdir()] == [Path(summary["path"]).name]


def test_serve_refuses_what_it_cannot_do_safely_naming_why(store, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ALIGNMENT_SERVE_TOKEN", raising=False)
    ws = ["--workspace", str(store)]
    assert main(["serve", "policy@champion", "--host", "0.0.0.0", *ws]) == 2
    assert "ALIGNMENT_SERVE_TOKEN" in capsys.readouterr().err
    assert main(["serve", "policy@no-such-alias", "--port", "0", *ws]) == 2
    assert "has no alias 'no-such-alias'" in capsys.readouterr().err
    assert main(["feedback", "pairs", *ws]) == 2
    assert "landing" in capsys.readouterr().err
