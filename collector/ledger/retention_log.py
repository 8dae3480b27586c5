"""The retention log: every payload deletion and legal hold, hash-chained and sealed by checkpoints.

Retention may delete an event's bytes but never its leaf: the row keeps its seq, its ``record``
becomes NULL and a tombstone keeps the leaf hash (``records.py`` reads it in place of the bytes).
That alone would let anyone with SQL access erase an inconvenient event and call it retention, so
every deletion, hold and release is an entry in this log:

    entry_hash[i] = SHA-256("govtrace/retention-log/v1\\n" || entry_hash[i-1] || entry bytes)

with ``entry_hash[-1]`` 32 zero bytes and the entry canonical JSON. Each checkpoint signs the head as
an extension line ``retention <entries> <hex head>``, so once sealed the log cannot be edited,
shortened or reordered without breaking a signature, and a deletion entry names (by digest) exactly
the tombstones it made. ``check_retention`` (run by ``verify_store``) checks all of that, and that no
deletion touched an event a legal hold covered at the time.

What it cannot stop: a key holder can rewrite and re-sign, as for the rest of the ledger.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from .checkpoint import Checkpoint
from .report import ERROR, INFO, WARNING, VerificationReport
from .schema import RETENTION_LOG_TABLE, TOMBSTONES_TABLE

DOMAIN = b"govtrace/retention-log/v1\n"
GENESIS = bytes(32)
LINE = "retention"
DELETE, HOLD, RELEASE = "delete", "hold", "release"


@dataclass(frozen=True)
class Tombstone:
    seq: int
    leaf_hash: bytes
    data_class: str
    agent_id: str | None
    start_ns: int | None


@dataclass(frozen=True)
class Hold:
    case: str
    agent: str | None
    since_ns: int | None
    until_ns: int | None

    def covers(self, agent_id: str | None, start_ns: int | None) -> bool:
        if self.agent is not None and agent_id != self.agent:
            return False
        if start_ns is None:
            return self.since_ns is None and self.until_ns is None
        if self.since_ns is not None and start_ns < self.since_ns:
            return False
        return self.until_ns is None or start_ns < self.until_ns

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Hold:
        return cls(entry["case"], entry.get("agent"), entry.get("since_ns"), entry.get("until_ns"))


def canonical(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(previous: bytes, entry_text: str) -> bytes:
    return hashlib.sha256(DOMAIN + previous + entry_text.encode("utf-8")).digest()


def head(con) -> tuple[int, bytes]:
    """(entries, head hash) of the log; ``(0, GENESIS)`` when empty or absent."""
    try:
        rows = con.sql(
            f"SELECT event_no, entry_hash FROM {RETENTION_LOG_TABLE} ORDER BY event_no DESC LIMIT 1"
        ).fetchall()
    except duckdb.CatalogException:
        return 0, GENESIS
    return (0, GENESIS) if not rows else (int(rows[0][0]) + 1, bytes(rows[0][1]))


def append_entry(con, entry: dict[str, Any]) -> int:
    """Append one entry (on the caller's transaction); returns its event number."""
    count, previous = head(con)
    text = canonical(entry)
    occurred = datetime.fromtimestamp(entry["time"], UTC).replace(tzinfo=None)
    con.execute(f"INSERT INTO {RETENTION_LOG_TABLE} VALUES (?, ?, ?, ?, ?)",
                [count, occurred, entry["action"], text, chain_hash(previous, text)])
    return count


def entries(con) -> list[dict[str, Any]]:
    """Every entry in order, parsed (for reports; ``check_retention`` does the verifying)."""
    try:
        rows = con.sql(f"SELECT entry FROM {RETENTION_LOG_TABLE} ORDER BY event_no").fetchall()
    except duckdb.CatalogException:
        return []
    return [json.loads(r[0]) for r in rows]


def active_holds(log: Iterable[dict[str, Any]]) -> dict[str, Hold]:
    """Holds placed and not released, by case id, after replaying ``log`` in order."""
    holds: dict[str, Hold] = {}
    for entry in log:
        if entry.get("action") == HOLD:
            holds[entry["case"]] = Hold.from_entry(entry)
        elif entry.get("action") == RELEASE:
            holds.pop(entry["case"], None)
    return holds


def tombstones_digest(tombstones: Sequence[Tombstone]) -> str:
    """What a deletion entry names: SHA-256 over its tombstones in seq order, every field included
    so the copies of agent and time that hold checks read are as fixed as the leaf hashes."""
    h = hashlib.sha256()
    for t in sorted(tombstones, key=lambda t: t.seq):
        h.update(canonical([t.seq, t.leaf_hash.hex(), t.data_class, t.agent_id, t.start_ns]).encode())
        h.update(b"\n")
    return h.hexdigest()


def line(count: int, head_hash: bytes) -> str:
    """The checkpoint extension line sealing the first ``count`` entries."""
    return f"{LINE} {count} {head_hash.hex()}"


def sealed(cp: Checkpoint) -> tuple[int, bytes] | None:
    """(entries, head) a checkpoint signs, or None when it has no retention line."""
    for ext in cp.extensions:
        key, _, value = ext.partition(" ")
        if key == LINE:
            count, _, digest = value.partition(" ")
            try:
                return int(count), bytes.fromhex(digest)
            except ValueError:
                return -1, b""
    return None


def read_tombstones(con, where: str = "", params: list | None = None) -> list[tuple[int, Tombstone]]:
    """(event_no, tombstone) rows, in seq order."""
    try:
        rows = con.execute(
            f"SELECT event_no, seq, leaf_hash, data_class, agent_id, epoch_ns(start_time) FROM {TOMBSTONES_TABLE}"
            f"{' WHERE ' + where if where else ''} ORDER BY seq", params or []).fetchall()
    except duckdb.CatalogException:
        return []
    return [(int(e), Tombstone(int(s), bytes(h), c, a, None if t is None else int(t))) for e, s, h, c, a, t in rows]


# --- verification --------------------------------------------------------------------------------


def check_retention(con, checkpoints: Sequence[tuple[int, Checkpoint | None]], report: VerificationReport) -> None:
    """The chain, what the checkpoints sealed of it, the tombstones each deletion made, and holds."""
    try:
        rows = con.sql(f"SELECT event_no, entry, entry_hash FROM {RETENTION_LOG_TABLE} ORDER BY event_no").fetchall()
    except duckdb.CatalogException:
        rows = []
    tombstones = read_tombstones(con)
    chain = _check_chain(rows, report)
    _check_sealed(checkpoints, chain, report)
    log = [json.loads(text) for _, text, _ in rows[: len(chain)]]
    _check_tombstones(log, tombstones, report)
    _check_leftover_records(con, report)


def _check_chain(rows, report) -> list[bytes]:
    """The recomputed head after each entry, up to the first broken one."""
    heads: list[bytes] = []
    previous = GENESIS
    for i, (event_no, text, stored) in enumerate(rows):
        if event_no != i:
            report.add(ERROR, "retention_log_numbering",
                       f"retention log entries are not numbered 0, 1, 2 …: found {event_no} at position {i} "
                       "(an entry was deleted or inserted)")
            break
        try:
            json.loads(text)
        except ValueError:
            report.add(ERROR, "retention_log_entry", f"retention log entry {i} is not JSON")
            break
        previous = chain_hash(previous, text)
        if previous != bytes(stored):
            report.add(ERROR, "retention_log_chain",
                       f"retention log entry {i} does not hash to its stored chain hash: it was edited")
            break
        heads.append(previous)
    return heads


def _check_sealed(checkpoints, chain: list[bytes], report) -> None:
    last_count, last_no = 0, None
    for seq_no, cp in checkpoints:
        if cp is None:
            continue
        got = sealed(cp)
        if got is None:
            if last_count:
                report.add(ERROR, "retention_line_missing",
                           f"checkpoint {seq_no} signs no retention log head although checkpoint {last_no} "
                           f"sealed {last_count} entries", checkpoint=seq_no)
            continue
        count, digest = got
        if count < last_count:
            report.add(ERROR, "retention_log_shrank",
                       f"checkpoint {seq_no} seals {count} retention log entries, fewer than the {last_count} "
                       f"checkpoint {last_no} sealed", checkpoint=seq_no)
        elif count > len(chain):
            report.add(ERROR, "retention_log_missing",
                       f"checkpoint {seq_no} sealed {count} retention log entries but only {len(chain)} are "
                       "intact in the store: entries were deleted or edited", checkpoint=seq_no)
        elif count and chain[count - 1] != digest:
            report.add(ERROR, "retention_log_mismatch",
                       f"the retention log's first {count} entries do not match what checkpoint {seq_no} "
                       "signed: an entry was edited, replaced or reordered", checkpoint=seq_no)
        last_count, last_no = max(count, last_count), seq_no
    if len(chain) > last_count:
        report.add(INFO, "retention_unsealed",
                   f"{len(chain) - last_count} retention log entries are not sealed by a checkpoint yet")


def _check_tombstones(log: list[dict[str, Any]], tombstones: list[tuple[int, Tombstone]], report) -> None:
    by_event: dict[int, list[Tombstone]] = {}
    for event_no, t in tombstones:
        by_event.setdefault(event_no, []).append(t)
    holds: dict[str, Hold] = {}
    for event_no, entry in enumerate(log):
        action = entry.get("action")
        if action == HOLD:
            holds[entry["case"]] = Hold.from_entry(entry)
        elif action == RELEASE:
            holds.pop(entry["case"], None)
        elif action == DELETE:
            made = by_event.pop(event_no, [])
            if len(made) != entry.get("count") or tombstones_digest(made) != entry.get("tombstones"):
                report.add(ERROR, "tombstones_mismatch",
                           f"retention deletion {event_no} recorded {entry.get('count')} tombstones but the store "
                           f"holds {len(made)} that do not match its digest: tombstones were added, removed or edited")
            for t in made:
                covering = [h.case for h in holds.values() if h.covers(t.agent_id, t.start_ns)]
                if covering:
                    report.add(ERROR, "deleted_under_hold",
                               f"seq {t.seq} was deleted by retention deletion {event_no} while legal hold "
                               f"{', '.join(sorted(covering))} covered it", seq=t.seq)
    for event_no, made in sorted(by_event.items()):
        report.add(ERROR, "tombstone_unlogged",
                   f"{len(made)} tombstone(s) (first seq {made[0].seq}) name retention log entry {event_no}, which "
                   "is not an intact deletion entry: payloads were deleted outside retention", seq=made[0].seq)


def _check_leftover_records(con, report) -> None:
    try:
        n = con.sql(f"SELECT count(*) FROM {TOMBSTONES_TABLE} t JOIN spans s USING (seq) "
                    "WHERE s.record IS NOT NULL").fetchall()[0][0]
    except duckdb.CatalogException:
        return
    if n:
        report.add(WARNING, "tombstone_with_record",
                   f"{n} tombstoned row(s) still hold their record: a deletion did not complete")
