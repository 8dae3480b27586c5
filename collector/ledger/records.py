"""Reading the store's ``spans`` table as a stream of leaf hashes, in seq order, in Arrow batches.

The leaf preimage is the stored ``record`` text's UTF-8 bytes. Arrow keeps strings as UTF-8 in one
data buffer, so we hash slices of that buffer directly instead of decoding to ``str`` and encoding
back: the same bytes without a Python string per row (measured 5-10 % faster; SHA-256 itself
dominates). Memory stays bounded by the batch size.

A row whose payload retention deleted has a NULL ``record`` and a tombstone holding its leaf hash
(``ledger_tombstones``): the tombstone's hash stands in for the missing bytes, so the tree, every
proof and every checkpoint stay valid. A NULL record without a tombstone stays a finding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from .leaves import leaf_hashes_of_array
from .schema import TOMBSTONES_TABLE

SPANS_TABLE = "spans"
DEFAULT_CHUNK_ROWS = 32_768


@dataclass
class LeafBatch:
    seqs: list[int]
    hashes: list[bytes]
    null_seqs: list[int]  # rows whose record is NULL and that have no tombstone (always a finding)
    tombstoned: list[int] = field(default_factory=list)  # NULL-record rows hashed from their tombstone


@contextmanager
def own_transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Own a transaction unless the caller already has one open (then theirs decides)."""
    try:
        con.begin()
    except duckdb.TransactionException:
        yield
        return
    try:
        yield
    except BaseException:
        con.rollback()
        raise
    con.commit()


def query_one(con, sql: str, params: list | None = None) -> tuple | None:
    """First row of a query, reading the result to its end.

    DuckDB refuses a new streaming read while an ``execute`` result is only partly fetched, so
    every small query here drains its result instead of using ``fetchone``.
    """
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def count_rows(con, table: str = SPANS_TABLE) -> tuple[int, int | None]:
    """Number of rows and the largest seq (None when empty)."""
    n, top = query_one(con, f"SELECT count(*), max(seq) FROM {table}")
    return int(n), None if top is None else int(top)


def iter_leaf_batches(
    con, start: int = 0, end: int | None = None, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, table: str = SPANS_TABLE
) -> Iterator[LeafBatch]:
    """Leaf hashes of rows with ``start <= seq < end`` (``end`` None: to the last row), seq order.

    One query per seq range ``[lo, lo + chunk_rows)`` rather than one ORDER BY over the table: a
    full sort makes DuckDB hold the whole table (measured: 1.8 GB peak for 1 M rows of 1 KB, and
    out-of-memory under a 200 MB limit), while each small range is answered from the few row groups
    whose seq min/max overlap it, because the writer appends in seq order. Empty ranges are skipped
    with a ``min(seq)`` probe, so a forged huge seq cannot make us walk the gap. Each range is fully
    fetched before it is yielded, so the caller may use the connection between batches.
    """
    if end is None:
        top = query_one(con, f"SELECT max(seq) FROM {table} WHERE seq >= ?", [start])[0]
        if top is None:
            return
        end = int(top) + 1
    lo = start
    while lo < end:
        hi = min(lo + chunk_rows, end)
        rows = con.sql(
            f"SELECT seq, record FROM {table} WHERE seq >= $lo AND seq < $hi ORDER BY seq",
            params={"lo": lo, "hi": hi},
        ).to_arrow_table()
        if rows.num_rows == 0:
            nxt = query_one(con, f"SELECT min(seq) FROM {table} WHERE seq >= ? AND seq < ?", [hi, end])[0]
            if nxt is None:
                return
            lo = int(nxt)
            continue
        for batch in rows.to_batches():
            leaves = _hash_batch(batch)
            if leaves.null_seqs and table == SPANS_TABLE:
                _apply_tombstones(con, leaves)
            yield leaves
        lo = hi


def leaf_hashes_of_range(con, start: int, end: int, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> list[bytes]:
    """Leaf hashes for seqs ``start .. end-1``; raises ``LookupError`` unless exactly those rows exist."""
    out: list[bytes] = []
    expected = start
    for batch in iter_leaf_batches(con, start, end, chunk_rows=chunk_rows):
        for s in batch.seqs:
            if s != expected:
                raise LookupError(f"seq {expected} is missing or duplicated in {SPANS_TABLE}")
            expected += 1
        if batch.null_seqs:
            raise LookupError(f"seq {batch.null_seqs[0]} has a NULL record")
        out += batch.hashes
    if expected != end:
        raise LookupError(f"{SPANS_TABLE} ends at seq {expected - 1}, expected rows up to {end - 1}")
    return out


def tombstone_hashes(con, seqs: list[int]) -> dict[int, bytes]:
    """Leaf hashes the tombstones of ``seqs`` hold (seqs without a tombstone are left out)."""
    if not seqs:
        return {}
    try:
        rows = con.sql(
            f"SELECT seq, leaf_hash FROM {TOMBSTONES_TABLE} WHERE seq >= $lo AND seq <= $hi",
            params={"lo": min(seqs), "hi": max(seqs)},
        ).fetchall()
    except duckdb.CatalogException:
        return {}  # a store from before retention existed
    wanted = set(seqs)
    return {int(s): bytes(h) for s, h in rows if s in wanted}


def _apply_tombstones(con, leaves: LeafBatch) -> None:
    found = tombstone_hashes(con, leaves.null_seqs)
    if not found:
        return
    position = {s: i for i, s in enumerate(leaves.seqs)}
    for s, h in found.items():
        leaves.hashes[position[s]] = h
    leaves.tombstoned = sorted(found)
    leaves.null_seqs = [s for s in leaves.null_seqs if s not in found]


def _hash_batch(batch: pa.RecordBatch) -> LeafBatch:
    seqs = batch.column(0).to_pylist()
    records = batch.column(1)
    nulls: list[int] = []
    if records.null_count:
        valid = records.is_valid().to_pylist()
        nulls = [s for s, ok in zip(seqs, valid, strict=True) if not ok]
        records = records.fill_null("")
    return LeafBatch(seqs, leaf_hashes_of_array(records), nulls)
