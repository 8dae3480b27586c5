"""The store: the one writer of the DuckDB file.

A single writer thread takes normalized batches from a bounded queue, drops spans it has already
stored (client retries), gives the rest gap-free sequence numbers, appends them in one Arrow
insert per commit (group commit: many requests per transaction), and then resolves each request's
future.

Durability comes first either way. With the intake journal (the default for a database file),
``submit`` appends the batch to the journal and syncs it before returning, so the request can be
acknowledged at once and the writer is free to commit large batches; the journal frames not yet
committed are inserted at the next start (``collector/journal.py``). Without it (an in-memory
database, or ``intake_journal`` off), a request is acknowledged after its commit, and DuckDB syncs
its WAL on commit.

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
from govtrace.collector.journal import IntakeJournal, JournalError, journal_path
from govtrace.collector.ledger.leaves import arrow_leaf_hashes
from govtrace.collector.schema import SPAN_KEY_SQL, Migration, migrate

log = logging.getLogger(__name__)

LEDGER_SLICE_ROWS = 4096
RELEASE_AFTER_BYTES = 16 * 1024 * 1024  # after a commit this large, give freed memory back to the OS
READ_WAIT_SECONDS = 2.0  # how long a new reader waits for acknowledged rows to be committed
RETRY_WRITE_AFTER_SECONDS = 1.0  # a failed commit of journaled (acknowledged) rows is retried after this
# Rows per DuckDB row group in the file the store writes. A commit of at least this many rows is
# written by DuckDB straight to the file, compressed once, with only a pointer in its WAL; smaller
# commits are copied into the WAL and compressed again at the next checkpoint. DuckDB's default
# (122,880 rows) is far above the store's commits (a few thousand rows), and writing every span
# twice cost the writer thread half its time (docs/configuration.md, "Sizing").
ROW_GROUP_ROWS = 4096
CATALOG = "govtrace"  # the name the store's file is attached under


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
    frame: int = 0  # its intake journal frame (0: not journaled)
    queued: bool = False  # came through the queue (not a replay at start)
    leaf_hashes: bytes = b""  # the ledger's leaf hashes of its records, if the decoder computed them


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
        journal: bool = True,
        threads: int = 0,
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
        self._con = _connect(self.path, {
            "memory_limit": memory_limit, "checkpoint_threshold": checkpoint_threshold,
            **({"threads": threads} if threads else {}),
        })
        migrate(self._con, extra_migrations)
        self._hook = hook_factory(self._con) if hook_factory else None
        self._next_seq = self._con.execute("SELECT coalesce(max(seq) + 1, 0) FROM spans").fetchall()[0][0]
        self._journal = IntakeJournal(journal_path(self.path)) if journal and self.path != ":memory:" else None
        self._last_frame = self._con.execute("SELECT last_frame FROM intake_journal").fetchall()[0][0]
        self._queue: deque[_Pending] = deque()
        self._queued_spans = 0
        self._enqueued = self._finished = 0  # batches queued and batches committed or failed, ever
        self._cond = threading.Condition()
        self._closing = False
        self._events: dict[str, list] = {}  # event -> [count, detail], written by the writer thread
        self._events_lock = threading.Lock()
        self._writer = threading.Thread(target=self._run, name="govtrace-writer", daemon=True)
        self.stats = {"spans_stored": 0, "commits": 0, "overloaded": 0, "write_seconds": 0.0,
                      "dedupe_seconds": 0.0, "spans_duplicate": 0, "write_failures": 0, "spans_replayed": 0,
                      "acks_held_back": 0}

    def journal_stats(self) -> dict[str, int]:
        """Frames and bytes journaled, syncs, frames replayed at start, bytes of a torn tail cut off."""
        return dict(self._journal.stats) if self._journal is not None else {}

    @property
    def journaled(self) -> bool:
        """Whether ``submit`` returns only once the batch is durable (in the intake journal)."""
        return self._journal is not None

    # --- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Store:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        if self._journal is not None:
            try:
                self._replay_journal()
            except Exception as exc:
                raise JournalError(f"could not store the acknowledged spans left in {self._journal.directory} "
                                   f"(after frame {self._last_frame}): {exc}; they are kept there for the "
                                   "next start") from exc
            self._journal.start()
        self._writer.start()
        self.record_ingest_event("collector_started", 0, self.path)

    def _replay_journal(self) -> None:
        """Insert the journal frames a previous run acknowledged but did not commit, before serving."""
        batch: list[_Pending] = []
        rows = 0
        for frame in self._journal.frames_after(self._last_frame):
            batch.append(_Pending(frame.table, Future(), frame.id))
            rows += frame.table.num_rows
            if rows >= self.max_batch_spans:
                self._write_or_raise(batch)
                batch, rows = [], 0
        if batch:
            self._write_or_raise(batch)
        replayed = self.stats["spans_replayed"]
        if replayed:
            log.warning("inserted %d spans from the intake journal that the last run had not committed", replayed)
            self.record_ingest_event("journal_replayed", replayed, "acknowledged before a crash, stored at start")
        self._journal.release_through(self._last_frame)

    def _write_or_raise(self, batch: list[_Pending]) -> None:
        stored = self.stats["spans_stored"]
        self._write(batch)
        for item in batch:
            item.future.result()  # raises what the write raised: a store that cannot replay must not serve
        self.stats["spans_replayed"] += self.stats["spans_stored"] - stored

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
            if self._journal is not None:
                self._journal.close(self._last_frame if not self._queue else None)

    # --- writing ------------------------------------------------------------------------------
    def submit(self, table: pa.Table, ipc: pa.Buffer | None = None, leaf_hashes: bytes = b"") -> Future:
        """Queue a batch; the future resolves to a ``Receipt`` once the batch is committed.

        With the intake journal, the batch is durable when this returns (``journaled``); raises
        ``Overloaded`` when the queue is full or the journal cannot be written. ``ipc``: the table
        as an Arrow IPC stream if the caller has it (the journal then writes it as it is);
        ``leaf_hashes``: the ledger's leaf hash of each row's record (32 bytes each), if computed.
        """
        future: Future = Future()
        if table.num_rows == 0:
            future.set_result(None)
            return future
        with self._cond:
            self._check_room(table.num_rows)
            if self._journal is None:
                self._enqueue(_Pending(table, future, leaf_hashes=leaf_hashes))
                return future
        pending = _Pending(table, future, leaf_hashes=leaf_hashes)

        def enqueue(frame: int) -> None:
            pending.frame = frame
            with self._cond:
                self._enqueue(pending)

        try:
            self._journal.append(table, enqueue, ipc)
        except JournalError as exc:
            log.error("%s", exc)
            # If the frame was queued, the writer may still store it; the sender's retry is then a duplicate.
            raise Overloaded(f"could not make the batch durable: {exc}", retry_after_seconds=2.0) from None
        return future

    def _check_room(self, rows: int) -> None:
        if self._closing:
            raise Overloaded("collector is shutting down", retry_after_seconds=2.0)
        if self._queued_spans + rows > self.max_queue_spans and self._queue:
            self.stats["overloaded"] += 1
            raise Overloaded(
                f"ingest queue full ({self._queued_spans} spans waiting); retry later", retry_after_seconds=1.0
            )

    def wait_for_room(self, timeout: float) -> None:
        """Flow control for journaled batches: wait (at most ``timeout``) while more than a quarter of
        a batch (``max_batch_spans``) is already waiting for the writer. Durable senders are
        acknowledged a little later instead of being refused, so queued rows, which hold memory
        until written, stay few."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._queued_spans > self.max_batch_spans // 4:
                self.stats["acks_held_back"] += 1
            while self._queued_spans > self.max_batch_spans // 4 and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def wait_committed(self, timeout: float = 30.0) -> None:
        """Block until every batch submitted before this call is committed (or failed): what an
        in-process reader calls to read its own writes. Raises ``TimeoutError`` past ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._enqueued
            while self._finished < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{target - self._finished} batches still waiting for the writer")
                self._cond.wait(left)

    def _enqueue(self, pending: _Pending) -> None:  # holding self._cond
        self._enqueued += 1
        pending.queued = True
        self._queue.append(pending)
        self._queued_spans += pending.table.num_rows
        self._cond.notify()

    def note_event(self, event: str, count: int, detail: str | None = None) -> None:
        """Count an ingest event (rejections, mismatches); written with the next commit, not one
        commit per request, so a flood of bad requests cannot slow the writer down."""
        with self._events_lock:
            entry = self._events.setdefault(event, [0, detail])
            entry[0] += count

    def record_ingest_event(self, event: str, count: int, detail: str | None = None) -> None:
        cursor = self._cursor()
        try:
            cursor.execute("INSERT INTO ingest_events VALUES (now(), ?, ?, ?)", [event, count, detail])
        finally:
            cursor.close()

    def record_access(self, principal: str | None, role: str | None, action: str, target: str, detail: str = "") -> None:
        cursor = self._cursor()
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
        """A connection to the live database for a reader thread of this process.

        Read-your-acknowledged-writes: it first waits (at most ``READ_WAIT_SECONDS``) until every
        batch acknowledged before the call is committed, so a reader that was told its spans are
        stored finds them. Under a long write backlog it reads what is committed.
        """
        try:
            self.wait_committed(READ_WAIT_SECONDS)
        except TimeoutError:
            pass
        return self._cursor()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self._con.cursor()
        if self.path != ":memory:":
            cursor.execute(f"USE {CATALOG}")  # a new cursor starts in the in-memory catalog
        return cursor

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
                    self._cond.notify_all()  # senders held back by ``wait_for_room``
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
                    self._append_to_ledger(con, batch, keep, table, first_seq)
            self._insert_events(con, events)
            last_frame = max(item.frame for item in batch)
            if last_frame:
                con.execute("UPDATE intake_journal SET last_frame = ?", [last_frame])
            con.execute("COMMIT")
        except Exception as exc:
            log.exception("store write failed")
            self.stats["write_failures"] += 1
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            if self._hook is not None:
                self._hook.on_rollback()
            self._return_events(events)
            if self._journal is not None and self._writer.is_alive() and not self._closing:
                # Acknowledged already (journaled): keep the batch at the head of the queue and retry.
                # (When closing, the journal keeps it for the next start instead.)
                self._requeue(batch)
                return
            # Without the journal nothing was acknowledged yet: every sender is told to retry. (Closing
            # with the journal: the rows stay in it for the next start; this only ends the futures.)
            for item in batch:
                item.future.set_exception(Overloaded(f"store write failed: {exc}", retry_after_seconds=2.0))
            self._note_finished(batch)
            return
        self._next_seq += table.num_rows
        if last_frame:
            self._last_frame = last_frame
            self._journal.release_through(last_frame)
        duplicates = 0 if keep is None else sum(item.table.num_rows for item in batch) - len(keep)
        self.stats["write_seconds"] += time.perf_counter() - began
        self.stats["dedupe_seconds"] += dedupe_done - began
        self.stats["spans_stored"] += table.num_rows
        self.stats["spans_duplicate"] += duplicates
        self.stats["commits"] += 1
        large = table.nbytes >= RELEASE_AFTER_BYTES
        self._resolve(batch, keep)
        self._note_finished(batch)
        if large:
            del table, batch
            release_unused_memory()

    def _append_to_ledger(self, con: duckdb.DuckDBPyConnection, batch: list[_Pending], keep: np.ndarray | None,
                          table: pa.Table, first_seq: int) -> None:
        append_hashes = getattr(self._hook, "on_append_hashes", None)
        if append_hashes is not None:
            append_hashes(con, first_seq, self._leaf_hashes(batch, keep, table))
            return
        # In slices: the records as Python strings cost several times their Arrow size.
        records = table.column("record")
        for start in range(0, table.num_rows, LEDGER_SLICE_ROWS):
            self._hook.on_append(con, first_seq + start, records.slice(start, LEDGER_SLICE_ROWS).to_pylist())

    @staticmethod
    def _leaf_hashes(batch: list[_Pending], keep: np.ndarray | None, table: pa.Table) -> list[bytes]:
        """The leaf hashes of the rows being stored: the decoders' when every batch has them (spot-
        checked against the records), else computed here (journal replays)."""
        records = table.column("record")
        if all(len(item.leaf_hashes) == 32 * item.table.num_rows for item in batch):
            joined = b"".join(item.leaf_hashes for item in batch)
            hashes = [joined[i:i + 32] for i in range(0, len(joined), 32)]
            if keep is not None:
                hashes = [hashes[i] for i in keep]
            ends = records.slice(0, 1), records.slice(len(records) - 1, 1)
            if [arrow_leaf_hashes(end.combine_chunks())[0] for end in ends] == [hashes[0], hashes[-1]]:
                return hashes
            log.error("leaf hashes from the decoders do not match their records; computing them here")
        return [h for chunk in records.chunks for h in arrow_leaf_hashes(chunk)]

    def _note_finished(self, batch: list[_Pending]) -> None:
        with self._cond:
            self._finished += sum(1 for item in batch if item.queued)
            self._cond.notify_all()

    def _requeue(self, batch: list[_Pending]) -> None:
        with self._cond:
            self._queue.extendleft(reversed(batch))
            self._queued_spans += sum(item.table.num_rows for item in batch)
        time.sleep(RETRY_WRITE_AFTER_SECONDS)

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


def _connect(path: str, config: dict[str, Any]) -> duckdb.DuckDBPyConnection:
    """The writer's connection: the file attached with small row groups (``ROW_GROUP_ROWS``), then
    no file or network access from SQL. The read API runs readers' SELECTs on this database, and
    read_text('/etc/...') or an http:// scan is a SELECT too."""
    if path == ":memory:":
        return duckdb.connect(path, config={**config, "enable_external_access": False})
    con = duckdb.connect(":memory:", config=config)
    try:
        quoted = path.replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS {CATALOG} (ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        con.execute(f"USE {CATALOG}")
        con.execute("SET enable_external_access = false")
    except BaseException:
        con.close()
        raise
    return con
