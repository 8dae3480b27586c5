"""Decoding in worker processes, so the receiver's threads and the DuckDB writer are not
serialized behind one interpreter lock.

Decoding, normalizing and redacting a span is pure-Python work; DuckDB's insert is native. In one
process they contend for the GIL and throughput halves; with decoding in a process pool, the
receiving process only moves bytes and Arrow tables, through tmpfs files rather than the pool's
pipes (``handoff.py``). ``workers=0`` decodes inline (tests, tiny installs).

The ingest policy (identity-mismatch handling, redaction detectors) is built once per worker
from plain settings, so compiled patterns never cross a process boundary.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass

import pyarrow as pa

from govtrace.collector import columnar, decode, decode_worker, handoff
from govtrace.collector.admission import keep_large_allocations_returnable, release_unused_memory
from govtrace.collector.auth import Identity
from govtrace.collector.errors import Overloaded
from govtrace.collector.ledger.leaves import arrow_leaf_hashes
from govtrace.collector.normalize import Batch, IngestPolicy, normalize_request
from govtrace.collector.redaction import Redactor


@dataclass(frozen=True)
class PolicySettings:
    """The plain (picklable) settings an ``IngestPolicy`` is built from."""

    identity_mismatch: str = "flag"
    redact: str = ""
    redact_patterns_file: str = ""
    redact_keep_keys: str = ""
    columnar: bool = True

    def build(self) -> IngestPolicy:
        redactor = Redactor.from_settings(self.redact, self.redact_patterns_file, self.redact_keep_keys)
        return IngestPolicy(identity_mismatch=self.identity_mismatch, redactor=redactor, columnar=self.columnar)


_policy = IngestPolicy()  # this worker's policy, set by ``init_worker``


def decode_batch(body: bytes, content_type: str, encoding: str | None, max_bytes: int,
                 identity: Identity | None, received_ns: int, policy: IngestPolicy | None = None) -> Batch:
    batch = _normalize(body, content_type, encoding, max_bytes, identity, received_ns, policy)
    # The ledger's leaf hashes are computed here, in parallel, rather than by the one writer thread.
    batch.leaf_hashes = b"".join(b"".join(arrow_leaf_hashes(chunk)) for chunk in batch.table.column("record").chunks)
    return batch


def _normalize(body: bytes, content_type: str, encoding: str | None, max_bytes: int,
               identity: Identity | None, received_ns: int, policy: IngestPolicy | None) -> Batch:
    raw = decode.decompress(body, encoding, max_bytes)
    policy = policy or _policy
    if content_type == "json":
        return normalize_request(decode.parse_json(raw), identity=identity, policy=policy, received_ns=received_ns)
    if policy.columnar:
        batch = columnar.normalize_protobuf(raw, identity=identity, policy=policy, received_ns=received_ns)
        if batch is not None:
            return batch
    salvaged = decode.parse_protobuf_salvaging(raw)
    batch = normalize_request(salvaged.request, identity=identity, policy=policy, received_ns=received_ns)
    batch.rejected += salvaged.rejected
    batch.reasons[:0] = salvaged.reasons
    return batch


class Decoder:
    def __init__(self, workers: int = 0, settings: PolicySettings | None = None):
        self.workers = workers
        settings = settings or PolicySettings()
        self.policy = settings.build()  # also validates the settings before any worker starts
        self.settings = settings
        self._lock = threading.Lock()
        self._handoff = handoff.Handoff() if workers > 0 else None
        self._pool = self._start_pool() if workers > 0 else None

    def worker_pids(self) -> list[int]:
        pool = self._pool
        return list(getattr(pool, "_processes", None) or ()) if pool is not None else []

    def __call__(self, body: bytes, content_type: str, encoding: str | None, max_bytes: int,
                 identity: Identity | None = None) -> Batch:
        received_ns = time.time_ns()
        if self._pool is None:
            return decode_batch(body, content_type, encoding, max_bytes, identity, received_ns, self.policy)
        pool = self._pool
        body_path, table_path = self._handoff.path("body"), self._handoff.path("table")
        try:
            handoff.write_bytes(body_path, body)
            sent: bytes | str = body_path
        except OSError:  # tmpfs full (a small /dev/shm in a container): the pool's pipe still works
            handoff.unlink(body_path)
            sent = body
        try:
            batch = pool.submit(_decode_in_worker, sent, table_path, content_type, encoding, max_bytes,
                                identity, received_ns).result()
        except BrokenProcessPool:
            # A worker died (killed, out of memory): every request it held fails retryably, and a
            # fresh pool takes over so that the collector heals instead of refusing forever.
            self._replace(pool)
            raise Overloaded("a decode worker died; retry", retry_after_seconds=1.0) from None
        finally:
            handoff.unlink(body_path)  # the worker removes it; not when it failed first
        if batch.table is None:  # handed over as a file, not through the pipe
            batch.table, batch.ipc = handoff.take_table(table_path)
        return batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._handoff is not None:
            self._handoff.close()

    def _start_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                   initializer=decode_worker.start, initargs=(asdict(self.settings),))
        list(pool.map(_warm, range(self.workers)))  # start the workers now, not on the first request
        return pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = self._start_pool()
                broken.shutdown(wait=False, cancel_futures=True)


_LARGE_BODY = 1024 * 1024
_last_body_bytes = 0


def _decode_in_worker(body: bytes | str, table_path: str, content_type: str, encoding: str | None, max_bytes: int,
                      identity: Identity | None, received_ns: int) -> Batch:
    """Decode ``body`` (or the body handed over in the file it names); the rows go back in
    ``table_path``, the rest of the batch (counts, reasons) through the pool. Where tmpfs is full,
    the rows go back through the pool too."""
    # What the last large request left in the allocators goes back first, so a worker's peak is
    # one request's worth, not the largest request it ever decoded plus the next.
    global _last_body_bytes
    if _last_body_bytes >= _LARGE_BODY:
        release_unused_memory()
    if isinstance(body, str):
        body = handoff.take_bytes(body)
    _last_body_bytes = len(body)
    batch = decode_batch(body, content_type, encoding, max_bytes, identity, received_ns)
    try:
        handoff.write_table(table_path, batch.table)
    except OSError:
        handoff.unlink(table_path)
        return batch
    batch.table = None
    return batch


def init_worker(settings: PolicySettings) -> None:
    """Set a decode worker up (called by ``decode_worker.start``)."""
    global _policy
    _policy = settings.build()
    # The columnar path allocates and frees a request's Arrow columns many times a second; glibc
    # (with large blocks mapped on their own, below) returns them at once, where Arrow's default
    # pool keeps its high-water mark resident in every worker.
    pa.set_memory_pool(pa.system_memory_pool())
    keep_large_allocations_returnable()
    _exit_with_parent()


def _exit_with_parent() -> None:
    """A collector killed with SIGKILL cannot shut its pool down; its workers must not linger
    (each holds tens of MB). Linux kills them with the parent (PR_SET_PDEATHSIG); elsewhere, and
    as a backstop, a thread notices the parent is gone."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="govtrace-parent-watch", daemon=True).start()


def _warm(_: int) -> bool:
    return True
