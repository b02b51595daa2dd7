"""Closing the loop from the watch: prompts that drew harmful compliance become red-team prompts.

They join the next CAI round's prompt set and the evaluation's, as new files named by their
content in the red-team folder; the shipped prompt files under data/ are never edited. Each
write makes a new pair of files (base prompts + every prompt collected so far) and points
``latest.json`` at them, so ``--set cai.prompts=...`` and ``--set evaluation.prompts=...``
take the grown sets, and an earlier set stays readable under its own name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from alignment.watch.traces import Exchange
from alignment.workspace import atomic_write_text

COLLECTED = "collected.jsonl"  # every prompt the watch has collected, one per line, in order


@dataclass
class RedTeamSets:
    new: int
    collected: int
    cai_prompts: Path | None
    eval_prompts: Path | None


def _prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def _named(folder: Path, stem: str, text: str) -> Path:
    path = folder / f"{stem}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}.jsonl"
    if not path.exists():  # named by content: an existing file already holds these bytes
        atomic_write_text(path, text)
    return path


def collect_red_team(
    folder: Path,
    harmful: list[Exchange],
    cai_base: Path | None = None,
    eval_base: Path | None = None,
) -> RedTeamSets:
    """Add the prompts of ``harmful`` (new ones only) and write the grown prompt sets."""
    from alignment.cai.prompts import DEFAULT_PROMPTS as CAI_PROMPTS
    from alignment.evaluation.prompts import DEFAULT_PROMPTS as EVAL_PROMPTS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    collected_path = folder / COLLECTED
    rows = []
    if collected_path.exists():
        rows = [json.loads(x) for x in collected_path.read_text("utf-8").splitlines() if x]
    seen = {r["id"] for r in rows}
    new = []
    for e in harmful:
        pid = f"watch-{_prompt_id(e.prompt)}"
        if pid in seen:
            continue
        seen.add(pid)
        new.append(
            {
                "id": pid,
                "prompt": e.prompt,
                "kind": "red_team",
                "category": "watch",
                "meta": {"trace_id": e.trace_id, "model": e.model, "model_version": e.version},
            }
        )
    if not new and not rows:
        return RedTeamSets(0, 0, None, None)
    rows += new
    if new:
        atomic_write_text(collected_path, _jsonl(rows))
    sets = {}
    for stem, base in (
        ("cai-prompts", cai_base or CAI_PROMPTS),
        ("eval-prompts", eval_base or EVAL_PROMPTS),
    ):
        text = Path(base).read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            text += "\n"
        # a base that is itself a grown set already holds what was collected before it
        have = {json.loads(x).get("prompt") for x in text.splitlines() if x.strip()}
        added = [r for r in rows if r["prompt"] not in have]
        sets[stem] = _named(folder, stem, text + _jsonl(added))
    latest = {"cai_prompts": str(sets["cai-prompts"]), "eval_prompts": str(sets["eval-prompts"])}
    atomic_write_text(folder / "latest.json", json.dumps(latest, indent=2) + "\n")
    return RedTeamSets(len(new), len(rows), sets["cai-prompts"], sets["eval-prompts"])
