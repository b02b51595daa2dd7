"""Row keys as column kernels give exactly what the Python reference gives."""

from __future__ import annotations

import sys

import pyarrow as pa

from alignment.data.keys import normalized_texts, word_texts
from alignment.data.splits import normalized_prompt


def test_normalized_texts_match_python_for_every_code_point():
    """Arrow's lower-casing and RE2's word classes against Python's, one text per code point
    (inside a word, doubled, and at a word's end, where Python lower-cases sigma otherwise);
    a mismatch means ``keys._PYTHON_ONLY`` lacks a code point for these library versions."""
    points = [c for c in range(0x80, sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    texts = [f"a{chr(c)}b {chr(c)}{chr(c)} aa{chr(c)}" for c in points]
    got = normalized_texts(pa.array(texts)).to_pylist()
    wrong = [
        hex(c) for c, t, g in zip(points, texts, got, strict=True) if normalized_prompt(t) != g
    ]
    assert wrong == []


def test_word_texts_hold_the_normalized_words():
    texts = ["Hello,  World!! 42_x", "  ÉCOLE  naïve—Straße ΣΑΣ. ", "", "数据🙂模型", "İi"]
    words = [[w for w in t.split(" ") if w] for t in word_texts(pa.array(texts)).to_pylist()]
    assert words == [normalized_prompt(t).split() for t in texts]
