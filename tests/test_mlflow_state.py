"""A module that sets MLflow's active experiment must not hand it to the next module's runs
(in-process or in the CLI processes it starts): which modules share a process depends on the
run order, e.g. under pytest-xdist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

FIRST = """
import mlflow


def test_a_module_sets_an_experiment():
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    mlflow.create_experiment("other")
    mlflow.set_experiment("mine")  # id 2 in this store
"""

SECOND = """
import os
import subprocess
import sys

import mlflow


def test_the_next_module_starts_runs_where_it_says():
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    with mlflow.start_run() as run:  # it set no experiment: the store's default one
        assert run.info.experiment_id == "0"
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('MLFLOW_EXPERIMENT_ID'))"],
        capture_output=True, text=True, env=dict(os.environ),
    )
    assert child.stdout.strip() == "None"
"""


def _inner_pytest(folder: Path, *plugin: str) -> subprocess.CompletedProcess:
    (folder / "test_a_first.py").write_text(FIRST)
    (folder / "test_b_second.py").write_text(SECOND)
    (folder / "pytest.ini").write_text("[pytest]\n")  # not the repository's settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONPATH=str(HERE), MLFLOW_DISABLE_TELEMETRY="true")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, "."],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_active_experiment_ends_with_the_module_that_set_it(tmp_path):
    # without the plugin the second module's run lands in the first's experiment:
    # "assert '2' == '0'", and the child process inherits MLFLOW_EXPERIMENT_ID=2
    proc = _inner_pytest(tmp_path, "-p", "mlflow_state")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout, proc.stdout[-3000:]
