"""DVC imported for the first time inside a capsys test must not break DVC's logging in later
tests of the same process (which test is first depends on the run order, e.g. under xdist)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

INNER = """
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


def _inner_pytest(folder: Path, *plugin: str) -> subprocess.CompletedProcess:
    (folder / "test_inner.py").write_text(INNER)
    (folder / "pytest.ini").write_text("[pytest]\n")  # not the repository's settings
    env = {**os.environ, "PYTHONPATH": str(HERE), "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, "test_inner.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dvc_logging_after_a_capsys_test_that_imported_dvc(tmp_path):
    without = tmp_path / "without"
    without.mkdir()
    plain = _inner_pytest(without)
    # the failure this plugin exists for: the handler kept the first test's closed stream
    assert plain.returncode == 1, plain.stdout[-3000:]
    assert "I/O operation on closed file" in plain.stdout, plain.stdout[-3000:]
    assert "1 failed, 1 passed" in plain.stdout, plain.stdout[-3000:]

    fixed = tmp_path / "with"
    fixed.mkdir()
    proc = _inner_pytest(fixed, "-p", "dvc_streams")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout, proc.stdout[-3000:]
