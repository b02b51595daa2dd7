"""Feedback into training data: a thumbs-down paired with a CAI revision; no consent, no data.

Traces are recorded by the endpoint in-process into a real MLflow store; the pairs are written
by ``alignment feedback pairs`` and read back by the ingest reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from alignment.cli import main
from alignment.serve.config import ServeConfig
from alignment.serve.server import Endpoint, Policy, trace_to
from alignment.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture
def endpoint(tmp_path, tiny_model_dir, monkeypatch):
    from alignment.serving import ChatModel

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    chat = ChatModel()
    chat.load_context(SimpleNamespace(artifacts={"checkpoint": str(tiny_model_dir)}))
    ws = Workspace(tmp_path / "ws").ensure()
    trace_to(ws, "serving")
    # content=full: only consent, not hashing, keeps the unconsented exchanges out of training
    served = Endpoint(Policy("policy", "1", "champion", chat), ServeConfig(max_new_tokens=6))
    yield served, ws
    served.close()


def test_thumbs_down_pairs_with_its_cai_revision_and_unconsented_feedback_never_lands(
    endpoint, tmp_path, challenger_model_dir
):
    from alignment.data.formats import read_preferences

    served, ws = endpoint
    consented = served.respond({"prompt": "What is 2 plus 3?", "consent": True})
    private = served.respond({"prompt": "What is 4 plus 4?"})
    private_ab = served.respond({"prompt": "What is 1 plus 1?", "ab": True})
    served.feedback({"trace_id": consented["trace_id"], "rating": "down"})
    served.feedback({"trace_id": private["trace_id"], "rating": "down"})
    served.feedback({"trace_id": private_ab["trace_id"], "choice": "a"})

    landing, out = tmp_path / "landing", tmp_path / "pairs.json"
    common = ["--workspace", str(ws.root), "--landing", str(landing), "--json", str(out)]
    # without a reviser a thumbs-down nobody else answered gives no pair, and says why
    assert main(["feedback", "pairs", *common]) == 0
    assert json.loads(out.read_text()) == {
        "path": None,
        "pairs": 0,
        "skipped": {"thumbs_down_without_shadow_answer": 1},
    }
    revise = [
        "--revise",
        "--set", f"cai.feedback_model={challenger_model_dir}",
        "--set", "cai.revision_rounds=1",
        "--set", "cai.max_new_tokens=8",
        "--set", "evaluation.device=cpu",
    ]  # fmt: skip
    assert main(["feedback", "pairs", *common, *revise]) == 0
    summary = json.loads(out.read_text())
    assert summary["pairs"] == 1 and summary["skipped"] == {}
    read = read_preferences(Path(summary["path"]))
    assert not read.malformed and len(read.records) == 1
    [pair] = read.records
    meta = json.loads(pair["meta"])
    assert meta["kind"] == "thumbs_down_vs_revision" and meta["trace_ids"] == [
        consented["trace_id"]
    ]
    assert len(meta["principles"]) == 1 and meta["constitution_hash"]
    assert pair["rejected"][0]["content"] == consented["response"]
    assert pair["chosen"][0]["content"] not in ("", consented["response"])
    # the unconsented exchanges: in no landing file, whatever their feedback
    landed = "".join(p.read_text() for p in landing.iterdir())
    assert "4 plus 4" not in landed and "1 plus 1" not in landed
