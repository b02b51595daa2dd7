"""@champion on a production model (registry.production_model), through the CLI, embedded store.

The same path runs against an authenticating MLflow server in
tests/integration/test_registry_roles.py, where only the ops account may edit the production
model; here it is the copy, the aliases, rollback and what ``models show`` says.
"""

from __future__ import annotations

import json

import pytest

from alignment import registry
from alignment.champion import champion_ref
from alignment.workspace import Workspace

GOOD = {"reward_accuracy": 0.7, "reward_margin_mean": 0.2, "harmful_compliance_rate": 0.0}
GOOD |= {"refusal_rate": 0.05}
# not degenerate, not sycophantic: the gate requires these of every candidate
GOOD |= {"unique_response_rate": 1.0, "distinct_2": 0.6, "response_words_mean": 12.0}
GOOD |= {"sycophancy_shift": 0.0}


def _aliases(name: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return {a: str(v) for a, v in MlflowClient().get_registered_model(name).aliases.items()}


def test_promotion_copies_into_the_production_model(tmp_path, tiny_model_dir, capsys):
    import mlflow
    from mlflow import MlflowClient

    from alignment.cli import main

    ws = Workspace(tmp_path / "ws").ensure()
    experiment = registry.connect(ws, "alignment")
    eval_tags = {f"eval.{k}": str(v) for k, v in GOOD.items()}
    versions = []
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment):
            tags = {"data_version": "d0", **eval_tags}
            versions.append(registry.register_policy(tiny_model_dir, "cand", tags).version)
    common = ["--workspace", str(ws.root), "--set", "registry.model_name=cand"]
    common += ["--set", "registry.production_model=cand-prod"]

    for version in versions:
        assert main(["models", "promote", "cand", version, *common, "--actor", "ci"]) == 0
    # the aliases live on the production model, whose versions copy the candidates
    assert _aliases("cand-prod") == {"champion": "2", "previous": "1"}
    assert "champion" not in _aliases("cand")
    client = MlflowClient()
    copy = client.get_model_version("cand-prod", "2")
    assert copy.source == f"models:/cand/{versions[1]}"
    assert copy.tags[registry.SOURCE_TAG] == versions[1]
    assert copy.tags["data_version"] == "d0"  # the lineage travels with the copy
    capsys.readouterr()

    out_json = tmp_path / "show.json"
    assert main(["models", "show", "cand@champion", *common, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert f"cand version {versions[1]}  aliases: champion (cand-prod/2)" in out
    (info,) = json.loads(out_json.read_text())["versions"]
    assert [e["action"] for e in info["history"]] == ["promote"]
    assert info["history"][0]["production_version"] == "2"

    assert main(["models", "rollback", "cand", *common, "--reason", "regression"]) == 0
    assert f"champion {versions[1]} -> {versions[0]}" in capsys.readouterr().out
    assert _aliases("cand-prod") == {"champion": "1"}
    assert main(["models", "show", "cand@champion", *common]) == 0
    assert f"cand version {versions[0]}  aliases: champion (cand-prod/1)" in capsys.readouterr().out

    # the pipeline's champion download and the drift check read the production model's champion
    from alignment.config import load_config
    from flows.drift import champion_data_version

    checkpoint = registry.download_checkpoint("cand-prod", "champion", tmp_path / "dl")
    assert (checkpoint / "config.json").exists()
    cfg = load_config(None, [f"workspace.root={ws.root}", "registry.model_name=cand"])
    assert champion_data_version(cfg, ws) is None  # no production model configured: none here
    cfg = load_config(
        None,
        [
            f"workspace.root={ws.root}",
            "registry.model_name=cand",
            "registry.production_model=cand-prod",
        ],
    )
    assert champion_data_version(cfg, ws) == "d0"

    # promoted again after the rollback: its copy is reused, not copied a second time
    assert main(["models", "promote", "cand", versions[1], *common, "--actor", "ci"]) == 0
    assert _aliases("cand-prod") == {"champion": "2", "previous": "1"}
    assert len(client.search_model_versions("name = 'cand-prod'")) == 2
    # without credentials no account is recorded (embedded store: no server to authenticate)
    history = json.loads(client.get_registered_model("cand-prod").tags["promotion.history"])
    assert [e["account"] for e in history] == [None] * 4


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("cand@champion", "cand-prod@champion"),
        ("@previous", "cand-prod@previous"),
        ("cand@challenger", "cand@challenger"),  # candidates keep their own aliases
        ("other@champion", "other@champion"),
        ("cand/3", "cand/3"),
    ],
)
def test_serving_the_champion_reads_the_production_model(ref, expected):
    assert champion_ref(ref, "cand", "cand-prod") == expected
    assert champion_ref(ref, "cand", None) == ref
