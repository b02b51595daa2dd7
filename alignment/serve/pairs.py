"""Consented user feedback on served answers, turned into preference pairs for the next retrain.

Two kinds of pair, each naming the traces and model versions it came from:
- ``ab_choice``: the user picked one of two sampled answers of the served policy (on-policy).
- ``thumbs_down_vs_shadow``: the user rejected the served answer; the shadow model's answer to
  the same prompt is taken as chosen. That label is an assumption (nobody rated the shadow's
  answer), so the pair says so in its ``kind``; review or judge such pairs before trusting them.
- ``thumbs_down_vs_revision``: the user rejected the served answer and no shadow answered; with
  a reviser (``alignment.serve.revise``), a CAI revision of it under the constitution is taken
  as chosen. An assumption too, named in its ``kind``.

A request without ``consent`` never becomes training data. Exported traces are tagged, so the
next export writes only what is new.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from alignment.serve.server import (
    AB,
    CHOICE,
    CONSENT,
    RATING,
    ROLE,
    SHADOW_TRACE,
    VERSION,
)
from alignment.workspace import atomic_write_text

EXPORTED = "alignment.exported"  # trace tag: the landing file the trace's pair went into


@dataclass
class FeedbackExport:
    """What an export wrote (None when there was nothing new) and why other feedback gave no pair."""

    path: Path | None
    pairs: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def _latest(trace, name: str):
    """The value of the newest valid feedback called ``name`` on ``trace``, or None."""
    found = [
        a
        for a in trace.info.assessments
        if a.name == name and a.feedback is not None and a.valid is not False
    ]
    if not found:
        return None
    return max(found, key=lambda a: a.create_time_ms or 0).feedback.value


def _root(trace):
    return next((s for s in trace.data.spans if s.parent_id is None), None)


def _messages(role: str, text: str) -> list[dict]:
    return [{"role": role, "content": text}]


def _pair(prompt: str, chosen: str, rejected: str, meta: dict) -> dict:
    return {
        "prompt": _messages("user", prompt),
        "chosen": _messages("assistant", chosen),
        "rejected": _messages("assistant", rejected),
        "meta": meta,
    }


def pair_from_trace(trace, get_trace, reviser=None) -> tuple[dict | None, str]:
    """The pair one request trace's feedback gives, or None and the reason it gives none."""
    tags = trace.info.tags
    if tags.get(CONSENT) != "true":
        return None, "no_consent"
    root = _root(trace)
    if root is None:
        return None, "trace_without_spans"
    prompt = (root.inputs or {}).get("prompt")
    meta = {
        "trace_ids": [trace.info.trace_id],
        "model": tags.get("alignment.model"),
        "model_version": tags.get(VERSION),
        "alias": tags.get("alignment.alias"),
    }
    choice = _latest(trace, CHOICE) if tags.get(AB) == "true" else None
    if choice in ("a", "b"):
        a, b = (root.outputs or {}).get("responses") or [None, None]
        chosen, rejected = (a, b) if choice == "a" else (b, a)
        if not (prompt and chosen and rejected) or chosen == rejected:
            return None, "identical_or_empty_answers"
        return _pair(prompt, chosen, rejected, {"kind": "ab_choice", **meta}), ""
    rating = _latest(trace, RATING)
    if rating is None:
        return None, "no_feedback"
    if rating is True:
        return None, "thumbs_up_alone"
    shadow_id = tags.get(SHADOW_TRACE)
    if not shadow_id:
        if reviser is None:
            return None, "thumbs_down_without_shadow_answer"
        return _revision_pair(trace, root, prompt, meta, reviser)
    shadow = get_trace(shadow_id)
    rejected = (root.outputs or {}).get("response")
    shadow_root = _root(shadow) if shadow is not None else None
    chosen = (shadow_root.outputs or {}).get("response") if shadow_root is not None else None
    if not (prompt and chosen and rejected) or chosen == rejected:
        return None, "identical_or_empty_answers"
    meta = {
        **meta,
        "kind": "thumbs_down_vs_shadow",
        "trace_ids": [trace.info.trace_id, shadow_id],
        "chosen_model_version": shadow.info.tags.get(VERSION),
    }
    return _pair(prompt, chosen, rejected, meta), ""


def _revision_pair(trace, root, prompt, meta, reviser) -> tuple[dict | None, str]:
    rejected = (root.outputs or {}).get("response")
    if not (prompt and rejected):
        return None, "identical_or_empty_answers"
    revision = reviser.revise(prompt, rejected, trace.info.trace_id)
    if not revision.text or revision.text == rejected:
        return None, "revision_empty_or_unchanged"
    meta = {
        **meta,
        "kind": "thumbs_down_vs_revision",
        "principles": revision.principles,
        **reviser.provenance(),
    }
    return _pair(prompt, revision.text, rejected, meta), ""


def export_feedback_pairs(experiment_id: str, landing: Path, reviser=None) -> FeedbackExport:
    """Write the pairs of feedback not exported before as one JSONL file in ``landing``.

    The file is named by its content and written atomically, so the retrain flow's landing
    selection never takes half of it; then its traces are tagged as exported.
    """
    import mlflow

    # answers without consent are not even read: they can never become training data
    traces = mlflow.search_traces(
        locations=[experiment_id],
        filter_string=f"tags.`{ROLE}` = 'request' AND tags.`{CONSENT}` = 'true'",
        return_type="list",
    )
    result = FeedbackExport(None)
    used: list[str] = []
    for trace in sorted(traces, key=lambda t: (t.info.request_time, t.info.trace_id)):
        if EXPORTED in trace.info.tags:
            continue
        pair, why = pair_from_trace(trace, lambda tid: mlflow.get_trace(tid, silent=True), reviser)
        if pair is None:
            result.skipped[why] += 1
            continue
        result.pairs.append(pair)
        used.append(trace.info.trace_id)
    if not result.pairs:
        return result
    text = "".join(json.dumps(p, ensure_ascii=False, sort_keys=True) + "\n" for p in result.pairs)
    name = f"feedback-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}.jsonl"
    result.path = atomic_write_text(Path(landing) / name, text)
    for trace_id in used:
        mlflow.set_trace_tag(trace_id, EXPORTED, name)
    return result


FEEDBACK_TRACES = "lineage.feedback_traces"  # model version tag: the traces its data came from
TAG_LIMIT = 4000  # characters of a tag value kept; the whole list is an artifact of the run


def feedback_trace_ids(ws, dataset: str, data_version: str) -> list[str]:
    """The trace ids named by the feedback pairs in a data version's accepted rows, in order."""
    import io

    import pyarrow.parquet as pq

    from alignment.data.version import find_version, read_version_file

    version = find_version(ws, dataset, data_version)
    if version is None:
        return []
    table = pq.read_table(io.BytesIO(read_version_file(ws, version, "accepted.parquet")))
    found: dict[str, None] = {}
    for text in table.column("meta").to_pylist():
        try:
            meta = json.loads(text or "null")
        except json.JSONDecodeError:
            continue
        if isinstance(meta, dict) and isinstance(meta.get("meta"), dict):
            meta = meta["meta"]  # the reader nests a record's meta when it had other keys
        if isinstance(meta, dict) and isinstance(meta.get("trace_ids"), list):
            found.update((str(t), None) for t in meta["trace_ids"])
    return list(found)


def record_feedback_lineage(ws, dataset: str, data_version: str, name: str, version: str) -> list:
    """Tag a registered version with the traces whose feedback is in the data it was trained on."""
    from mlflow import MlflowClient

    ids = feedback_trace_ids(ws, dataset, data_version)
    if not ids:
        return ids
    client = MlflowClient()
    listed = json.dumps(ids)
    if len(listed) > TAG_LIMIT:
        kept = []
        for trace_id in ids:
            if len(json.dumps([*kept, trace_id, "..."])) > TAG_LIMIT:
                break
            kept.append(trace_id)
        listed = json.dumps([*kept, "..."])
    client.set_model_version_tag(name, version, FEEDBACK_TRACES, listed)
    client.set_model_version_tag(name, version, "lineage.feedback_trace_count", str(len(ids)))
    run_id = client.get_model_version(name, version).run_id
    if run_id:
        client.log_text(run_id, json.dumps(ids, indent=1), "lineage/feedback_traces.json")
    return ids
