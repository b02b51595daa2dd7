"""The constitution: principles the model critiques, revises and judges itself by.

A constitution is a YAML file (see ``configs/constitutions/default.yaml``)::

    name: my-constitution
    version: "1"
    principles:
      - name: honesty
        critique_request: "Identify anything in the response that is false or overstated."
        revision_request: "Rewrite the response so that every claim is true and hedged ..."
        comparison_question: "Which response is more honest?"
    examples:            # few-shot critique/revision demonstrations
      - prompt: ...
        response: ...
        principle: honesty
        critique: ...
        revision: ...

It is validated on load (errors name the file, the principle and the field), and identified by
its hash: a sha256 of its content (not of its formatting or comments). Every artifact made with
a constitution records that hash; ``store_constitution`` keeps a copy per hash in the workspace
so any recorded hash can be read back.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alignment.errors import ConfigError

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# The project's own constitution, shipped beside the example configs.
DEFAULT_CONSTITUTION = (
    Path(__file__).resolve().parent.parent / "configs" / "constitutions" / "default.yaml"
)


class ConstitutionError(ConfigError):
    """A constitution file is unreadable or invalid; the message names file, principle and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


class Principle(_Strict):
    """One principle: how to critique, how to revise, and how to compare two responses by it."""

    name: str = Field(pattern=NAME_PATTERN, description="Short id, recorded with every use.")
    critique_request: str = Field(description="Asks the model to critique its last response.")
    revision_request: str = Field(description="Asks the model to rewrite the response.")
    comparison_question: str = Field(
        description="Multiple-choice question for pairwise judgement, e.g. 'Which response is "
        "more honest?'; options (A) and (B) are appended."
    )
    weight: float = Field(1.0, gt=0, description="Relative chance of being sampled.")

    _check = field_validator("critique_request", "revision_request", "comparison_question")(
        _not_blank
    )


class Example(_Strict):
    """A few-shot demonstration of one critique/revision round."""

    prompt: str
    response: str
    principle: str = Field(description="Name of the principle demonstrated.")
    critique: str
    revision: str

    _check = field_validator("prompt", "response", "critique", "revision")(_not_blank)


class Constitution(_Strict):
    """A named, versioned set of principles plus few-shot examples."""

    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field(
        description="Version label chosen by the author; the hash is the identity."
    )
    description: str = ""
    principles: list[Principle] = Field(min_length=1)
    examples: list[Example] = []

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # `version: 1` in YAML is an int; accept it as the label it is meant to be
        return str(value) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _names(self) -> Constitution:
        seen: set[str] = set()
        for p in self.principles:
            if p.name in seen:
                raise ValueError(f"principle name {p.name!r} is used twice")
            seen.add(p.name)
        for i, ex in enumerate(self.examples):
            if ex.principle not in seen:
                raise ValueError(
                    f"examples[{i}]: principle {ex.principle!r} is not one of {sorted(seen)}"
                )
        return self

    @property
    def hash(self) -> str:
        """Content hash (16 hex chars): same principles and examples, same hash."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def principle(self, name: str) -> Principle:
        for p in self.principles:
            if p.name == name:
                return p
        raise KeyError(f"constitution {self.name!r} has no principle {name!r}")

    def sample(self, rng: random.Random) -> Principle:
        """One principle, drawn by weight with the given RNG."""
        return rng.choices(self.principles, weights=[p.weight for p in self.principles])[0]

    def examples_for(self, count: int) -> list[Example]:
        """The first `count` few-shot examples."""
        return list(self.examples[: max(0, count)])

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _where(tree: Any, loc: tuple) -> str:
    """A readable location: 'principle 'honesty' (principles[2])' rather than a bare index path."""
    parts: list[str] = []
    node = tree
    for i, key in enumerate(loc):
        child = None
        if isinstance(node, dict):
            child = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            child = node[key]
        if (
            i > 0
            and isinstance(key, int)
            and loc[i - 1] in ("principles", "examples")
            and isinstance(child, dict)
        ):
            kind = "principle" if loc[i - 1] == "principles" else "example"
            label = child.get("name") if kind == "principle" else child.get("principle")
            parts[-1] = (
                f"{kind} {label!r} ({loc[i - 1]}[{key}])" if label else f"{loc[i - 1]}[{key}]"
            )
        else:
            parts.append(str(key))
        node = child
    return ", field ".join(parts) if parts else "top level"


def parse_constitution(tree: Any, source: str = "<constitution>") -> Constitution:
    """Validate a parsed YAML tree as a constitution; raise ConstitutionError naming what is wrong."""
    if not isinstance(tree, dict):
        raise ConstitutionError(
            f"{source}: a constitution is a mapping with name, version, principles (and examples)"
        )
    try:
        return Constitution.model_validate(tree)
    except ValidationError as exc:
        lines = [f"{source}: invalid constitution"]
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {_where(tree, tuple(err['loc']))}: {msg}")
        raise ConstitutionError("\n".join(lines)) from None


def load_constitution(path: Path | str | None = None) -> Constitution:
    """Load and validate a constitution YAML file (the project's own when path is None)."""
    path = Path(path) if path is not None else DEFAULT_CONSTITUTION
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConstitutionError(
            f"{path}: cannot read constitution ({exc.strerror or exc})"
        ) from exc
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConstitutionError(f"{path}: not valid YAML: {exc}") from exc
    return parse_constitution(tree, str(path))


def store_constitution(constitution: Constitution, folder: Path) -> Path:
    """Keep a copy under ``folder/<hash>.yaml`` (once), so a recorded hash can be read back."""
    from alignment.workspace import atomic_write_text

    target = Path(folder) / f"{constitution.hash}.yaml"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, constitution.to_yaml())
    return target
