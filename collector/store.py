"""The store: the one writer of the DuckDB file.

A single writer thread takes normalized batches from a bounded queue, drops spans it has already
stored (client retries), gives the rest gap-free sequence numbers, appends them in one Arrow
insert per commit (group commit: many requests per transaction), and only then resolves each
request's future. A request is acknowledged after its commit, and DuckDB syncs its WAL on commit,
so an acknowledged span survives a crash.

Readers in the same process use cursors of the writer's database; no second process opens the
live file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from govtrace.collector.admission import release_unused_memory
from govtrace.collector.errors import Overloaded
from govtrace.collector.schema import SPAN_KEY_SQL, Migration, migrate

log = logging.getLogger(__name__)

LEDGER_SLICE_ROWS = 4096
RELEASE_AFTER_BYTES = 16 * 1024 * 1024  # after a commit this large, give freed memory back to the OS


class AppendHook:
    """Called by the writer inside each insert transaction (the ledger implements this)."""

    def on_append(self, con: duckdb.DuckDBPyConnection, first_seq: int, records: list[str]) -> None: ...

    def on_idle(self, con: duckdb.DuckDBPyConnection, now: float) -> None: ...

    def on_rollback(self) -> None: ...

    def on_close(self) -> None: ...


@dataclass(frozen=True)
class Receipt:
    """What the store did with one submitted batch."""

    stored: int
    duplicates: int  # rows already stored (or repeated within the batch): not stored again


@dataclass
class _Pending:
    table: pa.Table
    future: Future


class Store:
    """Owns the DuckDB file: migrations, the writer thread, in-process read cursors."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_queue_spans: int = 200_000,
        max_batch_spans: int = 32_768,
        memory_limit: str = "512MB",
        checkpoint_threshold: str = "256MB",
        dedupe_window_spans: int = 4_000_000,
        commit_linger_seconds: float = 0.0,
        extra_migrations: list[Migration] | None = None,
        hook_factory: Callable[[duckdb.DuckDBPyConnection], AppendHook] | None = None,
    ):
        self.path = str(path)
        self.max_queue_spans = max_queue_spans
        self.max_batch_spans = max_batch_spans
        self.dedupe_window_spans = dedupe_window_spans
        self.commit_linger_seconds = commit_linger_seconds
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # A large checkpoint threshold: automatic checkpoints re-compress the row group being filled,
        # and at the default 16 MB they cost more than the inserts themselves (measured 5x). The WAL is
        # still synced on every commit, so durability does not depend on checkpoints.
        # No file or network access from SQL: the read API runs readers' SELECTs on this database, and
        # read_text('/etc/...') or an http:// scan is a SELECT too.
        self._con = duckdb.connect(self.path, config={
            "memory_limit": memory_limit, "checkpoint_threshold": checkpoint_threshold,
            "enable_external_access": False,
        })
        migrate(self._con, extra_migrations)
        self._hook = hook_factory(self._con) if hook_factory else None
        self._next_seq = self._con.execute("SELECT coalesce(max(seq) + 1, 0) FROM spans").fetchall()[0][0]
        self._queue: deque[_Pending] = deque()
        self._queued_spans = 0
        self._cond = threading.Condition()
        self._closing = False
        self._events: dict[str, list] = {}  # event -> [count, detail], written by the writer thread
        self._events_lock = threading.Lock()
        self._writer = threading.Thread(target=self._run, name="govtrace-writer", daemon=True)
        self.stats = {"spans_stored": 0, "commits": 0, "overloaded": 0, "write_seconds": 0.0,
                      "dedupe_seconds": 0.0, "spans_duplicate": 0}

    # --- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Store:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        self._writer.start()
        self.record_ingest_event("collector_started", 0, self.path)

    def close(self) -> None:
        """Drain what was accepted, then close the file."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._writer.is_alive():
            self._writer.join()
        try:
            self._flush_events(self._con)
            self._con.execute("INSERT INTO ingest_events VALUES (now(), 'collector_stopped', 0, NULL)")
            self._con.execute("CHECKPOINT")
        finally:
            self._con.close()

    # --- writing ------------------------------------------------------------------------------
    def submit(self, table: pa.Table) -> Future:
        """Queue a batch; the future resolves to a ``Receipt`` once the batch is durable."""
        future: Future = Future()
        if table.num_rows == 0:
            future.set_result(None)
            return future
        with self._cond:
            if self._closing:
                raise Overloaded("collector is shutting down", retry_after_seconds=2.0)
            if self._queued_spans + table.num_rows > self.max_queue_spans and self._queue:
                self.stats["overloaded"] += 1
                raise Overloaded(
                    f"ingest queue full ({self._queued_spans} spans waiting); retry later", retry_after_seconds=1.0
                )
            self._queue.append(_Pending(table, future))
            self._queued_spans += table.num_rows
            self._cond.notify()
        return future

    def note_event(self, event: str, count: int, detail: str | None = None) -> None:
        """Count an ingest event (rejections, mismatches); written with the next commit, not one
        commit per request, so a flood of bad requests cannot slow the writer down."""
        with self._events_lock:
            entry = self._events.setdefault(event, [0, detail])
            entry[0] += count

    def record_ingest_event(self, event: str, count: int, detail: str | None = None) -> None:
        cursor = self._con.cursor()
        try:
            cursor.execute("INSERT INTO ingest_events VALUES (now(), ?, ?, ?)", [event, count, detail])
        finally:
            cursor.close()

    def record_access(self, principal: str | None, role: str | None, action: str, target: str, detail: str = "") -> None:
        cursor = self._con.cursor()
        try:
            cursor.execute(
                "INSERT INTO access_log VALUES (now(), ?, ?, ?, ?, ?)", [principal, role, action, target, detail]
            )
        finally:
            cursor.close()

    @property
    def queued_spans(self) -> int:
        return self._queued_spans

    # --- reading ------------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection to the live database for a reader thread of this process."""
        return self._con.cursor()

    # --- the writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    if not self._cond.wait(timeout=1.0):
                        break
                if not self._queue and self._closing:
                    break
                self._linger()
                batch = self._take_batch()
            if batch:
                self._write(batch)
            elif self._events:
                self._flush_events_alone()
            if self._hook is not None:
                self._idle()
        if self._hook is not None:
            self._idle()
            try:
                self._hook.on_close()
            except Exception:
                log.exception("final ledger seal failed")

    def _linger(self) -> None:
        """Let a small batch grow for a moment before committing it (called holding the lock).

        Every commit has fixed costs (the duplicate check, the WAL sync, the ledger's state row);
        with senders waiting for durable acks, batches stay small unless the writer waits a little
        for the requests being decoded. A few milliseconds of latency buy larger commits.
        """
        if not self.commit_linger_seconds:
            return
        deadline = time.monotonic() + self.commit_linger_seconds
        while (not self._closing and self._queued_spans < self.max_batch_spans // 4
               and (left := deadline - time.monotonic()) > 0):
            self._cond.wait(timeout=left)

    def _take_batch(self) -> list[_Pending]:
        batch, rows = [], 0
        while self._queue and (not batch or rows + self._queue[0].table.num_rows <= self.max_batch_spans):
            item = self._queue.popleft()
            batch.append(item)
            rows += item.table.num_rows
        self._queued_spans -= rows
        return batch

    def _write(self, batch: list[_Pending]) -> None:
        table = pa.concat_tables([item.table for item in batch])
        con = self._con
        began = time.perf_counter()
        events = self._take_events()
        try:
            con.execute("BEGIN")
            keep = self._new_rows(con, table)
            dedupe_done = time.perf_counter()
            if keep is not None:
                table = table.take(keep)
            first_seq = self._next_seq
            seqs = pa.array(range(first_seq, first_seq + table.num_rows), type=pa.int64())
            table = table.set_column(table.schema.get_field_index("seq"), "seq", seqs)
            if table.num_rows:
                con.register("_incoming", table)
                con.execute("INSERT INTO spans SELECT * FROM _incoming")
                if self.dedupe_window_spans:
                    con.execute(f"INSERT INTO span_keys SELECT seq, {SPAN_KEY_SQL} FROM _incoming")
                con.unregister("_incoming")
                if self._hook is not None:
                    # In slices: the records as Python strings cost several times their Arrow size.
                    records = table.column("record")
                    for start in range(0, table.num_rows, LEDGER_SLICE_ROWS):
                        self._hook.on_append(con, first_seq + start,
                                             records.slice(start, LEDGER_SLICE_ROWS).to_pylist())
            self._insert_events(con, events)
            con.execute("COMMIT")
        except Exception as exc:  # the batch is not stored: tell every sender to retry
            log.exception("store write failed")
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            if self._hook is not None:
                self._hook.on_rollback()
            self._return_events(events)
            for item in batch:
                item.future.set_exception(Overloaded(f"store write failed: {exc}", retry_after_seconds=2.0))
            return
        self._next_seq += table.num_rows
        duplicates = 0 if keep is None else sum(item.table.num_rows for item in batch) - len(keep)
        self.stats["write_seconds"] += time.perf_counter() - began
        self.stats["dedupe_seconds"] += dedupe_done - began
        self.stats["spans_stored"] += table.num_rows
        self.stats["spans_duplicate"] += duplicates
        self.stats["commits"] += 1
        large = table.nbytes >= RELEASE_AFTER_BYTES
        self._resolve(batch, keep)
        if large:
            del table, batch
            release_unused_memory()

    def _new_rows(self, con: duckdb.DuckDBPyConnection, table: pa.Table) -> np.ndarray | None:
        """Indices of rows to store: the first of each key, and only if not among the recent stored
        spans. None when every row is new (the common case) or deduplication is off.

        The key is a span's start time (high 64 bits) and a hash of (trace id, span id, principal):
        a retry repeats all of them. With the start time first, DuckDB's zone maps and the join's
        pushed-down min/max and Bloom filters skip stored keys of other times, so the check scans
        only spans that started about when these did, and never more than the window. The principal
        is part of the key so that one sender can never suppress another's span by sending its ids
        first.
        """
        if not self.dedupe_window_spans:
            return None
        keys = pa.table({
            "i": pa.array(np.arange(table.num_rows, dtype=np.int64)),
            "start_time": table.column("start_time"),
            "trace_id": table.column("trace_id"),
            "span_id": table.column("span_id"),
            "principal": table.column("principal"),
        })
        con.register("_keys", keys)
        try:
            # Rows to drop: already stored (an inner join, so the small incoming side is the one
            # hashed), or repeating an earlier row of this batch.
            drop = con.sql(
                f"""WITH incoming AS MATERIALIZED (SELECT i, {SPAN_KEY_SQL} AS key FROM _keys)
                    SELECT DISTINCT i FROM incoming
                        JOIN (SELECT key FROM span_keys WHERE seq >= $since) AS stored USING (key)
                    UNION
                    SELECT i FROM incoming QUALIFY row_number() OVER (PARTITION BY key ORDER BY i) > 1""",
                params={"since": self._next_seq - self.dedupe_window_spans},
            ).fetchnumpy()["i"]
        finally:
            con.unregister("_keys")
        if len(drop) == 0:
            return None
        keep = np.ones(table.num_rows, dtype=bool)
        keep[np.asarray(drop, dtype=np.int64)] = False
        return np.flatnonzero(keep)

    def _resolve(self, batch: list[_Pending], keep: np.ndarray | None) -> None:
        offset = 0
        for item in batch:
            rows = item.table.num_rows
            if keep is None:
                stored = rows
            else:
                stored = int(np.searchsorted(keep, offset + rows) - np.searchsorted(keep, offset))
            offset += rows
            item.future.set_result(Receipt(stored=stored, duplicates=rows - stored))

    # --- ingest events ------------------------------------------------------------------------
    def _take_events(self) -> list[tuple[str, int, str | None]]:
        with self._events_lock:
            events = [(event, count, detail) for event, (count, detail) in self._events.items()]
            self._events.clear()
        return events

    def _return_events(self, events: list[tuple[str, int, str | None]]) -> None:
        for event, count, detail in events:
            self.note_event(event, count, detail)

    @staticmethod
    def _insert_events(con: duckdb.DuckDBPyConnection, events: list[tuple[str, int, str | None]]) -> None:
        for event, count, detail in events:
            con.execute("INSERT INTO ingest_events VALUES (now(), ?, ?, ?)", [event, count, detail])

    def _flush_events(self, con: duckdb.DuckDBPyConnection) -> None:
        self._insert_events(con, self._take_events())

    def _flush_events_alone(self) -> None:
        events = self._take_events()
        try:
            self._insert_events(self._con, events)
        except duckdb.Error:
            log.exception("could not record ingest events; will retry")
            self._return_events(events)

    def _idle(self) -> None:
        try:
            self._hook.on_idle(self._con, time.time())
        except Exception:
            log.exception("ledger seal failed; will retry")
