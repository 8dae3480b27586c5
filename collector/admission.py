"""Admission control: a byte budget for everything the collector holds on behalf of requests.

A request reserves an estimate of the memory it will pin (body, decoded rows, the writer's copy)
before any of it is allocated, and gives it back once its spans are durable or refused. When the
budget is spent, new requests are turned away with a retryable ``Overloaded`` instead of queueing
without bound; the budget is what remains of ``memory_limit_bytes`` after DuckDB's own limit and
the processes' resting size (measured at start-up).

The estimate is checked against reality: when a resident-size ceiling is given, the budget also
refuses while the collector's processes together are measured above it (sampled at most every
``RSS_SAMPLE_SECONDS``), so allocator slack or a mis-estimated body cannot carry the collector past
its limit for long.

One request is always admitted when nothing else is held, so a body as large as
``max_body_bytes`` can never be refused forever on a small budget.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from govtrace.collector.errors import Overloaded

# Bytes held per body byte while a request is in flight: the body, its decoded Arrow rows (about
# 2.5x a protobuf body) and the writer's concatenated copy. Measured with loadgen requests.
PROTOBUF_EXPANSION = 5
JSON_EXPANSION = 2  # JSON bodies are about three times larger than protobuf for the same spans
COMPRESSED_EXPANSION = 5 * 8  # a gzip body inflates about 8x for OTLP; capped by max_body_bytes


RSS_SAMPLE_SECONDS = 0.05


class MemoryBudget:
    def __init__(self, limit_bytes: int, *, rss_ceiling_bytes: int = 0,
                 measure_rss: Callable[[], int] | None = None):
        self.limit_bytes = limit_bytes
        self.rss_ceiling_bytes = rss_ceiling_bytes
        self._measure_rss = measure_rss
        self._rss = 0
        self._rss_at = 0.0
        self._used = 0
        self._peak = 0
        self._refused = 0
        self._refused_rss = 0
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    def reserve(self, nbytes: int, wait_seconds: float = 0.0) -> Reservation:
        """Hold ``nbytes`` for a request, or raise ``Overloaded``. With ``wait_seconds``, a full
        budget is waited on that long first: under steady load it fills and empties with every
        commit, and a sender held back for a moment loses far less than one told to come back
        in a second."""
        with self._lock:
            deadline = time.monotonic() + wait_seconds
            while self._used and self._used + nbytes > self.limit_bytes and (left := deadline - time.monotonic()) > 0:
                self._freed.wait(left)
            if self._used and self._used + nbytes > self.limit_bytes:
                self._refused += 1
                raise Overloaded(
                    f"collector memory budget in use ({self._used // 2**20} of {self.limit_bytes // 2**20} MiB); "
                    "retry later", retry_after_seconds=1.0,
                )
            if self._used and self._over_rss_ceiling():
                self._refused += 1
                self._refused_rss += 1
                raise Overloaded(
                    f"collector resident size {self._rss // 2**20} MiB is over its ceiling "
                    f"{self.rss_ceiling_bytes // 2**20} MiB; retry later", retry_after_seconds=1.0,
                )
            self._used += nbytes
            self._peak = max(self._peak, self._used)
        return Reservation(self, nbytes)

    def _over_rss_ceiling(self) -> bool:
        if not self.rss_ceiling_bytes or self._measure_rss is None:
            return False
        now = time.monotonic()
        if now - self._rss_at >= RSS_SAMPLE_SECONDS:
            self._rss, self._rss_at = self._measure_rss(), now
        return self._rss > self.rss_ceiling_bytes

    def _adjust(self, delta: int) -> None:
        with self._lock:
            self._used += delta
            self._peak = max(self._peak, self._used)
            if delta < 0:
                self._freed.notify_all()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"budget_bytes": self.limit_bytes, "budget_used_bytes": self._used,
                    "budget_peak_bytes": self._peak, "budget_refusals": self._refused,
                    "rss_ceiling_bytes": self.rss_ceiling_bytes, "rss_refusals": self._refused_rss,
                    "rss_last_sampled_bytes": self._rss}


class Reservation:
    """Bytes held for one request; ``release`` is idempotent."""

    def __init__(self, budget: MemoryBudget, nbytes: int):
        self._budget = budget
        self.nbytes = nbytes

    def resize(self, nbytes: int) -> None:
        """Replace the estimate with a measured size (may exceed the budget: the work is done)."""
        if self.nbytes:
            self._budget._adjust(nbytes - self.nbytes)
            self.nbytes = nbytes

    def release(self) -> None:
        if self.nbytes:
            self._budget._adjust(-self.nbytes)
            self.nbytes = 0


def estimate(body_bytes: int, content_type: str, encoding: str | None, max_body_bytes: int) -> int:
    if encoding and encoding.strip().lower() not in ("", "identity"):
        return min(body_bytes * COMPRESSED_EXPANSION, max_body_bytes * PROTOBUF_EXPANSION)
    return body_bytes * (JSON_EXPANSION if content_type == "json" else PROTOBUF_EXPANSION)


def resident_bytes(pids: list[int]) -> int:
    """Resident bytes of these processes together, from /proc; 0 elsewhere."""
    total = 0
    for member in pids:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return total


def child_pids(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            for child in map(int, text):
                found.append(child)
                found.extend(child_pids(child))
    except (OSError, ValueError):
        pass
    return found


def release_unused_memory() -> None:
    """Hand memory freed after a large request back to the operating system: Arrow's pool and
    glibc's heap both keep freed blocks for reuse, which would leave the resident size at its
    high-water mark after every burst."""
    pa.default_memory_pool().release_unused()
    if _libc is not None:
        _libc.malloc_trim(0)


def keep_large_allocations_returnable() -> None:
    """Have glibc serve every allocation over 256 KiB with its own mapping, returned to the system
    as soon as it is freed. By default glibc raises that threshold after the first large free, so
    the bodies and columns of one burst stay in the heap, resident, long after they are gone."""
    if _libc is not None and hasattr(_libc, "mallopt"):
        _libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)


_M_MMAP_THRESHOLD = -3


def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
        return libc
    except (OSError, AttributeError):
        return None


_libc = _load_libc()
