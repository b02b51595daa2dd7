"""The endpoint's guarantees that need a failure to show: an answer is never returned untraced."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from alignment.serve.config import ServeConfig
from alignment.serve.server import Endpoint, NotRecorded, Policy, trace_to
from alignment.workspace import Workspace


@pytest.fixture
def endpoint(tmp_path, tiny_model_dir, monkeypatch):
    from alignment.serving import ChatModel

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    chat = ChatModel()
    chat.load_context(SimpleNamespace(artifacts={"checkpoint": str(tiny_model_dir)}))
    trace_to(Workspace(tmp_path / "ws").ensure(), "serving")
    served = Endpoint(Policy("policy", "1", "champion", chat), ServeConfig(max_new_tokens=4))
    yield served
    served.close()


def test_an_answer_whose_trace_is_not_stored_is_refused_not_returned(endpoint, monkeypatch):
    """MLflow's exporter only warns when the store refuses a trace; the endpoint must notice."""
    from mlflow.tracing.client import TracingClient

    stored = endpoint.respond({"prompt": "What is 2 plus 3?"})
    assert stored["response"] is not None and endpoint.counts["requests"] == 1

    def refuses(self, trace_info):
        raise ConnectionError("tracking store went away")

    monkeypatch.setattr(TracingClient, "start_trace", refuses)
    with pytest.raises(NotRecorded, match="was not stored"):
        endpoint.respond({"prompt": "What is 2 plus 3?"})
    assert endpoint.counts == {**endpoint.counts, "requests": 1, "unrecorded": 1}


def test_shadow_takes_exactly_the_configured_share():
    """A running credit: a share of 0.25 shadows every fourth request, none skipped."""
    endpoint = Endpoint(Policy("policy", "1", "champion", None), ServeConfig(shadow_share=0.25))
    endpoint._worker = SimpleNamespace()  # a stand-in: the queue is read, not answered
    for i in range(8):
        endpoint._maybe_shadow(f"tr-{i}", "p", {}, False, ab=False)
    endpoint._maybe_shadow("tr-ab", "p", {}, False, ab=True)  # A/B already compares two
    queued = [endpoint._queue.get_nowait()[0] for _ in range(endpoint._queue.qsize())]
    endpoint._worker = None
    assert queued == ["tr-3", "tr-7"]
