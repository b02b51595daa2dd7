"""The ``watch`` section of the pipeline config, and the monitoring policy (a YAML file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alignment.gate import Condition, GatePolicy, load_yaml_model

DEFAULT_MONITORING = Path(__file__).resolve().parents[2] / "configs" / "monitoring" / "default.yaml"


class WatchConfig(BaseModel):
    """The scheduled watch over the served model's traces."""

    model_config = ConfigDict(extra="forbid")

    policy: Path | None = Field(
        None, description="Monitoring policy YAML; default configs/monitoring/default.yaml."
    )
    experiment: str = Field(
        "watch", description="MLflow experiment of the watch runs (one run per watched model)."
    )
    window_minutes: float = Field(
        60.0,
        gt=0,
        description="Length of a watched window of traces, ending when the run starts; set it "
        "to the schedule's interval so that windows neither overlap nor leave gaps.",
    )
    max_traces: int = Field(2000, ge=1, description="Most request traces read from one window.")
    judge_model: Path | None = Field(
        None,
        description="Constitution judge (causal LM) of refusals and of the online win rate; "
        "default evaluation.judge_model. Without one, refusals are read from refusal markers.",
    )
    reward_model: Path | None = Field(
        None, description="Reward model whose mean score of the served answers is reported."
    )
    red_team_prompts: list[Path] = Field(
        default_factory=list,
        description="Known red-team prompt files (JSONL with 'prompt' and 'kind'); default the "
        "evaluation prompts and the CAI prompts. A served prompt 'looks like' a red-team prompt "
        "when its word overlap with one of theirs reaches red_team_similarity.",
    )
    red_team_similarity: float = Field(
        0.5, gt=0, le=1, description="Jaccard overlap of word sets that counts as alike."
    )
    red_team_dir: Path | None = Field(
        None,
        description="Where prompts that drew harmful compliance are written as the next CAI "
        "round's and evaluation's prompt sets; default <workspace>/red_team.",
    )
    cron: str | None = Field(None, description="Schedule of the served watch, e.g. '*/30 * * * *'.")
    approval_timeout_s: int = Field(
        86_400, ge=1, description="How long an alert's rollback waits for a person's answer."
    )
    seed: int = Field(0, description="Seed of the judge's principle choice and the bootstrap.")
    bootstrap_samples: int = Field(1000, ge=10, description="Resamples of the win-rate interval.")


class MonitoringPolicy(BaseModel):
    """Thresholds on a window's measures: absolute, or relative to the champion's evaluation."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("monitoring", description="Policy name, shown in reports.")
    description: str = Field("", description="What this policy is for.")
    min_requests: int = Field(
        20, ge=1, description="A window with fewer requests is reported but never alerts."
    )
    min_shadow_pairs: int = Field(
        20, ge=1, description="Shadow pairs needed before an online win rate is recorded."
    )
    rollback: Literal["never", "ask"] = Field(
        "never",
        description="On an alert: 'ask' pauses for a person to approve moving champion back to "
        "previous (the Prefect pause form); 'never' only notifies.",
    )
    conditions: list[Condition] = Field(min_length=1, description="All must hold, or it alerts.")

    def as_gate(self) -> GatePolicy:
        """The same conditions as a gate policy, to be checked by ``evaluate_gate``."""
        return GatePolicy(name=self.name, conditions=self.conditions)


def load_monitoring_policy(path: Path | str | None = None) -> tuple[MonitoringPolicy, Path]:
    """Read and validate a monitoring policy (default ``configs/monitoring/default.yaml``)."""
    path = Path(path) if path is not None else DEFAULT_MONITORING
    return load_yaml_model(path, MonitoringPolicy, "monitoring policy"), path
