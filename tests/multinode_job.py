"""The two-node job config that tests/train/test_multinode.py and benchmarks/multinode.py run."""

from __future__ import annotations

from pathlib import Path

import yaml


def job_config(
    folder: Path,
    nodes: int,
    zero_stage: int = 2,
    steps: int = 3,
    save_steps: int = 50,
    **distributed,
) -> Path:
    """config.yaml in folder for the same job either way: world size 2, as 1 node x 2 processes
    or 2 nodes x 1 process (a fresh rendezvous port on 127.0.0.1 unless given); SFT and DPO
    run `steps` steps on the CPU."""
    from alignment.train.launch import free_port

    folder.mkdir(parents=True, exist_ok=True)
    dist = {
        "num_nodes": nodes,
        "num_processes": 2 // nodes,
        "zero_stage": zero_stage,
        "device": "cpu",
        **distributed,
    }
    if nodes > 1:
        dist.setdefault("rendezvous", f"127.0.0.1:{free_port()}")
    every = {"max_steps": steps, "save_steps": save_steps}
    cfg = {
        "workspace": {"root": str(folder / "ws")},
        "train": {
            "sft": {"learning_rate": 3e-3, **every},
            "dpo": {"learning_rate": 1e-3, **every},
            "distributed": dist,
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
