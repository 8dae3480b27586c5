"""What an export reads from the store, all through a ``Reader`` (file, connection or a running
collector's read API), all plain SELECTs over ``spans`` and the ledger's own tables.

The bundle's events are the agent's spans in the window plus the spans its answers depend on:
decisions on its escalations recorded elsewhere (often by an approver, after the window), tool
calls in the window that carry no agent identity (the readiness answers count them), and the
registry loads in force. Events whose payload retention deleted are found through their tombstones,
which keep the agent and time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from govtrace.analytics.reader import Reader, ReaderError
from govtrace.analytics.views import naive
from govtrace.collector.ledger.checkpoint import Checkpoint, parse_checkpoint
from govtrace.collector.ledger.leaves import arrow_leaf_hashes
from govtrace.collector.ledger.merkle import CompactRange
from govtrace.collector.ledger.records import tombstone_hashes

REGISTRY_LOAD = "govtrace.registry.load"  # analytics/registry.py's OP_REGISTRY_LOAD

SUBJECT, RESOLUTION, UNATTRIBUTED, REGISTRY = "subject", "resolution", "unattributed", "registry"

_WINDOW = "start_time >= CAST($1 AS TIMESTAMP) AND start_time < CAST($2 AS TIMESTAMP)"
_S_WINDOW = "s.start_time >= CAST($1 AS TIMESTAMP) AND s.start_time < CAST($2 AS TIMESTAMP)"

MEMBERS_SQL = f"""
WITH subject_escalations AS (
  SELECT DISTINCT escalation_id FROM spans
  WHERE agent_id = $3 AND {_WINDOW} AND escalation_id IS NOT NULL
), chunk AS (
  SELECT s.*,
         CASE
           WHEN s.agent_id = $3 AND {_S_WINDOW} THEN '{SUBJECT}'
           WHEN s.escalation_id IN (SELECT escalation_id FROM subject_escalations)
                AND s.start_time >= CAST($1 AS TIMESTAMP) THEN '{RESOLUTION}'
           WHEN s.agent_id IS NULL AND s.operation = 'execute_tool'
                AND {_S_WINDOW} THEN '{UNATTRIBUTED}'
           WHEN s.seq IN ({{registry}}) THEN '{REGISTRY}'
         END AS included_as
  FROM spans s
  WHERE s.seq >= $4 AND s.seq < $5
)
SELECT * FROM chunk WHERE included_as IS NOT NULL ORDER BY seq
"""

ERASED_SQL = f"""
SELECT seq, leaf_hash, event_no, data_class FROM ledger_tombstones
WHERE agent_id = $3 AND {_WINDOW} AND seq < $4 ORDER BY seq
"""

UNSEALED_SQL = f"SELECT count(*) AS n FROM spans WHERE agent_id = $3 AND {_WINDOW} AND seq >= $4"

REGISTRY_SQL = f"""
(SELECT seq FROM spans WHERE operation = '{REGISTRY_LOAD}' AND start_time < CAST($1 AS TIMESTAMP) AND seq < $3
 ORDER BY start_time DESC, seq DESC LIMIT 1)
UNION ALL
(SELECT seq FROM spans WHERE operation = '{REGISTRY_LOAD}' AND {_WINDOW} AND seq < $3)
"""

LEAVES_SQL = """
SELECT s.seq, coalesce(unhex(sha256('\\x00'::BLOB || encode(s.record))), t.leaf_hash) AS leaf
FROM spans s LEFT JOIN ledger_tombstones t ON t.seq = s.seq AND s.record IS NULL
WHERE s.seq >= $1 AND s.seq < $2 ORDER BY s.seq
"""


class StoreError(RuntimeError):
    """The store cannot back an export (no checkpoint, rows that do not match the ledger …)."""


@dataclass(frozen=True)
class StoredCheckpoint:
    seq_no: int
    note: str
    checkpoint: Checkpoint
    frontier: CompactRange


def window_params(agent: str, since: datetime, until: datetime) -> list[Any]:
    return [naive(since), naive(until), agent]


def head_checkpoint(reader: Reader) -> StoredCheckpoint:
    """The latest signed checkpoint: every proof in the bundle leads to its root."""
    found = _checkpoints(reader, "ORDER BY seq_no DESC LIMIT 1", [])
    if not found:
        raise StoreError("the ledger has no signed checkpoint yet: nothing can be proven (a collector seals every "
                         "few seconds and on shutdown)")
    return found[0]


def anchor_checkpoint(reader: Reader, first_seq: int) -> StoredCheckpoint | None:
    """The last checkpoint sealed before the window's first event, if any: the log as it stood before."""
    found = _checkpoints(reader, "WHERE tree_size <= $1 ORDER BY seq_no DESC LIMIT 1", [first_seq])
    return found[0] if found else None


def ledger_keys(reader: Reader) -> tuple[list[str], list[str]]:
    """(verifier keys, rotation statements) stored with the ledger."""
    table = reader.arrow("SELECT verifier_key, rotation FROM ledger_keys ORDER BY added_at, fingerprint")
    rows = table.to_pylist()
    return [r["verifier_key"] for r in rows], [r["rotation"] for r in rows if r["rotation"]]


def registry_seqs(reader: Reader, since: datetime, until: datetime, tree_size: int) -> list[int]:
    """Seqs of the registry load in force at ``since`` and of every load in the window."""
    table = reader.arrow(REGISTRY_SQL, [naive(since), naive(until), tree_size])
    return sorted(int(s) for s in table.column("seq").to_pylist())


def iter_members(reader: Reader, agent: str, since: datetime, until: datetime, tree_size: int,
                 registry: list[int], chunk_seqs: int) -> Iterator[tuple[int, int, pa.Table]]:
    """``(lo, hi, rows)`` per seq chunk ``[lo, hi)`` below ``tree_size``: every member row (all span
    columns plus ``included_as``) in seq order. The first chunk is yielded even when empty, so the
    caller always learns the columns."""
    sql = MEMBERS_SQL.replace("{registry}", ", ".join(str(int(s)) for s in registry) or "NULL")
    params = window_params(agent, since, until)
    for lo in range(0, max(tree_size, 1), chunk_seqs):
        hi = min(lo + chunk_seqs, tree_size)
        table = reader.arrow(sql, [*params, lo, hi])
        if table.num_rows or lo == 0:
            yield lo, hi, table


def erased_members(reader: Reader, agent: str, since: datetime, until: datetime, tree_size: int) -> pa.Table:
    """Tombstones of the agent's events in the window: payload deleted by retention, leaf kept."""
    try:
        return reader.arrow(ERASED_SQL, [*window_params(agent, since, until), tree_size])
    except (ReaderError, duckdb.Error) as exc:
        if not _missing_table(exc, "ledger_tombstones"):
            raise
        return pa.table({"seq": pa.array([], pa.int64()), "leaf_hash": pa.array([], pa.binary()),
                         "event_no": pa.array([], pa.int64()), "data_class": pa.array([], pa.string())})


def unsealed_count(reader: Reader, agent: str, since: datetime, until: datetime, tree_size: int) -> int:
    """The agent's events in the window that no checkpoint covers yet (they cannot be in the bundle)."""
    table = reader.arrow(UNSEALED_SQL, [*window_params(agent, since, until), tree_size])
    return int(table.column("n")[0].as_py())


def all_leaf_hashes(reader: Reader, tree_size: int, known: Mapping[int, bytes] | None = None,
                    chunk_seqs: int = 131_072) -> list[bytes]:
    """Leaf hashes of seq 0 .. tree_size-1, checked contiguous; ``known`` are leaves already hashed
    (the exported events': hashing a million records twice would cost seconds for nothing).

    Readers holding a DuckDB connection hash the stored text in Python (OpenSSL's SHA-256 is faster
    than DuckDB's here and the code is the ledger's own); others ask the store to hash, so only 32
    bytes per event cross the read API instead of the event. Either way the caller checks the
    result against a signed root, which is what makes these hashes trustworthy.
    """
    known = known or {}
    con = getattr(reader, "con", None)
    out: list[bytes] = []
    for lo in range(0, tree_size, chunk_seqs):
        hi = min(lo + chunk_seqs, tree_size)
        if con is None:
            table = reader.arrow(LEAVES_SQL, [lo, hi])
            _check_contiguous(table.column("seq").to_pylist(), lo)
            leaves = table.column("leaf").to_pylist()
        else:
            leaves = _hash_locally(con, lo, hi, known)
        if any(h is None for h in leaves):
            raise StoreError("a row has neither its record nor a tombstone: run govtrace verify-store")
        out += leaves
    if len(out) != tree_size:
        raise StoreError(f"the store holds {len(out)} rows below seq {tree_size} but the checkpoint covers "
                         f"{tree_size}: rows were deleted; run govtrace verify-store")
    return out


def _hash_locally(con, lo: int, hi: int, known: Mapping[int, bytes]) -> list[bytes | None]:
    cursor = con.cursor()
    try:
        table = cursor.sql("SELECT seq, record FROM spans WHERE seq >= $lo AND seq < $hi ORDER BY seq",
                           params={"lo": lo, "hi": hi}).to_arrow_table()
        seqs = table.column("seq").to_pylist()
        _check_contiguous(seqs, lo)
        unknown = pa.array([s not in known for s in seqs], pa.bool_())
        records = table.column("record").combine_chunks().filter(unknown)
        todo = [s for s in seqs if s not in known]
        nulls = [s for s, ok in zip(todo, records.is_valid().to_pylist(), strict=True) if not ok]
        hashed = dict(zip(todo, arrow_leaf_hashes(records.fill_null("")), strict=True))
        hashed.update(tombstone_hashes(cursor, nulls))
        for s in nulls:
            hashed.setdefault(s, None)
    finally:
        cursor.close()
    return [known[s] if s in known else hashed[s] for s in seqs]


def ingest_events(reader: Reader, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Collector starts, stops and rejected-span counts in the window, and the last one before it."""
    sql = ("(SELECT occurred_at, event, count, detail FROM ingest_events WHERE occurred_at < CAST($1 AS TIMESTAMP) "
           "AND event IN ('collector_started', 'collector_stopped') ORDER BY occurred_at DESC LIMIT 1) UNION ALL "
           "(SELECT occurred_at, event, count, detail FROM ingest_events WHERE occurred_at >= CAST($1 AS TIMESTAMP) "
           "AND occurred_at < CAST($2 AS TIMESTAMP)) ORDER BY occurred_at")
    try:
        return reader.arrow(sql, [naive(since), naive(until)]).to_pylist()
    except (ReaderError, duckdb.Error) as exc:
        if not _missing_table(exc, "ingest_events"):
            raise
        return []


def retention_log(reader: Reader) -> list[dict[str, Any]]:
    """Every retention log entry (text and chain hash), in order."""
    try:
        return reader.arrow("SELECT event_no, entry, entry_hash FROM ledger_retention_log ORDER BY event_no").to_pylist()
    except (ReaderError, duckdb.Error) as exc:
        if not _missing_table(exc, "ledger_retention_log"):
            raise
        return []


def _checkpoints(reader: Reader, clause: str, params: list[Any]) -> list[StoredCheckpoint]:
    table = reader.arrow(f"SELECT seq_no, note, frontier FROM ledger_checkpoints {clause}", params)
    return [StoredCheckpoint(int(r["seq_no"]), r["note"], parse_checkpoint(r["note"]),
                             CompactRange.from_bytes(bytes(r["frontier"]))) for r in table.to_pylist()]


def _missing_table(exc: Exception, table: str) -> bool:
    """A store from before that table existed (or a bare ``spans`` table): the caller degrades."""
    return table in str(exc) and ("does not exist" in str(exc) or isinstance(exc, duckdb.CatalogException))


def _check_contiguous(seqs: list[int], start: int) -> None:
    if seqs != list(range(start, start + len(seqs))):
        raise StoreError(f"the store's seqs are not contiguous from {start}: rows were deleted or inserted; "
                         "run govtrace verify-store")
