"""Transcript formats: Anthropic HH style "\n\nHuman: ... \n\nAssistant: ..." pairs."""

from __future__ import annotations

import re
from collections import Counter

from alignment.data.formats.messages import Parsed, _require, _rest, _split_shared_prefix, _text
from alignment.data.formats.records import ReadOptions, _Malformed

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def _hh_turns(transcript: str, what: str) -> list[dict]:
    text = "\n\n" + _text(transcript, what).lstrip()
    parts = _HH_TURN.split(text)
    # parts: [before first marker, speaker, content, speaker, content, ...]
    if len(parts) < 3 or parts[0].strip():
        raise _Malformed(f"hh_transcript: {what} has no '\\n\\nHuman:'/'\\n\\nAssistant:' turns")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [
        {"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)
    ]


def _parse_hh(obj: dict, opts: ReadOptions, counts: Counter) -> Parsed:
    _require(obj, "chosen", "rejected")
    full_c = _hh_turns(obj["chosen"], "chosen")
    full_r = _hh_turns(obj["rejected"], "rejected")
    prompt, chosen, rejected = _split_shared_prefix(full_c, full_r)
    return [(prompt, chosen, rejected, _rest(obj, "chosen", "rejected"))]
