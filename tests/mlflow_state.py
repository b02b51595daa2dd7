"""A pytest plugin: MLflow's active experiment does not outlive the test module that set it.

`mlflow.set_experiment` (called by tests and by `alignment serve` in-process) keeps the
experiment in the process and writes MLFLOW_EXPERIMENT_ID into os.environ, which every later
child process inherits. A later module with a store of its own then starts runs in an
experiment id that its store lacks ("No Experiment with id=2 exists"), in-process or in the
CLI processes it starts. Whether that happens depends on which modules share a process (another
grouping under pytest-xdist). Here both are put back as they were when each module ends.
"""

from __future__ import annotations

import os
import sys

import pytest

EXPERIMENT_ENV = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


def _active_experiment():
    fluent = sys.modules.get("mlflow.tracking.fluent")
    return getattr(fluent, "_active_experiment_id", None) if fluent else None


@pytest.fixture(scope="module", autouse=True)
def mlflow_experiment_per_module():
    env = {key: os.environ.get(key) for key in EXPERIMENT_ENV}
    active = _active_experiment()
    yield
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None:
        fluent._active_experiment_id = active
