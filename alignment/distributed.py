"""How a training job spreads over processes and nodes: the ``train.distributed`` section.

Several nodes run the same command, each with its own ``node_rank``; node 0 hosts the
rendezvous (a TCP store at ``rendezvous``) and writes the final model. Every node needs the
repository and the workspace at the same paths (a shared filesystem): checkpoints hold one
optimizer shard per process, written by that process.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DistributedConfig(BaseModel):
    """How a training job runs: nodes, processes per node, rendezvous, timeouts, ZeRO stage."""

    model_config = ConfigDict(extra="forbid")

    num_processes: int = Field(2, ge=1, description="Processes per node (GPUs per node on GPU).")
    num_nodes: int = Field(1, ge=1, description="Nodes; more than one needs `rendezvous`.")
    node_rank: int = Field(
        0, ge=0, description="This node's index, 0..num_nodes-1 (CLI: --node-rank)."
    )
    rendezvous: str | None = Field(
        None,
        description="host:port of node 0's rendezvous store, reachable from every node "
        "(several nodes only; one node uses loopback and master_port).",
    )
    rendezvous_timeout_seconds: int = Field(
        600, ge=1, description="How long nodes wait for each other to join before failing."
    )
    collective_timeout_seconds: int = Field(
        1800,
        ge=1,
        description="A process waiting this long for a peer (a dead, frozen or unreachable "
        "node) fails the job instead of hanging. Must exceed the longest stretch one rank works "
        "alone (rank 0 preprocessing data, saving a checkpoint).",
    )
    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage.")
    offload: bool = Field(False, description="Offload optimizer state to CPU memory (ZeRO 2/3).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="cuda when available.")
    master_port: int | None = Field(
        None, description="One node: rendezvous port on loopback; a free one by default."
    )

    @model_validator(mode="after")
    def _nodes_need_a_rendezvous(self) -> DistributedConfig:
        if self.node_rank >= self.num_nodes:
            raise ValueError(
                f"node_rank={self.node_rank} is not below num_nodes={self.num_nodes} "
                "(nodes are numbered from 0)"
            )
        if self.num_nodes > 1:
            if self.rendezvous is None:
                raise ValueError(
                    f"num_nodes={self.num_nodes} needs rendezvous: host:port of node 0, "
                    "the same on every node"
                )
            self.rendezvous_address()
        return self

    @property
    def world_size(self) -> int:
        return self.num_nodes * self.num_processes

    def rendezvous_address(self) -> tuple[str, int]:
        """(host, port) of the rendezvous; ValueError when it is not host:port."""
        host, sep, port = (self.rendezvous or "").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"rendezvous={self.rendezvous!r} is not host:port (e.g. node-0:29500)")
        return host.strip("[]"), int(port)
