"""A pytest plugin: what a test module changes in the process's environment and in MLflow's
process-wide state ends with that module.

Library calls made in-process leave state behind: `mlflow.set_experiment`,
`mlflow.set_tracking_uri` and `mlflow.set_registry_uri` keep their choice in module globals and
write it into os.environ (MLFLOW_EXPERIMENT_ID, MLFLOW_TRACKING_URI, MLFLOW_REGISTRY_URI), and the
CLI's quiet environment sets PREFECT_HOME and friends. Every later child process inherits the
environment: a later module with a store of its own then starts runs in an experiment its store
lacks ("No Experiment with id=2 exists"), or its pipeline registers a model in one store while
its check reads another ("Registered Model ... not found"). Whether that happens depends on
which modules share a process: another grouping under pytest-xdist. Here the whole environment,
the active experiment and both URIs are put back as they were when each module ends.
"""

from __future__ import annotations

import os
import sys

import pytest

# (module, global) pairs of MLflow's process-wide choices, read back only if MLflow is imported
MLFLOW_GLOBALS = (
    ("mlflow.tracking.fluent", "_active_experiment_id"),
    ("mlflow.tracking._tracking_service.utils", "_tracking_uri"),
    ("mlflow.tracking._model_registry.utils", "_registry_uri"),
)
_UNSET = object()


def _read_globals() -> dict:
    found = {}
    for module_name, attr in MLFLOW_GLOBALS:
        module = sys.modules.get(module_name)
        found[(module_name, attr)] = getattr(module, attr, _UNSET) if module else _UNSET
    return found


@pytest.fixture(scope="module", autouse=True)
def module_state():
    environment = dict(os.environ)
    mlflow_globals = _read_globals()
    yield
    for key in [key for key in os.environ if key not in environment]:
        del os.environ[key]
    for key, value in environment.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    for (module_name, attr), value in mlflow_globals.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        # a module imported during the test module: its import-time default is "unset"
        setattr(module, attr, None if value is _UNSET else value)
