"""A reward-model ensemble: k reward jobs that differ by seed and, by default, by a bootstrap
resample of the training pairs (Coste et al. 2023). Member 0 is the job's own folder, so the
ensemble's first model stands wherever one reward model is expected; ``ensemble.json`` beside it
names every member, and an RL job given member 0 finds the rest there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from alignment.config import PipelineConfig
from alignment.errors import ConfigError

MANIFEST = "ensemble.json"


def ensemble_members(reward_model: Path) -> list[Path]:
    """Every member's model folder when reward_model is member 0 of an ensemble, else itself."""
    reward_model = Path(reward_model).resolve()
    manifest = reward_model.parent / MANIFEST
    if not manifest.is_file():
        return [reward_model]
    members = [Path(p) for p in json.loads(manifest.read_text(encoding="utf-8"))["members"]]
    if members[0].resolve() != reward_model:
        raise ConfigError(f"{manifest}: its first member is {members[0]}, not {reward_model}")
    missing = [str(p) for p in members if not (p / "config.json").is_file()]
    if missing:
        raise ConfigError(f"{manifest}: member models missing: {', '.join(missing)}")
    return members


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def bootstrap_resample(train_path: Path, out: Path, seed: int) -> Path:
    """The training pairs drawn with replacement (as many as there are), written to out."""
    import numpy as np
    import pandas as pd

    from alignment.workspace import atomic_write_bytes

    files = sorted(train_path.glob("*.parquet")) if train_path.is_dir() else [train_path]
    pairs = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if pairs.empty:
        raise ConfigError(f"{train_path}: no preference pairs to resample for the ensemble")
    rows = np.random.default_rng(seed).integers(0, len(pairs), size=len(pairs))
    return atomic_write_bytes(out, pairs.iloc[rows].to_parquet(index=False))


def train_reward_ensemble(
    cfg: PipelineConfig,
    model_path: Path,
    train_path: Path,
    output_dir: Path,
    eval_path: Path | None,
    resume: bool,
    on_progress: Callable[[dict], None] | None,
):
    """Train cfg.train.reward.ensemble_size reward models; the result is member 0's, with every
    member's eval metrics under ``member{i}/`` and the manifest written last."""
    from alignment.train.launch import TrainResult, launch_single
    from alignment.workspace import atomic_write_text

    reward = cfg.train.reward
    output_dir = Path(output_dir)
    results = []
    for i in range(reward.ensemble_size):
        folder = output_dir if i == 0 else output_dir / "ensemble" / f"member-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        seed = reward.seed + i
        member_cfg = cfg.model_copy(deep=True)
        member_cfg.train.reward.seed = seed
        data = train_path
        if reward.ensemble_resample == "bootstrap":
            data = bootstrap_resample(train_path, folder / "bootstrap.parquet", seed)
        if resume and (folder / "metrics.json").is_file():  # finished: not trained again
            results.append(
                TrainResult("reward", folder / "model", read_json(folder / "metrics.json"))
            )
            continue
        results.append(
            launch_single(
                "reward", member_cfg, model_path, data, folder, eval_path, resume, on_progress
            )
        )
    first = results[0]
    per_member = {
        f"member{i}/{key}": value
        for i, result in enumerate(results)
        for key, value in result.metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    first.metrics |= {**per_member, "ensemble_size": len(results)}
    manifest = {"members": [str(r.output_dir.resolve()) for r in results]}
    atomic_write_text(output_dir / MANIFEST, json.dumps(manifest, indent=2))
    return first
