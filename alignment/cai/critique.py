"""SL phase: the model answers, then critiques and revises its answer by sampled principles.

For each prompt: an initial answer; then ``rounds`` rounds of critique and revision, each by a
principle drawn with a seeded RNG (so a rerun draws the same principles); the final revision is
the SFT target. Each round starts from the prompt and the current answer (plus the constitution's
few-shot examples), so contexts stay bounded. A round whose revision comes back empty keeps the
previous answer and ends that prompt's rounds.

Outputs (JSONL): ``sft.jsonl``, canonical preference records (chosen = final revision, rejected
= initial answer, so the set also works as preference pairs; ``meta`` holds the whole audit
trail and the constitution hash, so versioning the set versions the audit), and ``audit.jsonl``,
one record per prompt with every intermediate text, including prompts left out of the SFT set.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from alignment.cai.generate import GenerationSettings, Generator
from alignment.constitution import Constitution, Example, Principle


@dataclass
class SLResult:
    """Where the SL phase wrote its data, and what it counted."""

    sft_path: Path
    audit_path: Path
    prompts: int
    rows: int  # SFT rows: final revision non-empty and different from the initial answer
    constitution_hash: str
    seconds: float


def _few_shot(constitution: Constitution, examples: Sequence[Example]) -> list[dict]:
    turns: list[dict] = []
    for ex in examples:
        p = constitution.principle(ex.principle)
        turns += [
            {"role": "user", "content": ex.prompt},
            {"role": "assistant", "content": ex.response},
            {"role": "user", "content": p.critique_request},
            {"role": "assistant", "content": ex.critique},
            {"role": "user", "content": p.revision_request},
            {"role": "assistant", "content": ex.revision},
        ]
    return turns


def critique_conversation(
    shots: list[dict], prompt: str, answer: str, principle: Principle
) -> list[dict]:
    """The conversation the model critiques its answer in."""
    return [
        *shots,
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": principle.critique_request},
    ]


def revision_conversation(
    shots: list[dict], prompt: str, answer: str, principle: Principle, critique: str
) -> list[dict]:
    """The conversation the model revises its answer in, after its critique."""
    return [
        *critique_conversation(shots, prompt, answer, principle),
        {"role": "assistant", "content": critique},
        {"role": "user", "content": principle.revision_request},
    ]


def run_sl_phase(
    generator: Generator,
    prompts: Sequence[dict],
    constitution: Constitution,
    out_dir: Path,
    settings: GenerationSettings,
    rounds: int = 4,
    few_shot: int = 1,
    seed: int = 0,
    model_name: str = "",
) -> SLResult:
    """Answer, critique and revise every prompt; write sft.jsonl and audit.jsonl to out_dir.

    `prompts` are prompt items ``{"id", "prompt", "kind"}``. Generation is batched across
    prompts: one generate call per step (answer, then critique and revision of each round).
    """
    from alignment.workspace import atomic_write_text

    started = time.perf_counter()
    shots = _few_shot(constitution, constitution.examples_for(few_shot))
    texts = [p["prompt"] for p in prompts]
    answers = generator.generate(
        [[{"role": "user", "content": t}] for t in texts], replace(settings, seed=seed)
    )
    trail: list[dict] = [
        {
            "prompt_id": p["id"],
            "kind": p.get("kind"),
            "prompt": p["prompt"],
            "initial_response": a,
            "rounds": [],
        }
        for p, a in zip(prompts, answers, strict=True)
    ]
    current = list(answers)
    active = [i for i, a in enumerate(answers) if a]
    for r in range(rounds):
        if not active:
            break
        drawn = {
            i: constitution.sample(random.Random(f"{seed}:sl:{prompts[i]['id']}:{r}"))
            for i in active
        }
        critiques = generator.generate(
            [critique_conversation(shots, texts[i], current[i], drawn[i]) for i in active],
            replace(settings, seed=seed + 2 * r + 1),
        )
        revisions = generator.generate(
            [
                revision_conversation(shots, texts[i], current[i], drawn[i], c)
                for i, c in zip(active, critiques, strict=True)
            ],
            replace(settings, seed=seed + 2 * r + 2),
        )
        still = []
        for i, critique, revision in zip(active, critiques, revisions, strict=True):
            trail[i]["rounds"].append(
                {
                    "round": r + 1,
                    "principle": drawn[i].name,
                    "critique_request": drawn[i].critique_request,
                    "critique": critique,
                    "revision_request": drawn[i].revision_request,
                    "revision": revision,
                }
            )
            if revision:
                current[i] = revision
                still.append(i)
        active = still

    provenance = {
        "constitution": constitution.name,
        "constitution_version": constitution.version,
        "constitution_hash": constitution.hash,
        "model": model_name,
        "seed": seed,
        "few_shot": few_shot,
        "max_new_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
    }
    audit_lines, sft_lines = [], []
    for i, record in enumerate(trail):
        record["final_revision"] = current[i]
        record.update(provenance)
        audit_lines.append(json.dumps(record, ensure_ascii=False))
        if not answers[i] or current[i] == answers[i]:
            continue  # nothing to learn (and the data validation rejects empty or equal pairs)
        meta = {"phase": "sl", **record}
        for key in ("prompt", "initial_response", "final_revision"):
            meta.pop(key)  # already the prompt, rejected and chosen columns
        sft_lines.append(
            json.dumps(
                {
                    "prompt": [{"role": "user", "content": texts[i]}],
                    "chosen": [{"role": "assistant", "content": current[i]}],
                    "rejected": [{"role": "assistant", "content": answers[i]}],
                    "meta": meta,
                },
                ensure_ascii=False,
            )
        )
    out_dir = Path(out_dir)
    audit_path = atomic_write_text(out_dir / "audit.jsonl", "".join(x + "\n" for x in audit_lines))
    sft_path = atomic_write_text(out_dir / "sft.jsonl", "".join(x + "\n" for x in sft_lines))
    return SLResult(
        sft_path,
        audit_path,
        len(prompts),
        len(sft_lines),
        constitution.hash,
        time.perf_counter() - started,
    )
