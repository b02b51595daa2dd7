"""A pipeline run's folder: its config, data splits, training jobs and evaluation, by name."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from alignment.config import PipelineConfig
from alignment.workspace import Workspace, atomic_write_text


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def create(cls, ws: Workspace, cfg: PipelineConfig) -> RunDir:
        name = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        run = cls(ws.runs / name)
        run.root.mkdir(parents=True)
        atomic_write_text(run.config, cfg.to_yaml())
        return run

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def train_data(self) -> Path:
        return self.root / "data" / "train.parquet"

    @property
    def eval_data(self) -> Path:
        return self.root / "data" / "eval.parquet"

    def job(self, method: str) -> Path:
        return self.root / method

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation" / "metrics.json"
