"""The retrain flow takes only landing files that have finished arriving, on the embedded default.

A model trained on the complete landing file is registered first (as a retrain would leave it),
so a run that versions that file stops there, before any training; a run that versioned a
partial file would go on to train, and is caught by its status and the versions recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo.yaml"
SETTLE = 3  # seconds; the writer writes ten times a second, so it never looks settled
# only reached if a run wrongly trains: keep that short
CHEAP = [
    "train.methods=[sft]",
    "train.sft.max_steps=1",
    "train.distributed.num_processes=1",
    "evaluation.max_prompts=2",
    "evaluation.max_new_tokens=4",
]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("landing-ws")


def _overrides(ws_root: Path, name: str, *extra: str) -> list[str]:
    return [
        f"workspace.root={ws_root}",
        f"ingest.dataset={name}",
        f"registry.model_name={name}",
        f"retrain.settle_seconds={SETTLE}",
        *CHEAP,
        *extra,
    ]


def _versions(ws_root: Path, dataset: str) -> list:
    from alignment.data.version import list_versions
    from alignment.workspace import Workspace

    return list_versions(Workspace(ws_root), dataset)


def _register_trained_on(ws_root: Path, overrides: list[str], complete: Path) -> str:
    """Register a model as trained on ``complete``'s data version; return that version's id."""
    from mlflow import MlflowClient

    from alignment import registry
    from alignment.config import load_config
    from alignment.data.ingest import ingest_file
    from alignment.workspace import Workspace

    cfg = load_config(str(DEMO), overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    out_dir = complete.parent / "ingested"
    out = ingest_file(complete, out_dir, cfg.ingest, cfg.validation, cfg.split)
    data_version = hashlib.md5(out.accepted_path.read_bytes(), usedforsecurity=False).hexdigest()
    registry.connect(ws, cfg.registry.experiment)
    client = MlflowClient()
    if not client.search_registered_models(f"name = '{cfg.registry.model_name}'"):
        client.create_registered_model(cfg.registry.model_name)
    client.create_model_version(
        cfg.registry.model_name, source=str(ws_root), tags={"data_version": data_version}
    )
    return data_version


def test_a_file_being_written_waits_then_gives_one_version_that_records_it(
    prefect_api, ws_root, tmp_path
):
    from alignment.data.version import version_metadata
    from alignment.errors import LandingFileChanged
    from alignment.workspace import Workspace
    from flows.retrain import retrain

    name = "landing-writer"
    overrides = _overrides(ws_root, name)
    content = (ROOT / "data" / "demo_preferences.jsonl").read_bytes()
    complete = tmp_path / "complete" / "batch-001.jsonl"
    complete.parent.mkdir()
    complete.write_bytes(content)
    expected = _register_trained_on(ws_root, overrides, complete)

    landing = tmp_path / "landing"
    landing.mkdir()
    batch = landing / "batch-001.jsonl"
    release = threading.Event()
    # small pieces cut lines anywhere, as a slow copy does, for up to 150 s unless released
    size = len(content) // 1500 + 1

    def write() -> None:
        with batch.open("ab") as fh:
            for start in range(0, len(content), size):
                fh.write(content[start : start + size])
                fh.flush()
                if not release.is_set():
                    release.wait(0.1)

    batch.touch()  # the writer's first piece is then the first thing waited for
    writer = threading.Thread(target=write)
    writer.start()
    try:
        while batch.stat().st_size == 0:
            time.sleep(0.05)
        during = retrain(config_path=str(DEMO), overrides=overrides, landing=str(landing))
        # the run saw the file while it was still being written
        assert writer.is_alive() and batch.stat().st_size < len(content)
    finally:
        release.set()
        writer.join(timeout=60)
    assert during["status"] == "waiting", during
    assert "waiting for 1 file still being written (batch-001.jsonl" in during["message"]
    assert list(during["waiting"]) == ["batch-001.jsonl"]
    assert _versions(ws_root, name) == []

    time.sleep(SETTLE + 0.5)
    done = retrain(config_path=str(DEMO), overrides=overrides, landing=str(landing))
    assert (done["status"], done["data_version"]) == ("nothing-new", expected), done
    [version] = _versions(ws_root, name)
    assert version.id == expected
    recorded = version_metadata(Workspace(ws_root), version)["landing_files"]
    digest = hashlib.sha256(content).hexdigest()
    assert recorded == [{"path": str(batch.absolute()), "size": len(content), "sha256": digest}]

    shown = _data_show(ws_root, name, expected)
    assert f"{batch.absolute()}  {len(content)} bytes  sha256 {digest}  unchanged" in shown.stdout

    # the same bytes again are recognised before any ingest
    again = retrain(config_path=str(DEMO), overrides=overrides, landing=str(landing))
    assert (again["status"], set(again["seconds"])) == ("nothing-new", {"check"})

    # bytes changed after they were versioned: reported, not silently read again
    with batch.open("ab") as fh:
        fh.write(content.splitlines(keepends=True)[-1].replace(b"?", b"? Briefly."))
    time.sleep(SETTLE + 0.5)
    with pytest.raises(LandingFileChanged, match=f"{batch.absolute()} changed after data version"):
        retrain(config_path=str(DEMO), overrides=overrides, landing=str(landing))
    assert [v.id for v in _versions(ws_root, name)] == [expected]

    # told to, it versions the new bytes and still says which file changed
    grown = tmp_path / "grown" / "batch-001.jsonl"
    grown.parent.mkdir()
    grown.write_bytes(batch.read_bytes())
    second = _register_trained_on(ws_root, overrides, grown)
    reread = [*overrides, "retrain.on_changed=reread"]
    after = retrain(config_path=str(DEMO), overrides=reread, landing=str(landing))
    assert (after["status"], after["data_version"]) == ("nothing-new", second), after
    [line] = after["changed"]
    assert line.startswith(f"{batch.absolute()} changed after data version {expected[:12]}")
    assert [v.id for v in _versions(ws_root, name)] == [expected, second]


def _data_show(ws_root: Path, dataset: str, version_id: str) -> subprocess.CompletedProcess:
    args = ["data", "show", version_id[:12], "--config", str(DEMO), "--workspace", str(ws_root)]
    proc = subprocess.run(
        [sys.executable, "-m", "alignment", *args, "--dataset", dataset],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_a_manifest_with_a_wrong_hash_is_refused_naming_the_file(prefect_api, ws_root, tmp_path):
    from alignment.errors import ManifestMismatch
    from flows.retrain import retrain

    name = "landing-manifest"
    landing = tmp_path / "landing"
    landing.mkdir()
    batch = landing / "batch-001.jsonl"
    batch.write_bytes((ROOT / "data" / "demo_preferences.jsonl").read_bytes())
    (landing / "SHA256SUMS").write_text(f"{'0' * 64}  batch-001.jsonl\n")
    overrides = _overrides(ws_root, name, "retrain.settle_seconds=0", "retrain.marker=manifest")
    with pytest.raises(ManifestMismatch, match=f"{batch}: sha256 [0-9a-f]{{64}}, SHA256SUMS says"):
        retrain(config_path=str(DEMO), overrides=overrides, landing=str(landing))
    assert _versions(ws_root, name) == []


def test_files_with_temporary_names_are_ignored(prefect_api, ws_root, tmp_path):
    from flows.retrain import retrain

    name = "landing-temporary"
    landing = tmp_path / "landing"
    landing.mkdir()
    names = [".batch-001.jsonl", "batch-001.jsonl.part", "batch-001.jsonl~"]
    for file in names:
        (landing / file).write_bytes((ROOT / "data" / "demo_preferences.jsonl").read_bytes())
    overrides = _overrides(ws_root, name, "retrain.settle_seconds=0")
    result = retrain(config_path=str(DEMO), overrides=overrides, landing=str(landing))
    assert result["status"] == "nothing-new", result
    assert result["message"].startswith(f"nothing to take from {landing}")
    assert sorted(result["ignored"]) == sorted(names)
    assert json.dumps(result)  # the result a deployment stores must stay plain JSON
    assert _versions(ws_root, name) == []
