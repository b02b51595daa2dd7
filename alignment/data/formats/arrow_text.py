"""Canonical JSON and content ids of Arrow message columns, computed without a row loop."""

from __future__ import annotations

import hashlib
import json
import operator
from typing import Any

from alignment.data.formats.records import _arrow

_ENCODE = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses for strings


def string_rows_with(values: Any, flag: Any) -> Any:
    """Per string of an Arrow string array: whether ``flag`` (bytes as a uint8 numpy array ->
    bool array) marks any of its UTF-8 bytes. A vectorized scan of the data buffer, a window
    at a time so that the temporaries stay in cache."""
    pa, pc = _arrow()
    import numpy as np

    values = values.cast(pa.large_string())
    n = len(values)
    out = np.zeros(n, dtype=bool)
    _, offsets_buf, data_buf = values.buffers()
    if not n or data_buf is None:
        return out
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[values.offset : values.offset + n + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buf, dtype=np.uint8)
    hits = [
        np.flatnonzero(flag(data[w : min(w + _SCAN_WINDOW, end)])) + w
        for w in range(start, end, _SCAN_WINDOW)
    ]
    hits = np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)
    if len(hits):
        out[np.searchsorted(offsets, hits, side="right") - 1] = True
    if values.null_count:
        out &= pc.is_valid(values).to_numpy(zero_copy_only=False)
    return out


_SCAN_WINDOW = 1 << 18


def _json_escaped_bytes(data: Any) -> Any:
    # what _ENCODE escapes: C0 controls, the quote and the backslash (all ASCII bytes)
    flagged = data < 0x20
    flagged |= data == 0x22
    flagged |= data == 0x5C
    return flagged


def _json_escape(values: Any) -> Any:
    """Each string of an Arrow array as the inside of its JSON literal, as ``_ENCODE`` writes
    it: strings that need no escaping (the most) are kept as they are, the others go through
    ``_ENCODE`` itself, so both give the same text."""
    pa, pc = _arrow()

    values = values.cast(pa.large_string())
    special = string_rows_with(values, _json_escaped_bytes)
    if special.any():
        mask = pa.array(special)
        escaped = [_ENCODE(s)[1:-1] for s in values.filter(mask).to_pylist()]
        values = pc.replace_with_mask(values, mask, pa.array(escaped, pa.large_string()))
    return values


def concat_strings(*parts: Any) -> Any:
    """Row-wise concatenation of large_string arrays and str constants."""
    pa, pc = _arrow()
    text = pa.large_string()
    pieces = [pa.scalar(p, text) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*pieces, pa.scalar("", text))


def messages_json(column: Any, spaced: bool = False) -> Any:
    """Canonical JSON of each row's message list, exactly as ``json.dumps(messages,
    sort_keys=True, ensure_ascii=False, separators=(",", ":"))`` writes it (an Arrow array);
    ``spaced``: with json.dumps' default separators (", ", ": ") instead."""
    pa, pc = _arrow()
    import numpy as np

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = pc.list_flatten(column)
    content = _json_escape(pc.struct_field(flat, "content"))
    role = _json_escape(pc.struct_field(flat, "role"))
    colon, comma = (": ", ", ") if spaced else (":", ",")
    head, middle = f'{{"content"{colon}"', f'"{comma}"role"{colon}"'
    counts = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if (counts == 1).all():  # one turn per row (a response, most prompts): one concatenation
        return concat_strings("[" + head, content, middle, role, '"}]')
    turns = concat_strings(head, content, middle, role, '"}')
    offsets = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    text = pa.large_string()
    joined = pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array(offsets), turns), pa.scalar(comma, text)
    )
    return concat_strings("[", joined, "]")


def sha256_digests(strings: Any) -> Any:
    """The sha256 digest of each string of an Arrow string array, as an (n, 32) uint8 array."""
    pa, _ = _arrow()
    import numpy as np

    if strings.null_count:
        raise ValueError("sha256_digests: null strings have no digest")
    # map() over C callables: no Python frame per row
    blobs = strings.cast(pa.large_binary()).to_pylist()
    digests = b"".join(map(_DIGEST, map(hashlib.sha256, blobs)))
    return np.frombuffer(digests, dtype=np.uint8).reshape(len(strings), 32)


_DIGEST = operator.methodcaller("digest")


def digest_hex16(digests: Any) -> Any:
    """The first 16 hex characters of each digest (``hexdigest()[:16]``), as an Arrow array."""
    pa, _ = _arrow()
    import numpy as np

    n = len(digests)
    hexed = np.ascontiguousarray(digests[:, :8]).tobytes().hex().encode("ascii")
    offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(hexed)])


def record_ids(prompt: Any, chosen: Any, rejected: Any) -> Any:
    """``record_id`` of each row of three message-list columns (same canonical JSON)."""
    blobs = concat_strings(
        '{"chosen":',
        messages_json(chosen),
        ',"prompt":',
        messages_json(prompt),
        ',"rejected":',
        messages_json(rejected),
        "}",
    )
    return digest_hex16(sha256_digests(blobs))
