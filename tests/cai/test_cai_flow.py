"""The CAI flow runs both phases end to end on the tiny model (training stages off)."""

from __future__ import annotations

import json


def test_cai_flow_end_to_end(prefect_api, tmp_path):
    import pandas as pd

    from alignment.constitution import load_constitution
    from flows.cai import cai_flow

    overrides = [
        f"workspace.root={tmp_path / 'ws'}",
        "cai.max_prompts=4",
        "cai.revision_rounds=1",
        "cai.max_new_tokens=8",
        "cai.sl_temperature=1.0",
        "cai.train_sft=false",
        "cai.train_rl=false",
    ]
    result = cai_flow(overrides=overrides)
    digest = load_constitution().hash
    assert result.constitution_hash == digest
    assert (tmp_path / "ws" / "constitutions" / f"{digest}.yaml").is_file()
    assert result.sl.rows > 0 and result.rl.pairs > 0
    for version in (result.sft_data, result.preference_data):
        accepted = pd.read_parquet(version.accepted_path)
        assert len(accepted) > 0
        assert all(json.loads(m)["constitution_hash"] == digest for m in accepted["meta"])
    prefs = pd.read_parquet(result.preference_data.accepted_path)
    assert (prefs["score_chosen"] >= 0.5).all()
