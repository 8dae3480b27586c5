"""The store: the one writer of the DuckDB file.

A single writer thread takes normalized batches from a bounded queue, gives them gap-free
sequence numbers, appends them in one Arrow insert per commit (group commit: many requests per
transaction), and only then resolves each request's future. A request is acknowledged after its
commit, and DuckDB syncs its WAL on commit, so an acknowledged span survives a crash.

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
import pyarrow as pa
from govtrace.collector.errors import Overloaded
from govtrace.collector.schema import Migration, migrate

log = logging.getLogger(__name__)


class AppendHook:
    """Called by the writer inside each insert transaction (the ledger implements this)."""

    def on_append(self, con: duckdb.DuckDBPyConnection, first_seq: int, records: list[str]) -> None: ...

    def on_idle(self, con: duckdb.DuckDBPyConnection, now: float) -> None: ...

    def on_rollback(self) -> None: ...

    def on_close(self) -> None: ...


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
        extra_migrations: list[Migration] | None = None,
        hook_factory: Callable[[duckdb.DuckDBPyConnection], AppendHook] | None = None,
    ):
        self.path = str(path)
        self.max_queue_spans = max_queue_spans
        self.max_batch_spans = max_batch_spans
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # A large checkpoint threshold: automatic checkpoints re-compress the row group being filled,
        # and at the default 16 MB they cost more than the inserts themselves (measured 5x). The WAL is
        # still synced on every commit, so durability does not depend on checkpoints.
        self._con = duckdb.connect(
            self.path, config={"memory_limit": memory_limit, "checkpoint_threshold": checkpoint_threshold}
        )
        migrate(self._con, extra_migrations)
        self._hook = hook_factory(self._con) if hook_factory else None
        self._next_seq = self._con.execute("SELECT coalesce(max(seq) + 1, 0) FROM spans").fetchall()[0][0]
        self._queue: deque[_Pending] = deque()
        self._queued_spans = 0
        self._cond = threading.Condition()
        self._closing = False
        self._writer = threading.Thread(target=self._run, name="govtrace-writer", daemon=True)
        self.stats = {"spans_stored": 0, "commits": 0, "overloaded": 0, "write_seconds": 0.0}

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
            self._con.execute("INSERT INTO ingest_events VALUES (now(), 'collector_stopped', 0, NULL)")
            self._con.execute("CHECKPOINT")
        finally:
            self._con.close()

    # --- writing ------------------------------------------------------------------------------
    def submit(self, table: pa.Table) -> Future:
        """Queue a batch; the future resolves to the first seq once the batch is durable."""
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
                batch = self._take_batch()
            if batch:
                self._write(batch)
            if self._hook is not None:
                self._idle()
        if self._hook is not None:
            self._idle()
            try:
                self._hook.on_close()
            except Exception:
                log.exception("final ledger seal failed")

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
        first_seq = self._next_seq
        seqs = pa.array(range(first_seq, first_seq + table.num_rows), type=pa.int64())
        table = table.set_column(table.schema.get_field_index("seq"), "seq", seqs)
        con = self._con
        began = time.perf_counter()
        try:
            con.execute("BEGIN")
            con.register("_incoming", table)
            con.execute("INSERT INTO spans SELECT * FROM _incoming")
            con.unregister("_incoming")
            if self._hook is not None:
                self._hook.on_append(con, first_seq, table.column("record").to_pylist())
            con.execute("COMMIT")
        except Exception as exc:  # the batch is not stored: tell every sender to retry
            log.exception("store write failed")
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            if self._hook is not None:
                self._hook.on_rollback()
            for item in batch:
                item.future.set_exception(Overloaded(f"store write failed: {exc}", retry_after_seconds=2.0))
            return
        self._next_seq += table.num_rows
        self.stats["write_seconds"] += time.perf_counter() - began
        self.stats["spans_stored"] += table.num_rows
        self.stats["commits"] += 1
        offset = first_seq
        for item in batch:
            item.future.set_result(offset)
            offset += item.table.num_rows

    def _idle(self) -> None:
        try:
            self._hook.on_idle(self._con, time.time())
        except Exception:
            log.exception("ledger seal failed; will retry")
