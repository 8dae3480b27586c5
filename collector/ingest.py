"""The one ``export()`` both receivers call: decode, normalize, store, wait until durable.

Receivers know nothing about storage; they hand bytes here and map the outcome to their protocol.
"""

from __future__ import annotations

import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from govtrace.collector.decode_pool import Decoder
from govtrace.collector.errors import BadRequest, Overloaded, PayloadTooLarge
from govtrace.collector.store import Store


@dataclass(frozen=True)
class ExportResult:
    accepted: int
    rejected: int
    message: str = ""


class IngestService:
    def __init__(self, store: Store, *, max_body_bytes: int = 16 * 1024 * 1024, ack_timeout_seconds: float = 30.0,
                 decoder: Decoder | None = None):
        self.store = store
        self.decoder = decoder or Decoder(0)
        self.max_body_bytes = max_body_bytes
        self.ack_timeout_seconds = ack_timeout_seconds
        self._lock = threading.Lock()
        self.counters = {"requests": 0, "spans_accepted": 0, "spans_rejected": 0, "requests_rejected": 0}

    def export(
        self, body: bytes, *, content_type: str = "protobuf", encoding: str | None = None, principal: str | None = None
    ) -> ExportResult:
        try:
            if len(body) > self.max_body_bytes:
                raise PayloadTooLarge(f"request of {len(body)} bytes exceeds the maximum of {self.max_body_bytes}")
            batch = self.decoder(body, content_type, encoding, self.max_body_bytes, principal)
        except BadRequest:
            self._count(requests_rejected=1)
            raise
        except (RecursionError, ValueError, TypeError, UnicodeError) as exc:
            self._count(requests_rejected=1)
            raise BadRequest(f"unacceptable OTLP request: {exc}") from None
        future = self.store.submit(batch.table)
        try:
            future.result(timeout=self.ack_timeout_seconds)
        except FutureTimeout:
            raise Overloaded("store did not confirm durability in time; retry", retry_after_seconds=2.0) from None
        self._count(requests=1, spans_accepted=batch.accepted, spans_rejected=batch.rejected)
        if batch.rejected:
            self.store.record_ingest_event("spans_rejected", batch.rejected, "; ".join(batch.reasons))
        message = "; ".join(batch.reasons) if batch.rejected else ""
        return ExportResult(accepted=batch.accepted, rejected=batch.rejected, message=message)

    def _count(self, **increments: int) -> None:
        with self._lock:
            for key, value in increments.items():
                self.counters[key] += value
