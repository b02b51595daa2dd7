"""Word shingles and their MinHash signatures (``rensa``), as the near-duplicate check signs texts.

Texts are normalized as ``splits.normalized_prompt`` does (``keys.word_texts``) and cut into
word shingles, each a 64-bit hash of its words; a text's signature is ``rensa``'s MinHash of its
shingle hashes. A pair (``PairText``) is signed as its prompt, chosen and rejected joined by
newlines, from its parts' words (a newline parts words as a space does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alignment.data.keys import string_hashes, word_texts
from alignment.quality_config import NearDuplicateConfig

_MIX = np.uint64(0x9E3779B97F4A7C15)
_SIGN_ROWS = 16384  # texts shingled and signed at a time


def _finalize(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads combined hashes over all 64 bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _finalize_in_place(x: np.ndarray, tmp: np.ndarray) -> None:
    """``_finalize`` without new arrays (``tmp``: scratch of the same shape)."""
    for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        np.right_shift(x, np.uint64(shift), out=tmp)
        np.bitwise_xor(x, tmp, out=x)
        np.multiply(x, np.uint64(factor), out=x)
    np.right_shift(x, np.uint64(31), out=tmp)
    np.bitwise_xor(x, tmp, out=x)


def shingle_hashes(text: pa.Array, words: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat 64-bit shingle hashes, row offsets) of each text's ``words``-word shingles.

    A text shorter than ``words`` words is one shingle; an empty text has none.
    """
    return _shingles(*word_hashes(text), words)


def word_hashes(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(flat 64-bit hashes of each text's words, in order; the number of words of each text)."""
    split = pc.split_pattern(word_texts(text), " ")
    flat = pc.list_flatten(split)
    nonempty = pc.not_equal(flat, "")
    parent = pc.list_parent_indices(split).to_numpy(zero_copy_only=False)
    if not pc.all(nonempty).as_py():  # runs of spaces, and an empty text
        parent = parent[nonempty.to_numpy(zero_copy_only=False)]
        flat = flat.filter(nonempty)
    counts = np.bincount(parent, minlength=len(text)).astype(np.int64)
    encoded = pc.dictionary_encode(flat)
    # each distinct word hashed once
    hashes = string_hashes(encoded.dictionary)[encoded.indices.to_numpy(zero_copy_only=False)]
    return hashes, counts


def _joined_words(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The words of each row's parts one after the other: what ``word_hashes`` gives for the
    parts joined by newlines (a newline parts words as a space does)."""
    counts = np.sum([c for _, c in parts], axis=0).astype(np.int64)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    out = np.empty(int(counts.sum()), dtype=np.uint64)
    before = np.zeros(len(counts), dtype=np.int64)  # words of the row's earlier parts
    for hashes, part_counts in parts:
        part_starts = np.zeros(len(part_counts), dtype=np.int64)
        np.cumsum(part_counts[:-1], out=part_starts[1:])
        shift = np.repeat(starts + before - part_starts, part_counts)
        out[np.arange(len(hashes), dtype=np.int64) + shift] = hashes
        before += part_counts
    return out, counts


def _shingles(hashes: np.ndarray, counts: np.ndarray, words: int) -> tuple[np.ndarray, np.ndarray]:
    """``shingle_hashes`` from the texts' word hashes."""
    total = len(hashes)
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    # a shingle starts at each word up to ``words`` before the end, and once in a short text
    kept = np.maximum(counts - words + 1, np.minimum(counts, 1))
    offsets = np.zeros(len(counts) + 1, dtype=np.uint64)
    np.cumsum(kept, out=offsets[1:])
    at = np.arange(int(offsets[-1]), dtype=np.int64)
    at += np.repeat(starts[:-1] - offsets[:-1].astype(np.int64), kept)  # each shingle's first word
    padded = np.zeros(total + words, dtype=np.uint64)
    padded[:total] = hashes
    short = np.flatnonzero(counts < words)
    short = short[counts[short] > 0]
    shingle = np.zeros(len(at), dtype=np.uint64)
    tmp = np.empty_like(shingle)
    for k in range(words):
        np.multiply(shingle, _MIX, out=shingle)
        term = padded[at + k] if k else padded[at]
        if k and len(short):  # past a short text's end: no word
            first = offsets[:-1][short].astype(np.int64)
            term[first[counts[short] <= k]] = 0
        np.add(shingle, term, out=shingle)
        np.add(shingle, np.uint64(k + 1), out=shingle)
        _finalize_in_place(shingle, tmp)
    return shingle, offsets


@dataclass
class PairText:
    """What the pair check signs: prompt, chosen and rejected, as if joined by newlines (their
    words are taken part by part: the prompt's once for both checks, no joined copy)."""

    prompt: pa.Array
    chosen: pa.Array
    rejected: pa.Array

    def __len__(self) -> int:
        return len(self.prompt)

    def slice(self, start: int, length: int) -> PairText:
        return PairText(*(part.slice(start, length) for part in self.parts()))

    def take(self, rows: pa.Array) -> PairText:
        return PairText(*(part.take(rows) for part in self.parts()))

    def parts(self) -> tuple[pa.Array, pa.Array, pa.Array]:
        return self.prompt, self.chosen, self.rejected

    def joined(self) -> pa.Array:
        """The pair texts as one string each."""
        return pc.binary_join_element_wise(*self.parts(), "\n")


def _text_shingles(text, words: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(text, PairText):
        return _shingles(*_joined_words([word_hashes(part) for part in text.parts()]), words)
    return shingle_hashes(text, words)


def signatures(text, cfg: NearDuplicateConfig) -> tuple[np.ndarray, np.ndarray]:
    """(MinHash signatures (n, num_perm) uint32, whether the text has any shingle); ``text``:
    strings or a ``PairText``."""
    n = len(text)
    sig = np.empty((n, cfg.num_perm), dtype=np.uint32)
    has_text = np.empty(n, dtype=bool)
    # a slice of texts at a time: shingling keeps several arrays of 8 bytes a word alive, and
    # rensa hands its matrix back as Python lists (about 40 bytes a value); whole 200k-row
    # groups of long pairs cost gigabytes that way
    for start in range(0, n, _SIGN_ROWS):
        stop = min(start + _SIGN_ROWS, n)
        shingles = _text_shingles(text.slice(start, stop - start), cfg.shingle_words)
        sig[start:stop], has_text[start:stop] = _minhash(*shingles, cfg)
    return sig, has_text


def _minhash(hashes: np.ndarray, offsets: np.ndarray, cfg: NearDuplicateConfig):
    import rensa

    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        hashes, offsets, cfg.num_perm, cfg.seed
    )
    sig = np.array(matrix.to_rows(), dtype=np.uint32).reshape(-1, cfg.num_perm)
    return sig, np.diff(offsets) > 0
