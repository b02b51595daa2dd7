"""The watch's stages as plain functions: what the flow composes and a test can call alone."""

from __future__ import annotations

import io
import time
from dataclasses import asdict
from pathlib import Path

from alignment import registry
from alignment.watch.config import MonitoringPolicy

WATCH_TAG = "alignment.watch"  # on the watch run: the registered model it watches
WINDOWS_TAG = "watch.windows"  # on the watch run: how many windows it has logged


def window_bounds(minutes: float, end_ms: int | None = None) -> tuple[int, int]:
    """[start, end) in epoch milliseconds; ``end`` defaults to now."""
    end = int(time.time() * 1000) if end_ms is None else int(end_ms)
    return end - int(minutes * 60_000), end


def champion_at_promotion(name: str, production: str | None = None) -> tuple[str, dict[str, float]]:
    """The champion's (candidate) version and its evaluation metrics (its run's ``eval/*``);
    ``production`` is the registry's production model when ops promote by copying."""
    from alignment.champion import ChampionSlot
    from alignment.errors import RegistryError

    version = ChampionSlot.of(name, production).holder()
    if version is None:
        raise RegistryError(f"{name} has no champion to watch; promote a version first")
    return version, registry.version_metrics(registry.model_version(name, version))


def training_prompts(ws, dataset: str, name: str, version: str, limit: int = 20_000) -> list[str]:
    """The last user turn of each prompt of the data the champion was trained on ([] if unknown)."""
    import pyarrow.parquet as pq

    from alignment.data.version import find_version, read_version_file

    data_version = registry.lineage(name, version)["tags"].get("data_version")
    found = find_version(ws, dataset, data_version) if data_version else None
    if found is None:
        return []
    table = pq.read_table(io.BytesIO(read_version_file(ws, found, "accepted.parquet")))
    out = []
    for turns in table.column("prompt").to_pylist()[:limit]:
        users = [t["content"] for t in turns or [] if t.get("role") == "user"]
        if users:
            out.append(users[-1])
    return out


def check(
    policy: MonitoringPolicy, metrics: dict, champion: dict
) -> tuple[list[dict], list[str], str]:
    """Conditions checked, the alerts (failed conditions), and ok | alert | too-few."""
    from alignment.gate import evaluate_gate

    results = [asdict(r) for r in evaluate_gate(policy.as_gate(), metrics, champion)]
    failed = [
        f"{r['condition']} (window {r['candidate']:.4g})"
        for r in results
        if r["status"] == "failed" and r["candidate"] is not None
    ]
    failed += [
        r["condition"] for r in results if r["status"] == "failed" and r["candidate"] is None
    ]
    if metrics.get("requests", 0) < policy.min_requests:
        return results, [], "too-few"
    return results, failed, "alert" if failed else "ok"


class Judges:
    """The constitution judge and the reward model a watch uses, loaded once, closed after."""

    def __init__(
        self,
        judge_model: Path | None,
        constitution: Path | None,
        reward_model: Path | None,
        device: str = "auto",
        seed: int = 0,
    ):
        self.judge = self.reward = None
        if judge_model is not None:
            from alignment.constitution import load_constitution
            from alignment.evaluation.judges import ConstitutionJudge

            self.judge = ConstitutionJudge(
                judge_model, load_constitution(constitution), device, seed=seed
            )
        if reward_model is not None:
            from alignment.evaluation.judges import RewardModelJudge

            self.reward = RewardModelJudge(reward_model, device)

    def refusals(self, prompts: list[str], responses: list[str]) -> tuple[list[float], float]:
        asked = self.judge.refusal_judgement(prompts, responses)
        return asked.p_refusal, asked.first_option_bias

    def compare(self, prompts, a, b, ids) -> list[float]:
        return list(self.judge.compare(prompts, a, b, ids).p_a)

    def close(self) -> None:
        for held in (self.judge, self.reward):
            if held is not None:
                held.close()


def log_window(experiment_id: str, result: dict, report: Path | None) -> tuple[str, int]:
    """Log the window's measures on the watched model's watch run at step = window index.

    One run per watched model, so the MLflow UI plots each measure over the windows; the
    timestamp of each point is the window's end. The report goes in as ``windows/<step>/``.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()
    name = result["model"]
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{WATCH_TAG}` = '{name}'", max_results=1
    )
    if found:
        run_id = found[0].info.run_id
        step = int(found[0].data.tags.get(WINDOWS_TAG, "0"))
    else:
        run = client.create_run(experiment_id, tags={WATCH_TAG: name}, run_name=f"watch-{name}")
        run_id, step = run.info.run_id, 0
    values = {**result["metrics"], **result.get("online", {})}
    values["alerts"] = float(len(result["alerts"]))
    metrics = [Metric(k, float(v), result["end_ms"], step) for k, v in sorted(values.items())]
    client.log_batch(run_id, metrics=metrics)
    client.set_tag(run_id, WINDOWS_TAG, str(step + 1))
    client.set_tag(run_id, "watch.last_status", result["status"])
    if report is not None:
        client.log_artifact(run_id, str(report), artifact_path=f"windows/{step}")
    return run_id, step
