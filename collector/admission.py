"""Admission control: a byte budget for everything the collector holds on behalf of requests.

A request reserves an estimate of the memory it will pin (body, decoded rows, the writer's copy)
before any of it is allocated, and gives it back once its spans are durable or refused. When the
budget is spent, new requests are turned away with a retryable ``Overloaded`` instead of queueing
without bound; the budget is what remains of ``memory_limit_bytes`` after DuckDB's own limit and
the processes' resting size (measured at start-up).

One request is always admitted when nothing else is held, so a body as large as
``max_body_bytes`` can never be refused forever on a small budget.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from govtrace.collector.errors import Overloaded

# Bytes held per body byte while a request is in flight: the body, its decoded Arrow rows (about
# 2.5x a protobuf body) and the writer's concatenated copy. Measured with loadgen requests.
PROTOBUF_EXPANSION = 5
JSON_EXPANSION = 2  # JSON bodies are about three times larger than protobuf for the same spans
COMPRESSED_EXPANSION = 5 * 8  # a gzip body inflates about 8x for OTLP; capped by max_body_bytes


class MemoryBudget:
    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self._used = 0
        self._peak = 0
        self._refused = 0
        self._lock = threading.Lock()

    def reserve(self, nbytes: int) -> Reservation:
        with self._lock:
            if self._used and self._used + nbytes > self.limit_bytes:
                self._refused += 1
                raise Overloaded(
                    f"collector memory budget in use ({self._used // 2**20} of {self.limit_bytes // 2**20} MiB); "
                    "retry later", retry_after_seconds=1.0,
                )
            self._used += nbytes
            self._peak = max(self._peak, self._used)
        return Reservation(self, nbytes)

    def _adjust(self, delta: int) -> None:
        with self._lock:
            self._used += delta
            self._peak = max(self._peak, self._used)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"budget_bytes": self.limit_bytes, "budget_used_bytes": self._used,
                    "budget_peak_bytes": self._peak, "budget_refusals": self._refused}


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


def process_tree_rss(pid: int | None = None) -> int:
    """Resident bytes of a process and its children (decode workers), from /proc; 0 elsewhere."""
    pid = pid or os.getpid()
    total = 0
    for member in [pid, *child_pids(pid)]:
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
