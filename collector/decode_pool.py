"""Decoding in worker processes, so the receiver's threads and the DuckDB writer are not
serialized behind one interpreter lock.

Decoding and normalizing a span is pure-Python work; DuckDB's insert is native. In one process
they contend for the GIL and throughput halves; with decoding in a process pool, the receiving
process only moves bytes and Arrow tables. ``workers=0`` decodes inline (tests, tiny installs).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from govtrace.collector import decode
from govtrace.collector.errors import Overloaded
from govtrace.collector.normalize import Batch, normalize_request


def decode_batch(body: bytes, content_type: str, encoding: str | None, max_bytes: int,
                 principal: str | None, received_ns: int) -> Batch:
    raw = decode.decompress(body, encoding, max_bytes)
    request = decode.parse_json(raw) if content_type == "json" else decode.parse_protobuf(raw)
    return normalize_request(request, principal=principal, received_ns=received_ns)


class Decoder:
    def __init__(self, workers: int = 0):
        self.workers = workers
        self._pool = (
            ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) if workers > 0 else None
        )
        if self._pool is not None:
            # Start the workers now, not on the first request.
            list(self._pool.map(_warm, range(workers)))

    def __call__(self, body: bytes, content_type: str, encoding: str | None, max_bytes: int,
                 principal: str | None) -> Batch:
        received_ns = time.time_ns()
        if self._pool is None:
            return decode_batch(body, content_type, encoding, max_bytes, principal, received_ns)
        try:
            return self._pool.submit(
                decode_batch, body, content_type, encoding, max_bytes, principal, received_ns
            ).result()
        except BrokenProcessPool:
            raise Overloaded("a decode worker died; retry", retry_after_seconds=1.0) from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _warm(_: int) -> bool:
    return True
