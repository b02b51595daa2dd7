"""The review flow pauses for a person's verdicts (Prefect UI), then applies and versions them."""

from __future__ import annotations

import json
import threading
import time

from prefect_helpers import paused_run_id


def test_review_pauses_for_verdicts_and_versions_the_flips(prefect_api, tmp_path):
    import pandas as pd
    from prefect import get_client
    from prefect.flow_runs import resume_flow_run

    from alignment.cai.review import load_labelled
    from flows.cai import cai_review_flow

    labelled = tmp_path / "labelled.jsonl"
    rows = [
        {
            "prompt": [{"role": "user", "content": f"How do I look after plant number {i}?"}],
            "chosen": [{"role": "assistant", "content": f"Water plant {i} once a week."}],
            "rejected": [{"role": "assistant", "content": f"I cannot help with plant {i}."}],
            "score_chosen": 0.7,
            "score_rejected": 0.3,
            "meta": {"principle": "non-evasive", "constitution_hash": "abc"},
        }
        for i in range(10)
    ]
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ws = tmp_path / "ws"
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = cai_review_flow(
                labelled=str(labelled),
                overrides=[f"workspace.root={ws}", "cai.review_sample_size=4"],
                timeout_seconds=300,
            )
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    run_id = paused_run_id("cai-review", time.monotonic() + 180)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    sample = next(a for a in artifacts if a.key == "cai-review-sample").data
    ids = [r["id"] for r in load_labelled(labelled)]
    shown = [i for i in ids if f"| {i} |" in sample]
    assert len(shown) == 4 and "Water plant" in sample  # the person sees the pairs themselves
    resume_flow_run(run_id, run_input={"verdicts": {shown[0]: "flip", shown[1]: "agree"}})
    thread.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")

    result = outcome["result"]
    assert (result.reviewed, result.agreed, result.flipped) == (2, 1, 1)
    assert result.agreement_rate == 0.5
    written = [json.loads(line) for line in result.out_path.read_text().splitlines()]
    assert len(written) == 10
    flipped = [r for r in written if r["meta"].get("human_review") == "flip"]
    assert len(flipped) == 1 and flipped[0]["chosen"][0]["content"].startswith("I cannot help")
    # the corrected pairs are a new version of the AI-feedback dataset
    versions = list((ws / "data-repo" / "datasets").glob("*/accepted.parquet"))
    assert versions, "the reviewed pairs were not versioned"
    accepted = pd.read_parquet(versions[0])
    assert len(accepted) == 10
