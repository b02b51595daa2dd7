"""The approval flow: it pauses for a person, who resumes it with an answer that is recorded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from prefect_helpers import paused_run_id


def test_approval_pauses_then_records_who_decided(prefect_api, tmp_path: Path, tiny_model_dir):
    import mlflow
    from mlflow import MlflowClient
    from prefect.flow_runs import resume_flow_run

    from alignment import promotion, registry
    from alignment.workspace import Workspace
    from flows.promote import promote_flow

    ws = Workspace(tmp_path / "ws").ensure()
    experiment = registry.connect(ws, "alignment")
    versions = []
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment):
            tags = {"eval.reward_accuracy": "0.7", "eval.reward_margin_mean": "0.2"}
            tags |= {"eval.harmful_compliance_rate": "0", "eval.refusal_rate": "0"}
            tags |= {"eval.unique_response_rate": "1", "eval.distinct_2": "0.6"}
            tags |= {"eval.response_words_mean": "12", "eval.sycophancy_shift": "0"}
            versions.append(registry.register_policy(tiny_model_dir, "gated", tags).version)
    # the first version became champion through the gate, as the pipeline does it
    promotion.promote(ws, "gated", versions[0], promotion.load_policy()[0], actor="pipeline")

    outcome: dict = {}

    def run() -> None:
        try:
            outcome["decision"] = promote_flow(
                name="gated",
                version=versions[1],
                overrides=[f"workspace.root={ws.root}"],
                actor="ci",
                reason="nightly",
                require_approval=True,
                poll_interval=1,
                approval_timeout=300,
            )
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    run_id = paused_run_id("promote-model", time.monotonic() + 180)
    # still paused: nothing has moved yet
    assert registry.current_alias_version("gated", "champion") == versions[0]
    resume_flow_run(run_id, run_input={"approve": True, "approver": "pat", "reason": "LGTM"})
    thread.join(timeout=180)
    assert "error" not in outcome, outcome.get("error")

    decision = outcome["decision"]
    assert decision.promoted and decision.approval.approver == "pat"
    assert registry.current_alias_version("gated", "champion") == versions[1]
    tags = MlflowClient().get_model_version("gated", versions[1]).tags
    assert (tags["gate.decided_by"], tags["gate.requested_by"]) == ("pat", "ci")
    assert (tags["gate.approval"], tags["gate.approval_reason"]) == ("approved", "LGTM")
