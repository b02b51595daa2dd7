"""A stand-in for the training pipeline, deployed on the test's GPU pool.

It takes the real pipeline's parameters and registers a version trained on ``data_version`` as
the pipeline does (lineage tags, passing evaluation figures), in about a second instead of
minutes, so the work-pool test exercises the real retrain flow around it. It fails on demand:
while ``<workspace>/fail-training`` exists.
"""

from __future__ import annotations

from prefect import flow

FAIL_FILE = "fail-training"
FIGURES = {"reward_accuracy": "0.7", "reward_margin_mean": "0.2", "harmful_compliance_rate": "0"}
FIGURES |= {"refusal_rate": "0"}
FIGURES |= {"unique_response_rate": "1", "distinct_2": "0.6", "response_words_mean": "12"}
FIGURES |= {"sycophancy_shift": "0"}


@flow(name="alignment-pipeline")
def stand_in_pipeline(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    data_version: str | None = None,
) -> str:
    import mlflow

    from alignment import registry
    from alignment.config import load_config
    from alignment.workspace import Workspace

    cfg = load_config(config_path, overrides)
    ws = Workspace.from_config(cfg.workspace).ensure()
    if (ws.root / FAIL_FILE).exists():
        raise RuntimeError("planted training failure: the GPU job ran out of memory")
    experiment = registry.connect(ws, cfg.registry.experiment)
    tags = {"data_version": data_version, **{f"eval.{k}": v for k, v in FIGURES.items()}}
    with mlflow.start_run(experiment_id=experiment):
        registered = registry.register_policy(cfg.model.path, cfg.registry.model_name, tags)
    return registered.version
