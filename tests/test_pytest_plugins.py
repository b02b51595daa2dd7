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


def _fails_without_and_passes_with(tmp_path: Path, files: dict[str, str], plugin: str,
                                   failure: str | None = None) -> None:  # fmt: skip
    """The inner run fails one of its two tests without `plugin` (with `failure` in its output,
    when given) and passes both with it."""
    plain = _inner_pytest(tmp_path / "without", files)
    assert plain.returncode == 1, plain.stdout[-3000:]
    assert "1 failed, 1 passed" in plain.stdout, plain.stdout[-3000:]
    if failure is not None:
        assert failure in plain.stdout, plain.stdout[-3000:]

    proc = _inner_pytest(tmp_path / "with", files, "-p", plugin)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout, proc.stdout[-3000:]


def test_dvc_logging_after_a_capsys_test_that_imported_dvc(tmp_path):
    # the failure the plugin exists for: the handler kept the first test's closed stream
    _fails_without_and_passes_with(
        tmp_path, {"test_inner.py": DVC_TESTS}, "log_streams", "I/O operation on closed file"
    )


def test_prefect_logging_after_a_capsys_test_that_set_it_up(tmp_path):
    # the failure the plugin exists for: the console handler kept the first test's closed stream
    _fails_without_and_passes_with(
        tmp_path, {"test_inner.py": PREFECT_TESTS}, "log_streams", "I/O operation on closed file"
    )


def test_the_environment_and_mlflow_choices_end_with_the_module_that_set_them(tmp_path):
    # the failure the plugin exists for: the second module reads the first one's store
    files = {"test_a_first.py": MLFLOW_FIRST, "test_b_second.py": MLFLOW_SECOND}
    _fails_without_and_passes_with(tmp_path, files, "module_state")


def test_longest_groups_first_keeps_each_groups_own_order():
    from types import SimpleNamespace

    from spread import order_by_seconds

    items = [SimpleNamespace(nodeid=n) for n in
             ("a.py::t1", "a.py::t2", "b.py::t1", "c.py::t1", "c.py::t2", "d.py::t1",
              "tests/integration/test_x.py::t1", "tests/integration/test_y.py::t1")]  # fmt: skip
    seconds = {"c.py": 90.0, "b.py": 5.0, "tests/integration/test_x.py": 50.0,
               "tests/integration/test_y.py": 50.0}  # fmt: skip
    ordered = order_by_seconds(items, seconds)
    # the real-server tests are one group of 100 s: ahead of c.py's 90 s, though each is less
    assert [i.nodeid for i in ordered] == [
        "tests/integration/test_x.py::t1", "tests/integration/test_y.py::t1",
        "c.py::t1", "c.py::t2", "b.py::t1", "a.py::t1", "a.py::t2", "d.py::t1",
    ]  # fmt: skip


def test_seconds_per_file_from_durations_and_every_listed_file_exists():
    from spread import ROOT, load_seconds, seconds_from_durations

    lines = [
        "=== slowest durations ===",
        "12.50s call     tests/x/test_a.py::test_one",
        "3.00s setup    tests/x/test_a.py::test_two[p-1]",
        "0.40s teardown tests/x/test_b.py::test_three",
        "562 passed in 1.0s",
    ]
    assert seconds_from_durations(lines) == {"tests/x/test_a.py": 15.5}
    listed = load_seconds()
    assert listed, "tests/file_seconds.json is missing or empty"
    gone = [name for name in listed if not (ROOT / name).is_file()]
    assert not gone, f"tests/file_seconds.json lists files that are gone: {gone}"


class _Node:
    """What xdist's scheduler needs of a worker: an id, and somewhere to send test indices."""

    def __init__(self, name: str) -> None:
        from types import SimpleNamespace

        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices) -> None:
        self.sent.extend(indices)

    def send_runtest_all(self) -> None:  # pragma: no cover - not used by file scheduling
        raise AssertionError("the scheduler sent every test to one worker")

    def shutdown(self) -> None:
        pass


def test_the_real_server_tests_go_to_one_worker_and_other_files_spread():
    from types import SimpleNamespace

    from spread import pytest_xdist_make_scheduler

    options = {"dist": "loadfile", "tx": ["2*popen"], "loadscopereorder": False}
    config = SimpleNamespace(getvalue=options.get, option=SimpleNamespace(**options))
    scheduler = pytest_xdist_make_scheduler(config, None)
    collection = [
        "tests/integration/test_a.py::t1", "tests/integration/test_b.py::t1",
        "tests/integration/test_c.py::t1", "tests/x.py::t1", "tests/x.py::t2", "tests/y.py::t1",
    ]  # fmt: skip
    nodes = [_Node("gw0"), _Node("gw1")]
    for node in nodes:
        scheduler.add_node(node)
        scheduler.add_node_collection(node, collection)
    scheduler.schedule()
    # plain loadfile makes the three integration files three units, split over both workers
    holders = [node.gateway.id for node in nodes if {0, 1, 2} & set(node.sent)]
    assert len(holders) == 1 and {0, 1, 2} <= set(nodes[0].sent), [n.sent for n in nodes]
    assert {3, 4} <= set(nodes[1].sent)  # the next unit, tests/x.py, whole on the other worker
    assert pytest_xdist_make_scheduler(SimpleNamespace(getvalue={"dist": "load"}.get), None) is None
