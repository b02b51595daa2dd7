"""Row keys as column kernels: 64-bit hashes of strings and record ids, and normalized prompts.

``splits.normalized_prompt`` is the reference; the byte kernels here give the same text for
ASCII rows at Arrow speed and fall back to it for the rest.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from alignment.data.splits import normalized_prompt


def string_hashes(strings: pa.Array) -> np.ndarray:
    """A 64-bit hash per string (pandas' keyed SipHash: fixed across runs and processes)."""
    return pd.util.hash_array(strings.to_numpy(zero_copy_only=False), categorize=False)


def id_keys(ids: pa.Array) -> np.ndarray:
    """A 64-bit key per record id: the id's own 16 hex digits (ids are content hashes), or
    the id's hash for an id of another shape."""
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    hex16 = pc.fill_null(pc.match_substring_regex(ids, "^[0-9a-f]{16}$"), False)
    keys = np.zeros(len(ids), dtype=np.uint64)
    well = hex16.to_numpy(zero_copy_only=False)
    if well.any():
        hex_ids = ids.filter(hex16)
        one_row = pa.ListArray.from_arrays(pa.array([0, len(hex_ids)], pa.int32()), hex_ids)
        digits = pc.binary_join(one_row, "")[0].as_py()
        keys[well] = np.frombuffer(bytes.fromhex(digits), dtype=">u8")
    if not well.all():
        keys[~well] = string_hashes(pc.fill_null(ids.filter(pc.invert(hex16)), ""))
    return keys


# ASCII bytes as ``splits.normalized_prompt`` sees them: letters lowercased, digits kept,
# everything else (``[\W_]``) a space
_WORD_BYTES = np.full(256, 0x20, dtype=np.uint8)
_WORD_BYTES[ord("0") : ord("9") + 1] = np.arange(ord("0"), ord("9") + 1)
_WORD_BYTES[ord("a") : ord("z") + 1] = np.arange(ord("a"), ord("z") + 1)
_WORD_BYTES[ord("A") : ord("Z") + 1] = np.arange(ord("a"), ord("z") + 1)


def ascii_normalized(text: pa.Array) -> pa.Array:
    """``splits.normalized_prompt`` of ASCII strings, on the bytes: map each byte through
    ``_WORD_BYTES``, drop every space that starts a row or follows a space, trim the end."""
    text = text.cast(pa.large_string())
    n = len(text)
    _, offsets_buf, data_buf = text.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[text.offset : text.offset + n + 1]
    if not n or data_buf is None or offsets[-1] == offsets[0]:
        return pa.array([""] * n, pa.large_string())
    rel = offsets - offsets[0]
    data = _WORD_BYTES[np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]]
    space = data == 0x20
    after_space = np.empty_like(space)
    after_space[0] = True
    after_space[1:] = space[:-1]
    starts = rel[:-1]
    after_space[starts[starts < len(data)]] = True
    dropped = space & after_space
    row_of_dropped = np.searchsorted(rel, np.flatnonzero(dropped), side="right") - 1
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.diff(rel) - np.bincount(row_of_dropped, minlength=n), out=new_offsets[1:])
    keep = ~dropped
    collapsed = pa.Array.from_buffers(
        pa.large_string(), n, [None, pa.py_buffer(new_offsets), pa.py_buffer(data[keep])]
    )
    return pc.utf8_rtrim(collapsed, " ")


def normalized_prompt_keys(prompt_text: pa.Array) -> np.ndarray:
    """Hash of ``splits.normalized_prompt`` of each text: byte kernels for ASCII text,
    Python's own regex for the rest."""
    ascii_rows = pc.string_is_ascii(prompt_text).to_numpy(zero_copy_only=False)
    keys = string_hashes(ascii_normalized(prompt_text))
    if not ascii_rows.all():
        other = np.flatnonzero(~ascii_rows)
        slow = [normalized_prompt(t) for t in prompt_text.take(pa.array(other)).to_pylist()]
        keys[other] = string_hashes(pa.array(slow, pa.string()))
    return keys
