"""Message-based formats: TRL standard and conversational, ShareGPT."""

from __future__ import annotations

from typing import Any

from alignment.data.formats.records import _Malformed

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


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Malformed(f"wrong_type: {what} must be a string, got {type(value).__name__}")
    return value


def _messages(value: Any, what: str, default_role: str) -> list[dict]:
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
                "content": _text(content, f"{what}[{i}].content"),
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


def _parse_trl(obj: dict) -> list[tuple[list, list, list, dict]]:
    if "prompt" in obj:
        _require(obj, "prompt", "chosen", "rejected")
        prompt = _messages(obj["prompt"], "prompt", "user")
        chosen = _messages(obj["chosen"], "chosen", "assistant")
        rejected = _messages(obj["rejected"], "rejected", "assistant")
        return [(prompt, chosen, rejected, _rest(obj, "prompt", "chosen", "rejected"))]
    # implicit prompt: full conversations in chosen/rejected share the prompt as prefix
    _require(obj, "chosen", "rejected")
    if not isinstance(obj["chosen"], list):
        raise _Malformed("missing_field: prompt")
    full_c = _messages(obj["chosen"], "chosen", "assistant")
    full_r = _messages(obj["rejected"], "rejected", "assistant")
    prompt, chosen, rejected = _split_shared_prefix(full_c, full_r)
    return [(prompt, chosen, rejected, _rest(obj, "chosen", "rejected"))]


def _split_shared_prefix(full_c: list[dict], full_r: list[dict]) -> tuple[list, list, list]:
    if not full_c or not full_r:
        raise _Malformed("missing_field: chosen/rejected conversation is empty")
    if full_c[:-1] != full_r[:-1]:
        raise _Malformed("prefix_mismatch: chosen and rejected differ before the final turn")
    return full_c[:-1], full_c[-1:], full_r[-1:]


def _parse_sharegpt(obj: dict) -> list[tuple[list, list, list, dict]]:
    _require(obj, "conversations", "chosen", "rejected")
    prompt = _messages(obj["conversations"], "conversations", "user")
    chosen = _messages(obj["chosen"], "chosen", "assistant")
    rejected = _messages(obj["rejected"], "rejected", "assistant")
    return [(prompt, chosen, rejected, _rest(obj, "conversations", "chosen", "rejected"))]


def _rest(obj: dict, *used: str) -> dict:
    return {k: v for k, v in obj.items() if k not in used}
