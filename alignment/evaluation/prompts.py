"""Held-out inputs of the evaluation suite: prompts to answer, and demonstrations for the tax.

Both are JSONL files read whole; a bad line is an error naming the file and the line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from alignment.errors import AlignmentError

DEFAULT_PROMPTS = Path(__file__).resolve().parents[2] / "data" / "eval_prompts.jsonl"
DEFAULT_DEMONSTRATIONS = (
    Path(__file__).resolve().parents[2] / "data" / "heldout_demonstrations.jsonl"
)
BENIGN_KINDS = ("benign", "helpful")
RED_TEAM_KINDS = ("red_team",)


class EvalPromptsError(AlignmentError):
    """The held-out prompt file is unreadable or has a bad line; the message names file and line."""


@dataclass
class EvalPrompt:
    id: str
    prompt: list[dict]
    category: str
    kind: str


def load_eval_prompts(path: Path | str | None = None, limit: int | None = None) -> list[EvalPrompt]:
    """Held-out prompts (JSONL: ``prompt`` text or messages, ``category``, ``kind``, optional ``id``)."""
    path = Path(path) if path is not None else DEFAULT_PROMPTS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalPromptsError(f"{path}: cannot read prompts ({exc.strerror or exc})") from exc
    out: list[EvalPrompt] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalPromptsError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if isinstance(prompt, str) and prompt.strip():
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list) and prompt and all(isinstance(t, dict) for t in prompt):
            messages = prompt
        else:
            raise EvalPromptsError(
                f"{path}:{number}: 'prompt' must be non-empty text or a list of messages"
            )
        kind = str(row.get("kind", "benign"))
        if kind not in BENIGN_KINDS + RED_TEAM_KINDS:
            raise EvalPromptsError(
                f"{path}:{number}: kind {kind!r} is not one of {BENIGN_KINDS + RED_TEAM_KINDS}"
            )
        blob = json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()
        out.append(
            EvalPrompt(
                id=str(row.get("id") or hashlib.sha256(blob).hexdigest()[:12]),
                prompt=messages,
                category=str(row.get("category") or kind),
                kind=kind,
            )
        )
    if not out:
        raise EvalPromptsError(f"{path}: no prompts")
    return _take_by_side(out, limit) if limit else out


def _take_by_side(prompts: list[EvalPrompt], limit: int) -> list[EvalPrompt]:
    """The first ``limit`` prompts taken in turn from the benign and the red-team side.

    A plain head of the file would be benign prompts only, and a short evaluation would measure
    no harmful compliance at all (the gate caps it).
    """
    sides = [
        [p for p in prompts if p.kind in BENIGN_KINDS],
        [p for p in prompts if p.kind in RED_TEAM_KINDS],
    ]
    taken: list[EvalPrompt] = []
    for turn in range(len(prompts)):
        for side in sides:
            if turn < len(side) and len(taken) < limit:
                taken.append(side[turn])
    return taken


def load_demonstrations(
    path: Path | str | None = None, max_demonstrations: int | None = None
) -> tuple[list[list[dict]], list[list[dict]]]:
    """Held-out demonstrations (JSONL: ``prompt`` text or messages, ``answer`` text) as
    (prompts, one-message assistant answers); the first ``max_demonstrations`` if given."""
    path = Path(path) if path is not None else DEFAULT_DEMONSTRATIONS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalPromptsError(
            f"{path}: cannot read demonstrations ({exc.strerror or exc})"
        ) from exc
    prompts: list[list[dict]] = []
    answers: list[list[dict]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalPromptsError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        prompt = row.get("prompt") if isinstance(row, dict) else None
        answer = row.get("answer") if isinstance(row, dict) else None
        if isinstance(prompt, str) and prompt.strip():
            prompt = [{"role": "user", "content": prompt}]
        if not (isinstance(prompt, list) and prompt and all(isinstance(t, dict) for t in prompt)):
            raise EvalPromptsError(
                f"{path}:{number}: 'prompt' must be non-empty text or a list of messages"
            )
        if not (isinstance(answer, str) and answer.strip()):
            raise EvalPromptsError(f"{path}:{number}: 'answer' must be non-empty text")
        prompts.append(prompt)
        answers.append([{"role": "assistant", "content": answer}])
    if not prompts:
        raise EvalPromptsError(f"{path}: no demonstrations")
    return prompts[:max_demonstrations], answers[:max_demonstrations]
