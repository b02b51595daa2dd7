"""The job side's choice of checkpoint to resume from."""

from __future__ import annotations

import json
from pathlib import Path

from alignment.config import PipelineConfig
from alignment.train.entry import Job


def _job(tmp_path: Path, resume: bool = True) -> Job:
    return Job(
        method="sft",
        cfg=PipelineConfig(),
        model_path=tmp_path / "model",
        train_path=tmp_path / "train.parquet",
        eval_path=None,
        output_dir=tmp_path / "out",
        resume=resume,
        device="cpu",
    )


def _checkpoint(job: Job, step: int, state: str | None) -> Path:
    path = job.checkpoints_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_resume_skips_a_checkpoint_cut_off_while_saving(tmp_path, capsys):
    job = _job(tmp_path)
    assert job.last_checkpoint() is None  # nothing saved yet
    _checkpoint(job, 2, json.dumps({"global_step": 2}))
    _checkpoint(job, 10, json.dumps({"global_step": 10}))
    assert job.last_checkpoint() == str(job.checkpoints_dir / "checkpoint-10")  # numeric order
    _checkpoint(job, 12, None)  # killed before its state file
    _checkpoint(job, 14, '{"global_st')  # killed while writing it
    assert job.last_checkpoint() == str(job.checkpoints_dir / "checkpoint-10")
    out = capsys.readouterr().out
    assert "skipping checkpoint-14" in out and "skipping checkpoint-12" in out
    (job.checkpoints_dir / "checkpoint-10" / "trainer_state.json").unlink()
    assert job.last_checkpoint() == str(job.checkpoints_dir / "checkpoint-2")
    assert _job(tmp_path, resume=False).last_checkpoint() is None
