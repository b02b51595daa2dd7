"""Row keys as column kernels: 64-bit hashes of strings and record ids, and normalized prompts.

``splits.normalized_prompt`` is the reference; the kernels here give the same text at Arrow
speed (bytes for ASCII rows, Arrow's Unicode kernels for the rest).
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


# Code points that Arrow's kernels (utf8_lower, RE2's \\p{L} and \\p{N}) treat otherwise than
# ``splits.normalized_prompt`` (Python's str.lower and re's \\w), the reference: letters of a
# newer Unicode version than this Python's, capital sigma (Python lowercases it by its place in
# the word) and dotted capital I (two code points in lower case). A text with one goes through
# Python; tests/data/test_keys.py sweeps every code point so that the list stays whole.
_PYTHON_ONLY = (
    r"[\x{130}\x{3a3}\x{a7cb}\x{a7d2}\x{a7d4}\x{a7dc}\x{1123f}-\x{11240}\x{11f02}"
    r"\x{11f04}-\x{11f10}\x{11f12}-\x{11f33}\x{11f50}-\x{11f59}\x{1342f}\x{13441}-\x{13446}"
    r"\x{1b132}\x{1b155}\x{1d2c0}-\x{1d2d3}\x{1df25}-\x{1df2a}\x{1e030}-\x{1e06d}"
    r"\x{1e4d0}-\x{1e4eb}\x{1e4f0}-\x{1e4f9}\x{2b739}\x{2ebf0}-\x{2ee5d}\x{31350}-\x{323af}]"
)


def unicode_normalized(text: pa.Array) -> pa.Array:
    """``splits.normalized_prompt`` of any text by Arrow's Unicode kernels (see ``_PYTHON_ONLY``
    for the code points where they would differ: those texts go through Python)."""
    lowered = pc.utf8_lower(text)
    out = pc.utf8_trim(pc.replace_substring_regex(lowered, r"[^\p{L}\p{N}]+", " "), " ")
    python = pc.fill_null(pc.match_substring_regex(text, _PYTHON_ONLY), False)
    if pc.any(python).as_py():
        rows = text.filter(python).to_pylist()
        out = pc.replace_with_mask(
            out, python, pa.array([normalized_prompt(t) for t in rows], out.type)
        )
    return out


def normalized_texts(text: pa.Array) -> pa.Array:
    """``splits.normalized_prompt`` of each text (large strings): byte kernels for ASCII text,
    Arrow's Unicode kernels for the rest."""
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    out = ascii_normalized(text)
    other = pc.fill_null(pc.invert(pc.string_is_ascii(text)), False)
    if pc.any(other).as_py():
        fixed = unicode_normalized(text.filter(other).cast(pa.large_string()))
        out = pc.replace_with_mask(out, other, fixed)
    return out


def word_texts(text: pa.Array) -> pa.Array:
    """Texts whose non-empty space-separated parts are the words of ``normalized_texts`` (runs
    of spaces left in: cheaper, for a caller that splits them)."""
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    text = text.cast(pa.large_string())
    n = len(text)
    validity, offsets_buf, data_buf = text.buffers()
    if not n or data_buf is None:
        return normalized_texts(text)
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[text.offset : text.offset + n + 1]
    data = _WORD_BYTES[np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]]
    out = pa.Array.from_buffers(
        pa.large_string(),
        n,
        [validity, pa.py_buffer(offsets - offsets[0]), pa.py_buffer(data)],
        offset=0,
    )
    other = pc.fill_null(pc.invert(pc.string_is_ascii(text)), False)
    if pc.any(other).as_py():
        out = pc.replace_with_mask(out, other, unicode_normalized(text.filter(other)))
    return out


def normalized_prompt_keys(prompt_text: pa.Array) -> np.ndarray:
    """Hash of ``splits.normalized_prompt`` of each text (``normalized_texts``)."""
    return string_hashes(normalized_texts(prompt_text))
