"""The CAI flow runs both phases end to end on the tiny model (training stages off)."""

from __future__ import annotations

import json

import pytest


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


def test_a_model_that_answers_nothing_stops_the_flow_with_the_prompts_named(prefect_api, tmp_path):
    """The random tiny model, sampled greedily, ends every answer at once: the flow says so
    (how many, which prompts) before the data validation could only find an empty set."""
    from alignment.cai.prompts import collect_prompts
    from alignment.errors import EmptyGenerations
    from flows.cai import cai_flow

    overrides = [f"workspace.root={tmp_path / 'ws'}", "cai.max_prompts=3", "cai.max_new_tokens=8"]
    with pytest.raises(EmptyGenerations) as caught:
        cai_flow(overrides=overrides)
    ids = ", ".join(p["id"] for p in collect_prompts(max_prompts=3))
    assert f"answer 3 of 3 prompts ({ids})" in str(caught.value)
    (run,) = (tmp_path / "ws" / "runs").glob("cai-*")
    assert len((run / "sl" / "audit.jsonl").read_text().splitlines()) == 3
    assert not (run / "sl" / "ingest").exists()  # stopped before ingest and versioning


@pytest.mark.slow
@pytest.mark.heavy  # two more training jobs; each method's job is tested on its own
def test_cai_flow_trains_sl_then_dpo_on_its_own_data(prefect_api, tmp_path):
    """With the training stages on: SFT on the revisions, then DPO from the SL model on the
    AI-labelled pairs, each a real job on the versioned data the flow produced."""
    import pandas as pd
    from transformers import AutoModelForCausalLM

    from flows.cai import cai_flow

    overrides = [
        f"workspace.root={tmp_path / 'ws'}",
        "cai.max_prompts=6",
        "cai.revision_rounds=1",
        "cai.max_new_tokens=8",
        "cai.sl_temperature=1.0",
        "train.methods=[sft,dpo]",
        "train.distributed.num_processes=1",
        "train.sft.max_steps=4",
        "train.dpo.max_steps=4",
        # the untrained judge is near 0.5 on every pair: keep them all
        "train.dpo.min_label_margin=0",
        "validation.max_rejected_fraction=1.0",
    ]
    result = cai_flow(overrides=overrides)
    assert set(result.training) == {"sft", "dpo"}
    sft, dpo = result.training["sft"], result.training["dpo"]
    assert result.sl_model == sft.output_dir
    # DPO started from the SL-CAI model and trained on the AI-feedback data version
    job = json.loads((dpo.output_dir.parent / "job.json").read_text())
    assert job["model_path"] == str(sft.output_dir)
    # ... on the judge's probabilities as soft labels (the SFT stage is untouched)
    assert job["config"]["train"]["dpo"]["soft_labels"] is True
    accepted = pd.read_parquet(result.preference_data.accepted_path)
    assert dpo.metrics["train_label_pairs"] == len(accepted)
    assert max(e["step"] for e in dpo.history if "loss" in e) == 4
    for trained in (sft, dpo):
        AutoModelForCausalLM.from_pretrained(trained.output_dir)  # a standard HF checkpoint
