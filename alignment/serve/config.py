"""The ``serve`` section of the pipeline config."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServeConfig(BaseModel):
    """The policy endpoint: where it listens, what its traces keep, shadow and A/B settings."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Address to listen on (loopback by default).")
    port: int = Field(8080, ge=0, le=65535, description="Port; 0 picks a free one.")
    experiment: str = Field("serving", description="MLflow experiment that holds the traces.")
    content: Literal["full", "hash", "off"] = Field(
        "full",
        description="What a trace keeps of prompts and responses without consent: the text, its "
        "sha256 (repeats can be counted, not read; short texts can be guessed), or nothing. "
        "A request with consent keeps its text, which training data needs.",
    )
    shadow_share: float = Field(
        0.1, ge=0, le=1, description="Share of requests the shadow model also answers."
    )
    shadow_queue: int = Field(
        256, ge=1, description="Shadow requests waiting at most; beyond it one is skipped, counted."
    )
    max_new_tokens: int = Field(64, ge=1, description="Default and upper bound per request.")
    ab_temperature: float = Field(
        0.8, gt=0, description="Sampling temperature of the two answers of an A/B request."
    )
    landing: Path | None = Field(
        None, description="Where feedback pairs are written; default retrain.landing."
    )
