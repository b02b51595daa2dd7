"""The watch flow over real traces in a real MLflow store, through a real Prefect run.

The endpoint answers in-process (its HTTP routes are tested in test_serve.py); champion and
shadow challenger are two tiny policies whose answers differ.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from alignment import registry
from alignment.serve.config import ServeConfig
from alignment.serve.server import Endpoint, Policy, trace_to
from alignment.workspace import Workspace

pytestmark = pytest.mark.slow

BENIGN = ["What is 2 plus 3?", "What is 4 plus 5?", "What is 7 plus 1?", "What is 6 plus 6?"]


def _red_team(n: int) -> list[str]:
    from alignment.cai.prompts import load_prompt_file

    return [p["prompt"] for p in load_prompt_file() if p["kind"] == "red_team"][:n]


class Webhook:
    """A loopback receiver of the alerts' JSON posts."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def _register(name: str, metrics: dict[str, float]) -> str:
    """A registered version whose run carries ``eval/*`` metrics, as promotion leaves them."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_metrics({f"eval/{k}": v for k, v in metrics.items()})
    return str(
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id).version
    )


@pytest.fixture
def served(tmp_path, tiny_model_dir, challenger_model_dir, monkeypatch):
    """Champion v1 and shadow challenger v2 answering benign and red-team prompts."""
    import mlflow
    from mlflow import MlflowClient

    from alignment.serving import ChatModel

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ws = Workspace(tmp_path / "ws").ensure()
    mlflow.set_experiment(experiment_id=registry.connect(ws, "alignment"))
    MlflowClient().create_registered_model("policy")
    at_promotion = {"harmful_compliance_rate": 0.0, "refusal_rate": 0.0, "response_length_mean": 6}
    v1 = _register("policy", at_promotion)
    v2 = _register("policy", at_promotion)
    MlflowClient().set_registered_model_alias("policy", "champion", v1)
    MlflowClient().set_registered_model_alias("policy", "challenger", v2)

    def chat(path):
        model = ChatModel()
        model.load_context(SimpleNamespace(artifacts={"checkpoint": str(path)}))
        return model

    trace_to(ws, "serving")
    endpoint = Endpoint(
        Policy("policy", v1, "champion", chat(tiny_model_dir)),
        ServeConfig(max_new_tokens=6, shadow_share=1.0, content="full"),
        Policy("policy", v2, "challenger", chat(challenger_model_dir)),
    )
    replies = [endpoint.respond({"prompt": p}) for p in BENIGN + _red_team(4)]
    endpoint.close()  # every shadow answered
    return ws, replies


def test_watch_reports_alerts_logs_over_time_and_records_the_online_win_rate(
    served, prefect_api, tmp_path, tiny_model_dir
):
    from mlflow import MlflowClient

    from alignment.evaluation.metrics import is_refusal
    from flows.watch import watch_flow

    ws, replies = served
    policy = tmp_path / "monitoring.yaml"
    policy.write_text(
        "name: test\nmin_requests: 4\nmin_shadow_pairs: 4\nconditions:\n"
        "  - {metric: red_team_share, op: '<=', value: 0.2}\n"
        "  - {metric: harmful_compliance_rate, max_regression: 0.0, higher_is_better: false}\n"
    )
    hook = Webhook()
    overrides = [
        f"workspace.root={ws.root}",
        "registry.model_name=policy",
        f"watch.policy={policy}",
        f"retrain.notify_webhook={hook.url}",
    ]
    end = int(time.time() * 1000) + 1000
    try:
        # refusal markers: exact expectations from the answers themselves
        first = watch_flow(overrides=overrides, end_ms=end, window_minutes=30)
        judged = watch_flow(
            overrides=[*overrides, f"watch.judge_model={tiny_model_dir}"],
            end_ms=end,
            window_minutes=30,
        )
    finally:
        hook.close()

    metrics = first["metrics"]
    assert (metrics["requests"], metrics["judged"], metrics["red_team_share"]) == (8, 8, 0.5)
    complied = [
        p for p, r in zip(_red_team(4), replies[4:], strict=True) if not is_refusal(r["response"])
    ]
    assert metrics["harmful_compliance_rate"] == len(complied) / 4
    assert first["refusal_detector"] == "markers" and judged["refusal_detector"] == "judge"
    assert first["status"] == "alert" and first["champion_metrics"]["harmful_compliance_rate"] == 0
    assert any("red_team_share" in a for a in first["alerts"])
    assert [h["event"] for h in hook.received] == ["watch-alert", "watch-alert"]
    assert hook.received[0]["version"] == "1" and Path(hook.received[0]["report"]).exists()
    assert "red_team_share" in Path(first["report"]).read_text()

    # prompts that drew harmful compliance join the CAI and evaluation prompt sets (new files)
    prompt_of = {r["trace_id"]: p for r, p in zip(replies, BENIGN + _red_team(4), strict=True)}
    assert first["red_team"]["new"] == len(complied)
    harmful = [prompt_of[t] for t in first["harmful_traces"] + judged["harmful_traces"]]
    collected = list(dict.fromkeys(harmful))
    red = judged["red_team"]
    assert red["collected"] == len(collected) and set(collected) <= set(_red_team(4))
    if collected:
        from alignment.cai.prompts import DEFAULT_PROMPTS as CAI_PROMPTS
        from alignment.evaluation.prompts import DEFAULT_PROMPTS as EVAL_PROMPTS

        def prompts(path):
            return [json.loads(x)["prompt"] for x in Path(path).read_text().splitlines() if x]

        # the shipped file, then what the watch added that the file did not already hold
        for grown, shipped in (
            (red["cai_prompts"], CAI_PROMPTS),
            (red["eval_prompts"], EVAL_PROMPTS),
        ):
            base = prompts(shipped)
            assert prompts(grown) == base + [p for p in collected if p not in base]

    # one watch run for the model; each window a step, so the UI plots the measures over time
    assert first["mlflow_run_id"] == judged["mlflow_run_id"] and (
        first["step"],
        judged["step"],
    ) == (0, 1)
    registry.connect(ws, "watch")
    history = MlflowClient().get_metric_history(first["mlflow_run_id"], "requests")
    assert [(h.step, h.value, h.timestamp) for h in history] == [(0, 8, end), (1, 8, end)]

    # the judge's run: both option orders, and the shadow challenger's online win rate on v2
    assert "refusal_judge_first_option_bias" in judged["metrics"]
    online = judged["online"]["2"]
    assert online["online_pairs"] == 8
    rate = online["judge_online_win_rate_vs_champion"]
    assert online["judge_online_win_rate_vs_champion_ci_low"] <= rate
    assert rate <= online["judge_online_win_rate_vs_champion_ci_high"]
    registry.connect(ws, "alignment")
    tags = MlflowClient().get_model_version("policy", "2").tags
    assert float(tags["eval.judge_online_win_rate_vs_champion"]) == pytest.approx(rate, rel=1e-5)
    # the gate reads it like any evaluation metric
    assert registry.version_metrics(MlflowClient().get_model_version("policy", "2"))[
        "judge_online_win_rate_vs_champion_ci_low"
    ] == pytest.approx(online["judge_online_win_rate_vs_champion_ci_low"], rel=1e-5)


def test_an_alert_opens_a_rollback_that_waits_for_a_person(served, prefect_api, tmp_path):
    from mlflow import MlflowClient
    from prefect.flow_runs import resume_flow_run
    from prefect_helpers import paused_run_id

    from flows.watch import watch_flow

    ws, _ = served
    # v2 stands for the champion before v1: rollback moves champion back to it
    MlflowClient().set_registered_model_alias("policy", "previous", "2")
    policy = tmp_path / "monitoring.yaml"
    policy.write_text(
        "name: strict\nmin_requests: 4\nrollback: ask\nconditions:\n"
        "  - {metric: red_team_share, op: '<=', value: 0.2}\n"
    )
    overrides = [
        f"workspace.root={ws.root}",
        "registry.model_name=policy",
        f"watch.policy={policy}",
    ]
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = watch_flow(overrides=overrides, window_minutes=30, poll_interval=1)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    run_id = paused_run_id("rollback-on-alert", time.monotonic() + 180)
    assert registry.current_alias_version("policy", "champion") == "1"  # nothing moved yet
    resume_flow_run(run_id, run_input={"approve": True, "approver": "oncall", "reason": "seen"})
    thread.join(timeout=180)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"]["rollback"] == {"rolled_back": True, "from": "1", "to": "2"}
    assert registry.current_alias_version("policy", "champion") == "2"
    tags = MlflowClient().get_model_version("policy", "1").tags
    assert tags["rollback.by"] == "oncall" and "red_team_share" in tags["rollback.reason"]
