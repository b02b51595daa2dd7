"""The test suite's own plugins (tests/log_streams.py, tests/module_state.py), each checked on a
pytest run of its own whose outcome depended on which test ran first in the process (the order
changes, e.g. under pytest-xdist)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

DVC_TESTS = """
import logging


def test_first_import_of_dvc_under_capsys(capsys):
    import dvc.logger  # noqa: F401  (sets up DVC's handlers on this test's capture stream)

    logging.getLogger("dvc").warning("first test")
    assert "first test" in capsys.readouterr().err


def test_dvc_logs_in_a_later_test(capsys):
    logging.getLogger("dvc").warning("later test")
    logging.getLogger("dvc").info("later info")
    out, err = capsys.readouterr()
    assert "later test" in err and "later info" in out
"""

PREFECT_TESTS = """
import logging


def test_first_setup_of_prefect_logging_under_capsys(capsys):
    from prefect.logging.configuration import setup_logging

    setup_logging()  # its console handler (on the root logger) takes this test's capture stream
    logging.getLogger("prefect.test").warning("first test")
    assert "first test" in capsys.readouterr().err


def test_prefect_logs_in_a_later_test(capsys):
    logging.getLogger("prefect.test").warning("later test")
    err = capsys.readouterr().err
    assert "later test" in err and "Logging error" not in err, err
"""

MLFLOW_FIRST = """
import mlflow


def test_a_module_sets_an_experiment_a_registry_and_an_environment_variable():
    import os

    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    mlflow.create_experiment("other")
    mlflow.set_experiment("mine")  # id 2 in this store
    mlflow.set_registry_uri("sqlite:///elsewhere.db")
    os.environ["PREFECT_HOME"] = "first-module-prefect"  # as the CLI's quiet environment does
"""

MLFLOW_SECOND = """
import os
import subprocess
import sys

import mlflow


def test_the_next_module_starts_runs_where_it_says():
    assert mlflow.get_tracking_uri() != "sqlite:///mlflow.db"  # the first module's is gone
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    assert mlflow.get_registry_uri() == "sqlite:///mlflow.db"  # follows its own tracking store
    with mlflow.start_run() as run:  # it set no experiment: the store's default one
        assert run.info.experiment_id == "0"
    keys = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_REGISTRY_URI", "PREFECT_HOME")
    child = subprocess.run(
        [sys.executable, "-c", f"import os; print([os.environ.get(k) for k in {keys!r}])"],
        capture_output=True, text=True, env=dict(os.environ),
    )
    assert child.stdout.strip() == "[None, None, None]", child.stdout
"""


def _inner_pytest(folder: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """pytest on `files` in `folder`, with this folder's plugins importable, not its settings."""
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_HOME"))}
    env.update(PYTHONPATH=str(HERE), DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, *files],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dvc_logging_after_a_capsys_test_that_imported_dvc(tmp_path):
    files = {"test_inner.py": DVC_TESTS}
    plain = _inner_pytest(tmp_path / "without", files)
    # the failure the plugin exists for: the handler kept the first test's closed stream
    assert plain.returncode == 1, plain.stdout[-3000:]
    assert "I/O operation on closed file" in plain.stdout, plain.stdout[-3000:]
    assert "1 failed, 1 passed" in plain.stdout, plain.stdout[-3000:]

    proc = _inner_pytest(tmp_path / "with", files, "-p", "log_streams")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout, proc.stdout[-3000:]


def test_prefect_logging_after_a_capsys_test_that_set_it_up(tmp_path):
    files = {"test_inner.py": PREFECT_TESTS}
    plain = _inner_pytest(tmp_path / "without", files)
    # the failure the plugin exists for: the console handler kept the first test's closed stream
    assert plain.returncode == 1, plain.stdout[-3000:]
    assert "I/O operation on closed file" in plain.stdout, plain.stdout[-3000:]
    assert "1 failed, 1 passed" in plain.stdout, plain.stdout[-3000:]

    proc = _inner_pytest(tmp_path / "with", files, "-p", "log_streams")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout, proc.stdout[-3000:]


def test_the_environment_and_mlflow_choices_end_with_the_module_that_set_them(tmp_path):
    files = {"test_a_first.py": MLFLOW_FIRST, "test_b_second.py": MLFLOW_SECOND}
    plain = _inner_pytest(tmp_path / "without", files)
    # the failure the plugin exists for: the second module reads the first one's store
    assert plain.returncode == 1, plain.stdout[-3000:]
    assert "1 failed, 1 passed" in plain.stdout, plain.stdout[-3000:]

    proc = _inner_pytest(tmp_path / "with", files, "-p", "module_state")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout, proc.stdout[-3000:]

