"""Signing ahead and the LSH index's bookkeeping: the cheaper paths give what the plain ones give."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from alignment.data.quality.signing import _piece


def _messages(n: int) -> pa.Table:
    def turns(role: str, i: int) -> list[dict]:
        return [{"role": role, "content": f"{role} text number {i} " + "word " * (i % 7)}]

    return pa.table(
        {
            "prompt": [turns("user", i) for i in range(n)],
            "chosen": [turns("assistant", i) for i in range(n)],
            "rejected": [turns("assistant", -i) for i in range(n)],
        }
    )


def test_a_piece_sent_to_a_worker_carries_only_its_own_rows():
    """A pickled slice of an Arrow table carries the whole table's buffers; a piece must not:
    the ingest sends a read chunk to the workers a few thousand rows at a time."""
    table = _messages(4000)
    piece = _piece(table, 1000, 100)
    assert pickle.loads(pickle.dumps(piece)).equals(table.slice(1000, 100))
    whole = len(pickle.dumps(table))
    assert len(pickle.dumps(table.slice(1000, 100))) > whole // 2  # what the piece avoids
    assert len(pickle.dumps(piece)) < whole // 20


def test_an_empty_piece_round_trips():
    table = _messages(10)
    assert pickle.loads(pickle.dumps(_piece(table, 10, 0))).num_rows == 0
    assert pickle.loads(pickle.dumps(_piece(table, 9, 1))).equals(table.slice(9, 1))


def _reference_add(index, bands: np.ndarray, indexed: np.ndarray, size: int) -> None:
    """The index's bands as a stable sort of everything gives them: each value once, with the
    first key that had it."""
    keys = np.arange(size, size + len(bands), dtype=np.int64)[indexed]
    for b in range(bands.shape[1]):
        values = np.concatenate([index["values"][b], bands[indexed, b]])
        all_keys = np.concatenate([index["keys"][b], keys])
        order = np.argsort(values, kind="stable")
        values, all_keys = values[order], all_keys[order]
        first = np.ones(len(values), dtype=bool)
        first[1:] = values[1:] != values[:-1]
        index["values"][b], index["keys"][b] = values[first], all_keys[first]


def test_the_lsh_index_keeps_the_first_key_of_each_band_value_over_several_adds():
    from alignment.data.quality.near_duplicates import _Index

    draw = np.random.default_rng(7)
    index = _Index(0.8, 3, 2)
    reference = {"values": [np.zeros(0, np.uint64)] * 3, "keys": [np.zeros(0, np.int64)] * 3}
    size = 0
    for n in (500, 1, 0, 800, 300):
        # few distinct values: repeats within an add and across adds
        bands = draw.integers(0, 400, (n, 3)).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        indexed = draw.random(n) < 0.8
        index.add(np.zeros((n, 8), np.uint8), bands, indexed)
        _reference_add(reference, bands, indexed, size)
        size += n
        for b in range(3):
            assert np.array_equal(index.band_values[b], reference["values"][b])
            assert np.array_equal(index.band_keys[b], reference["keys"][b])
    assert index.size == size


def test_shared_band_values_are_those_pandas_calls_duplicated():
    import pandas as pd

    from alignment.data.quality.near_duplicates import _shared

    values = np.random.default_rng(3).integers(0, 50, 300).astype(np.uint64)
    expected = pd.Series(values).duplicated(keep=False).to_numpy()
    assert np.array_equal(_shared(values), expected)
    assert not _shared(np.zeros(0, np.uint64)).size and not _shared(values[:1]).any()


def _texts() -> list[tuple[str, str, str]]:
    """Prompts, chosen and rejected of every shape the words of a joined pair could differ on:
    empty parts, parts shorter than a shingle, punctuation at the edges, non-ASCII text (Arrow's
    Unicode path and Python's: final sigma, dotted capital I)."""
    draw = np.random.default_rng(11)
    vocab = ["alpha", "Beta", "gamma,", "(delta)", "éclair", "ΣΟΦΙΑΣ", "İstanbul", "naïve", "x"]
    rows = [("", "", ""), ("one", "", "two"), ("a b", "c", ""), ("...", "!!", "Hi."), ("", "a", "")]
    rows += [("Σ", "ς end", "ΟΔΟΣ."), ("İ", "i̇", "I")]
    for _ in range(300):
        rows.append(
            tuple(
                " ".join(draw.choice(vocab, size=int(draw.integers(0, 12))).tolist()) + "\n"
                for _ in range(3)
            )
        )
    return rows


@pytest.mark.parametrize("block", [None, 64])
def test_signing_records_gives_bit_for_bit_the_units_of_the_joined_pair_text(block, monkeypatch):
    """The worker signs a prompt's words once for both checks and the pair from its parts'
    words; the units must be those of the prompt text and the newline-joined pair text (also
    a block of rows at a time)."""
    from alignment.data.quality import minhash
    from alignment.data.quality.near_duplicates import NearDuplicates, PairText, sign_records

    if block:
        monkeypatch.setattr(minhash, "_SIGN_ROWS", block)
    from alignment.quality_config import NearDuplicateConfig

    cfg = NearDuplicateConfig()
    indexes = NearDuplicates(cfg).indexes
    rows = _texts()
    pairs = PairText(*(pa.array([r[i] for r in rows], pa.string()) for i in range(3)))
    joined = pa.array(["\n".join(r) for r in rows], pa.string())
    got = sign_records(pairs, indexes, cfg)
    for kind, text in (("prompt", pairs.prompt), ("pair", joined)):
        want = indexes[kind].units(text, cfg)
        assert np.array_equal(got[kind].sig8, want.sig8), kind
        assert np.array_equal(got[kind].bands, want.bands), kind
        assert np.array_equal(got[kind].has_text, want.has_text), kind
    assert np.array_equal(indexes["pair"].units(pairs, cfg).bands, got["pair"].bands)
    assert not got["pair"].has_text[0] and got["pair"].has_text[1:].all()
