"""SL phase: the model answers, then critiques and revises its answer by sampled principles.

For each prompt: an initial answer; then ``rounds`` rounds of critique and revision, each by a
principle drawn with a seeded RNG (so a rerun draws the same principles); the final revision is
the SFT target. Each round starts from the prompt and the current answer (plus the constitution's
few-shot examples), so contexts stay bounded. A round whose revision comes back empty keeps the
previous answer and ends that prompt's rounds. Empty texts are counted per step (answer,
critique, revision) with the ids of their prompts, so a model that ends every answer at once is
reported as such, not only as an empty SFT set.

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
from dataclasses import dataclass, field, replace
from pathlib import Path

from alignment.cai.generate import GenerationSettings, Generator
from alignment.constitution import Constitution, Example, Principle
from alignment.errors import EmptyGenerations


@dataclass
class SLResult:
    """Where the SL phase wrote its data, and what it counted."""

    sft_path: Path
    audit_path: Path
    prompts: int
    rows: int  # SFT rows: final revision non-empty and different from the initial answer
    constitution_hash: str
    seconds: float
    # prompt ids whose generated text came back empty, by step: answer, critique, revision
    empty: dict[str, list[str]] = field(default_factory=dict)

    def empty_summary(self, shown: int = 5) -> str:
        """One line: how many answers, critiques and revisions came back empty, for which prompts."""
        return describe_empty(self.empty, self.prompts, shown)


def require_sft_rows(result: SLResult) -> SLResult:
    """The result, or EmptyGenerations naming the empty texts when no SFT row was written."""
    if result.rows:
        return result
    unrevised = result.prompts - len(result.empty.get("answer", []))
    raise EmptyGenerations(
        f"CAI SL phase: no SFT rows from {result.prompts} prompts ({result.empty_summary()}; "
        f"{unrevised} answered but never revised). The model ends its texts at once: sample "
        "(cai.sl_temperature > 0), allow more cai.max_new_tokens, or use a real model "
        f"(configs/cai-demo.yaml, configs/cai-smollm2.yaml). Audit: {result.audit_path}"
    )


def describe_empty(
    empty: dict[str, list[str]], prompts: int, shown: int = 5, title: str = "empty generations"
) -> str:
    """'empty generations: answer 3 of 10 prompts (p1, p2, p3); ...', or '...: none'."""
    parts = []
    for step, ids in empty.items():
        if ids:
            more = f", +{len(ids) - shown} more" if len(ids) > shown else ""
            parts.append(f"{step} {len(ids)} of {prompts} prompts ({', '.join(ids[:shown])}{more})")
    return f"{title}: " + ("; ".join(parts) if parts else "none")


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
    empty: dict[str, list[str]] = {
        "answer": [prompts[i]["id"] for i, a in enumerate(answers) if not a],
        "critique": [],
        "revision": [],
    }
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
            if not critique:
                empty["critique"].append(prompts[i]["id"])
            if revision:
                current[i] = revision
                still.append(i)
            else:
                empty["revision"].append(prompts[i]["id"])
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
        # nothing to learn from an empty answer or an unrevised one (and the data validation
        # rejects empty or equal pairs)
        record["outcome"] = (
            "empty_answer" if not answers[i] else "unrevised" if current[i] == answers[i] else "sft"
        )
        record.update(provenance)
        audit_lines.append(json.dumps(record, ensure_ascii=False))
        if record["outcome"] != "sft":
            continue
        meta = {"phase": "sl", **record}
        for key in ("prompt", "initial_response", "final_revision", "outcome"):
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
        {step: sorted(set(ids), key=ids.index) for step, ids in empty.items()},
    )
