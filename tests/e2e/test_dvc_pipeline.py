"""dvc.yaml and params.yaml at the top level, run by DVC itself in a temporary copy of them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(work: Path, *args: str) -> str:
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }
    proc = subprocess.run(
        list(args), cwd=work, env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _dvc(work: Path, *args: str) -> str:
    return _run(work, str(Path(sys.executable).parent / "dvc"), *args)


def _ran(output: str) -> list[str]:
    """The stages a `dvc repro` ran, in order."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.fixture
def project(tmp_path) -> Path:
    work = tmp_path / "project"
    (work / "data").mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "data/demo_preferences.jsonl"):
        shutil.copy(ROOT / name, work / name)
    _run(work, "git", "init", "-q")
    _run(work, "git", "config", "user.email", "t@localhost")
    _run(work, "git", "config", "user.name", "t")
    _dvc(work, "init", "-q")
    return work


def _set(work: Path, dotted: str, value) -> None:
    params = yaml.safe_load((work / "params.yaml").read_text())
    node = params
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_data_stages_rerun_only_after_what_changed(project):
    assert _ran(_dvc(project, "repro", "split")) == ["ingest", "split"]
    train = project / "build" / "split" / "train.parquet"
    assert train.is_file() and (project / "build" / "ingest" / "report.json").is_file()
    assert _ran(_dvc(project, "repro", "split")) == []
    _set(project, "split.eval_fraction", 0.5)
    assert _ran(_dvc(project, "repro", "split")) == ["split"]
    metrics = _dvc(project, "metrics", "show")
    assert "build/metrics/ingest.json" in metrics and "eval_rows" in metrics


@pytest.mark.heavy
def test_dvc_repro_builds_a_model_and_a_changed_beta_reruns_only_dpo(project):
    _set(project, "train.sft.max_steps", 2)
    _set(project, "train.dpo.max_steps", 2)
    stages = ["ingest", "split", "base_model", "train_sft", "train_dpo", "evaluate"]
    assert _ran(_dvc(project, "repro")) == stages
    assert (project / "build" / "jobs" / "dpo" / "model" / "config.json").is_file()
    assert _ran(_dvc(project, "repro")) == []
    assert "reward_accuracy" in _dvc(project, "metrics", "show")
    _run(project, "git", "add", "-A")
    _run(project, "git", "commit", "-q", "-m", "baseline")
    assert _ran(_dvc(project, "exp", "run", "-S", "train.dpo.beta=0.2")) == [
        "train_dpo",
        "evaluate",
    ]
    shown = _dvc(project, "exp", "show", "--csv")
    assert "0.2" in shown and "reward_accuracy" in shown
