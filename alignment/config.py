"""Typed configuration: one pydantic model per concern, loaded from YAML, overridable.

Overrides use dotted paths, e.g. ``train.dpo.beta=0.2`` or ``model.source=smollm2``;
values are parsed as YAML, so ``train.methods=[sft]`` gives a list.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alignment.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkspaceConfig(_Strict):
    """Where run-time state lives. Each remote can point at a real server instead."""

    root: Path = Field(Path(".alignment"), description="Folder for all run-time state.")
    mlflow_tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; default a SQLite store in the workspace. "
        "MLFLOW_TRACKING_URI in the environment wins over both.",
    )
    dvc_remote: str | None = Field(
        None, description="DVC remote URL (folder or s3://...); default a folder in the workspace."
    )


class ModelConfig(_Strict):
    """The base model: a tiny random model, SmolLM2-135M-Instruct, or a local HF folder."""

    source: Literal["tiny", "smollm2", "local"] = Field("tiny", description="Which base model.")
    path: Path | None = Field(None, description="Local Hugging Face folder (source=local).")
    tiny_hidden_size: int = Field(64, description="Width of the tiny Llama.")
    tiny_layers: int = Field(2, description="Layers of the tiny Llama.")
    tiny_heads: int = Field(4, description="Attention heads of the tiny Llama.")
    tiny_vocab_size: int = Field(
        512, description="Vocabulary of the tokenizer trained on the spot."
    )
    seed: int = Field(0, description="Seed for the tiny model's initialisation.")


class IngestConfig(_Strict):
    """Which raw file to read and how."""

    input: Path | None = Field(None, description="Raw preference file (JSONL, JSON, Parquet, CSV).")
    format: Literal["auto", "trl_standard", "trl_conversational", "hh", "sharegpt", "ranked"] = (
        Field("auto", description="Input format; 'auto' detects it.")
    )
    dataset: str = Field("preferences", description="Dataset name inside the data repository.")


class ValidationConfig(_Strict):
    """Thresholds of the Great Expectations suite."""

    max_rejected_fraction: float = Field(
        0.2, ge=0, le=1, description="Fail the ingest when more rows than this are quarantined."
    )
    max_chars: int = Field(20_000, gt=0, description="Longest allowed text of any turn.")
    min_rows: int = Field(1, ge=0, description="Fail when fewer rows are accepted.")


class SplitConfig(_Strict):
    """Deterministic train/eval split by prompt hash."""

    eval_fraction: float = Field(0.1, gt=0, lt=1, description="Share of prompts held out.")


class DistributedConfig(_Strict):
    """How a training job runs: processes, nodes, ZeRO stage, device."""

    num_processes: int = Field(2, ge=1, description="Processes per node (GPUs per node on GPU).")
    num_nodes: int = Field(1, ge=1, description="Nodes; more than one needs a hostfile.")
    hostfile: Path | None = Field(None, description="DeepSpeed hostfile for several nodes.")
    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage.")
    offload: bool = Field(False, description="Offload optimizer state to CPU memory (ZeRO 2/3).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="cuda when available.")
    master_port: int | None = Field(None, description="Rendezvous port; a free one by default.")


class _MethodConfig(_Strict):
    learning_rate: float = Field(5e-4, gt=0, description="Peak learning rate.")
    num_train_epochs: float = Field(1.0, gt=0, description="Epochs over the training split.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: epochs).")
    per_device_train_batch_size: int = Field(4, ge=1, description="Batch size per process.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per step.")
    max_length: int = Field(256, ge=8, description="Longest sequence in tokens.")
    seed: int = Field(0, description="Seed for data order and initialisation.")
    logging_steps: int = Field(1, ge=1, description="Log metrics every this many steps.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every this many steps.")


class SFTConfig(_MethodConfig):
    """Supervised fine-tuning on the chosen responses (loss on assistant turns only)."""

    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    num_train_epochs: float = Field(2.0, gt=0, description="Epochs over the training split.")


class DPOConfig(_MethodConfig):
    """Direct preference optimisation from the SFT policy."""

    beta: float = Field(0.1, gt=0, description="Strength of the KL constraint to the reference.")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = Field(
        "sigmoid", description="DPO loss variant."
    )
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Conservative/robust DPO.")
    precompute_ref_log_probs: bool = Field(
        False, description="Score the reference once before training (faster steps on big models)."
    )


class TrainConfig(_Strict):
    """Which methods run, in order, and how."""

    methods: list[Literal["sft", "dpo"]] = Field(["sft", "dpo"], description="Stages in order.")
    sft: SFTConfig = SFTConfig()
    dpo: DPOConfig = DPOConfig()
    distributed: DistributedConfig = DistributedConfig()


class EvaluationConfig(_Strict):
    """Held-out evaluation of the trained policy."""

    batch_size: int = Field(8, ge=1, description="Pairs per forward pass.")
    max_length: int = Field(256, ge=8, description="Truncate sequences to this many tokens.")


class RegistryConfig(_Strict):
    """MLflow model registry."""

    model_name: str = Field("aligned-policy", description="Registered model (one per use case).")
    experiment: str = Field("alignment", description="MLflow experiment.")


class PipelineConfig(_Strict):
    """Everything one run of the pipeline needs."""

    workspace: WorkspaceConfig = WorkspaceConfig()
    model: ModelConfig = ModelConfig()
    ingest: IngestConfig = IngestConfig()
    validation: ValidationConfig = ValidationConfig()
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    registry: RegistryConfig = RegistryConfig()

    def digest(self) -> str:
        """A stable hash of the full config (for lineage tags)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _apply_override(tree: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like 'section.field=value'")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r} has an empty key")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


PATH_FIELDS = (("workspace", "root"), ("ingest", "input"), ("model", "path"))


def _resolve_relative_paths(tree: dict[str, Any], base: Path) -> None:
    """Relative paths in a config file are relative to the file, not to the cwd."""
    for section, key in PATH_FIELDS:
        node = tree.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str):
            value = Path(node[key]).expanduser()
            if not value.is_absolute():
                node[key] = str((base / value).resolve())


def load_config(
    path: Path | str | None = None, overrides: list[str] | None = None
) -> PipelineConfig:
    """Load a YAML config (or the defaults) and apply dotted overrides."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        tree = loaded or {}
        _resolve_relative_paths(tree, path.resolve().parent)
    for override in overrides or []:
        _apply_override(tree, override)
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        lines = [f"{source}: invalid config"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
