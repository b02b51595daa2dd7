"""Signing ahead and the LSH index's bookkeeping: the cheaper paths give what the plain ones give."""

from __future__ import annotations

import pickle

import pyarrow as pa

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
    assert pa.ipc.open_stream(piece).read_all().equals(table.slice(1000, 100))
    whole = len(pickle.dumps(table))
    assert len(pickle.dumps(table.slice(1000, 100))) > whole // 2  # what the piece avoids
    assert len(pickle.dumps(piece)) < whole // 20


def test_an_empty_piece_round_trips():
    table = _messages(10)
    assert pa.ipc.open_stream(_piece(table, 10, 0)).read_all().num_rows == 0
    assert pa.ipc.open_stream(_piece(table, 9, 1)).read_all().equals(table.slice(9, 1))
