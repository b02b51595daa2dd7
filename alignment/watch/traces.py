"""A window of the served model's traces, read back from MLflow as plain exchanges."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.serve.server import (
    CONSENT,
    MODEL,
    RATING,
    ROLE,
    SHADOW_TRACE,
    VERSION,
)


@dataclass
class Exchange:
    """One request trace: the text kept (None when hashed or off), tokens, feedback, shadow."""

    trace_id: str
    timestamp_ms: int
    model: str | None
    version: str | None
    prompt: str | None
    response: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    consent: bool
    rating: bool | None = None
    shadow_trace: str | None = None


def _readable(value) -> str | None:
    """Text a trace kept, or None for a hash (``sha256:...``) or nothing."""
    if not isinstance(value, str) or value.startswith("sha256:"):
        return None
    return value


def _root(trace):
    return next((s for s in trace.data.spans if s.parent_id is None), None)


def _rating(trace) -> bool | None:
    found = [
        a
        for a in trace.info.assessments
        if a.name == RATING and a.feedback is not None and a.valid is not False
    ]
    if not found:
        return None
    return bool(max(found, key=lambda a: a.create_time_ms or 0).feedback.value)


def exchange(trace) -> Exchange:
    """The exchange a request trace recorded (an A/B trace counts its first answer)."""
    root = _root(trace)
    inputs = (root.inputs if root is not None else None) or {}
    outputs = (root.outputs if root is not None else None) or {}
    attributes = root.attributes if root is not None else {}
    response = outputs.get("response")
    if response is None and outputs.get("responses"):
        response = outputs["responses"][0]
    tags = trace.info.tags
    completion = attributes.get("completion_tokens")
    if completion is not None and outputs.get("responses"):
        completion = completion / len(outputs["responses"])  # the root sums both answers
    return Exchange(
        trace_id=trace.info.trace_id,
        timestamp_ms=trace.info.request_time,
        model=tags.get(MODEL),
        version=tags.get(VERSION),
        prompt=_readable(inputs.get("prompt")),
        response=_readable(response),
        prompt_tokens=attributes.get("prompt_tokens"),
        completion_tokens=completion,
        consent=tags.get(CONSENT) == "true",
        rating=_rating(trace),
        shadow_trace=tags.get(SHADOW_TRACE),
    )


def read_window(
    experiment_id: str,
    start_ms: int,
    end_ms: int,
    model: str,
    version: str | None = None,
    max_traces: int = 2000,
) -> list[Exchange]:
    """The request traces of ``model`` (``version`` if given) with start_ms <= time < end_ms."""
    import mlflow

    where = [
        f"tags.`{ROLE}` = 'request'",
        f"tags.`{MODEL}` = '{model}'",
        f"trace.timestamp_ms >= {int(start_ms)}",
        f"trace.timestamp_ms < {int(end_ms)}",
    ]
    if version is not None:
        where.append(f"tags.`{VERSION}` = '{version}'")
    traces = mlflow.search_traces(
        locations=[experiment_id],
        filter_string=" AND ".join(where),
        max_results=max_traces,
        return_type="list",
    )
    return sorted((exchange(t) for t in traces), key=lambda e: (e.timestamp_ms, e.trace_id))


def shadow_answers(trace_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """Shadow trace id -> (model version, the shadow's answer text or None)."""
    import mlflow

    out: dict[str, tuple[str | None, str | None]] = {}
    for trace_id in trace_ids:
        trace = mlflow.get_trace(trace_id, silent=True)
        if trace is None:
            continue
        root = _root(trace)
        text = _readable(((root.outputs if root is not None else None) or {}).get("response"))
        out[trace_id] = (trace.info.tags.get(VERSION), text)
    return out
