"""Message-based formats: TRL standard and conversational, ShareGPT, OpenAI's preference
fine-tuning JSONL and LLaMA-Factory v1; message content as a string or as typed parts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from alignment.data.formats.records import ReadOptions, _Malformed

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
    "system": "system",
}


# content part types that hold text: OpenAI chat and Hugging Face chat templates write "text",
# OpenAI's Responses API "input_text"/"output_text"
_TEXT_PARTS = ("text", "input_text", "output_text")
Parsed = list[tuple[list, list, list, dict]]


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Malformed(f"wrong_type: {what} must be a string, got {type(value).__name__}")
    return value


def _content(value: Any, what: str, opts: ReadOptions, counts: Counter) -> str:
    """A message's text: a string, or its text parts joined in order with nothing between
    them, as chat templates render them."""
    if not isinstance(value, list):
        return _text(value, what)
    texts = []
    for j, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            raise _Malformed(f"wrong_type: {what}[{j}] must be a content part with a type")
        if kind in _TEXT_PARTS:
            key = "text" if "text" in part else "value"
            texts.append(_text(part.get(key), f"{what}[{j}].{key}"))
        elif opts.non_text_parts == "drop":
            counts["non_text_parts_dropped"] += 1
        else:
            raise _Malformed(
                f"non_text_content: {what}[{j}] is a {kind!r} part; only text is read "
                "(ingest.non_text_parts: drop reads the row without it)"
            )
    return "".join(texts)


def _messages(
    value: Any, what: str, default_role: str, opts: ReadOptions, counts: Counter
) -> list[dict]:
    """A string (one turn of default_role), a message dict, or a list of messages."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise _Malformed(
            f"wrong_type: {what} must be a string or a list of messages, got {type(value).__name__}"
        )
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise _Malformed(f"wrong_type: {what}[{i}] must be a message object")
        if "role" in msg or "content" in msg:
            role, content = msg.get("role"), msg.get("content")
        else:  # ShareGPT turn
            role = _SHAREGPT_ROLES.get(str(msg.get("from", "")).lower(), msg.get("from"))
            content = msg.get("value")
        out.append(
            {
                "role": _text(role, f"{what}[{i}].role"),
                "content": _content(content, f"{what}[{i}].content", opts, counts),
            }
        )
    return out


def _require(obj: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in obj or obj[k] is None]
    if missing:
        raise _Malformed(f"missing_field: {', '.join(missing)}")


def _score(value: Any) -> Any:
    """Numbers become floats; anything else is kept as is for the validation rule to flag."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip() == "":
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _parse_trl(obj: dict, opts: ReadOptions, counts: Counter) -> Parsed:
    if "prompt" in obj:
        _require(obj, "prompt", "chosen", "rejected")
        prompt = _messages(obj["prompt"], "prompt", "user", opts, counts)
        chosen = _messages(obj["chosen"], "chosen", "assistant", opts, counts)
        rejected = _messages(obj["rejected"], "rejected", "assistant", opts, counts)
        return [(prompt, chosen, rejected, _rest(obj, "prompt", "chosen", "rejected"))]
    # implicit prompt: full conversations in chosen/rejected share the prompt as prefix
    _require(obj, "chosen", "rejected")
    if not isinstance(obj["chosen"], list):
        raise _Malformed("missing_field: prompt")
    full_c = _messages(obj["chosen"], "chosen", "assistant", opts, counts)
    full_r = _messages(obj["rejected"], "rejected", "assistant", opts, counts)
    prompt, chosen, rejected = _split_shared_prefix(full_c, full_r)
    return [(prompt, chosen, rejected, _rest(obj, "chosen", "rejected"))]


def _split_shared_prefix(full_c: list[dict], full_r: list[dict]) -> tuple[list, list, list]:
    if not full_c or not full_r:
        raise _Malformed("missing_field: chosen/rejected conversation is empty")
    if full_c[:-1] != full_r[:-1]:
        raise _Malformed("prefix_mismatch: chosen and rejected differ before the final turn")
    return full_c[:-1], full_c[-1:], full_r[-1:]


def _parse_sharegpt(obj: dict, opts: ReadOptions, counts: Counter) -> Parsed:
    _require(obj, "conversations", "chosen", "rejected")
    prompt = _messages(obj["conversations"], "conversations", "user", opts, counts)
    chosen = _messages(obj["chosen"], "chosen", "assistant", opts, counts)
    rejected = _messages(obj["rejected"], "rejected", "assistant", opts, counts)
    return [(prompt, chosen, rejected, _rest(obj, "conversations", "chosen", "rejected"))]


def _parse_openai(obj: dict, opts: ReadOptions, counts: Counter) -> Parsed:
    """OpenAI's preference fine-tuning line: ``input.messages`` is the prompt; ``tools`` and
    the other ``input`` keys are kept in meta."""
    _require(obj, "input", "preferred_output", "non_preferred_output")
    request = obj["input"]
    if not isinstance(request, dict):
        raise _Malformed("wrong_type: input must be an object with messages")
    _require(request, "messages")
    prompt = _messages(request["messages"], "input.messages", "user", opts, counts)
    chosen = _messages(obj["preferred_output"], "preferred_output", "assistant", opts, counts)
    rejected = _messages(
        obj["non_preferred_output"], "non_preferred_output", "assistant", opts, counts
    )
    rest = _rest(obj, "input", "preferred_output", "non_preferred_output")
    request_rest = _rest(request, "messages")
    if request_rest:
        rest["input"] = request_rest
    return [(prompt, chosen, rejected, rest)]


def _parse_llamafactory(obj: dict, opts: ReadOptions, counts: Counter) -> Parsed:
    """LLaMA-Factory v1: two whole conversations; their shared prefix is the prompt, and each
    message's ``loss_weight`` is kept in meta."""
    _require(obj, "chosen_messages", "rejected_messages")
    sides = {}
    for side in ("chosen_messages", "rejected_messages"):
        messages = obj[side]
        full = _messages(messages, side, "assistant", opts, counts)
        weights = [m.get("loss_weight") if isinstance(m, dict) else None for m in messages]
        sides[side] = (full, weights)
    (full_c, weights_c), (full_r, weights_r) = sides.values()
    prompt, chosen, rejected = _split_shared_prefix(full_c, full_r)
    rest = _rest(obj, "chosen_messages", "rejected_messages")
    if any(w is not None for w in weights_c + weights_r):
        n = len(prompt)
        rest["loss_weight"] = {
            "prompt": weights_c[:n],
            "chosen": weights_c[n:],
            "rejected": weights_r[n:],
        }
    return [(prompt, chosen, rejected, rest)]


def _rest(obj: dict, *used: str) -> dict:
    return {k: v for k, v in obj.items() if k not in used}
