"""The one ``export()`` both receivers call: admit, decode, normalize, store, wait until durable.

Durable means in the intake journal when the store keeps one (the default), else committed.

Receivers know nothing about storage; they authenticate, hand bytes here and map the outcome to
their protocol. A request holds a reservation of the memory budget from before its body is
decoded until the store is done with its rows.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from govtrace.collector.admission import MemoryBudget, Reservation, estimate
from govtrace.collector.auth import Identity
from govtrace.collector.decode_pool import Decoder
from govtrace.collector.errors import BadRequest, Overloaded, PayloadTooLarge
from govtrace.collector.store import Store

log = logging.getLogger(__name__)

# How long a request may wait for the memory budget before it is refused as overloaded: about one
# commit, which is when queued rows give their memory back.
ADMISSION_WAIT_SECONDS = 0.25


@dataclass(frozen=True)
class ExportResult:
    accepted: int
    rejected: int
    message: str = ""
    duplicates: int = 0  # accepted spans already stored (client retries): acknowledged, not stored again


class IngestService:
    def __init__(self, store: Store, *, max_body_bytes: int = 16 * 1024 * 1024, ack_timeout_seconds: float = 30.0,
                 decoder: Decoder | None = None, budget: MemoryBudget | None = None):
        self.store = store
        self.decoder = decoder or Decoder(0)
        self.max_body_bytes = max_body_bytes
        self.ack_timeout_seconds = ack_timeout_seconds
        self.budget = budget or MemoryBudget(1 << 62)
        self._lock = threading.Lock()
        self.counters = {"requests": 0, "spans_accepted": 0, "spans_rejected": 0, "requests_rejected": 0,
                         "spans_duplicate": 0, "spans_identity_mismatch": 0, "spans_redacted": 0,
                         "requests_overloaded": 0, "requests_unauthenticated": 0, "spans_columnar": 0}

    def admit(self, body_bytes: int, content_type: str = "protobuf", encoding: str | None = None) -> Reservation:
        """Reserve memory for a request of ``body_bytes`` before reading or decoding it."""
        if body_bytes > self.max_body_bytes:
            self._count(requests_rejected=1)
            raise PayloadTooLarge(f"request of {body_bytes} bytes exceeds the maximum of {self.max_body_bytes}")
        try:
            return self.budget.reserve(estimate(body_bytes, content_type, encoding, self.max_body_bytes),
                                       wait_seconds=ADMISSION_WAIT_SECONDS)
        except Overloaded:
            self._count(requests_overloaded=1)
            raise

    def export(
        self, body: bytes, *, content_type: str = "protobuf", encoding: str | None = None,
        identity: Identity | None = None, reservation: Reservation | None = None,
    ) -> ExportResult:
        reservation = reservation or self.admit(len(body), content_type, encoding)
        handed_over = False
        try:
            try:
                batch = self.decoder(body, content_type, encoding, self.max_body_bytes, identity)
            except BadRequest as exc:
                self._count(requests_rejected=1)
                self.store.note_event("request_rejected", 1, str(exc)[:200])
                raise
            except (RecursionError, ValueError, TypeError, UnicodeError) as exc:
                self._count(requests_rejected=1)
                raise BadRequest(f"unacceptable OTLP request: {exc}") from None
            except Overloaded:
                raise
            except Exception as exc:  # never crash on bad data: refuse the request, keep serving
                log.exception("decoding a request failed unexpectedly")
                self._count(requests_rejected=1)
                raise BadRequest(f"request could not be decoded: {type(exc).__name__}") from None
            # The body until the ack, the rows until they are committed (the writer's concatenation of
            # queued tables is zero-copy).
            reservation.resize(len(body) + batch.table.nbytes)
            try:
                future = self.store.submit(batch.table, batch.ipc, leaf_hashes=batch.leaf_hashes)
            except Overloaded:
                self._count(requests_overloaded=1)
                raise
            future.add_done_callback(lambda _: reservation.release())
            future.add_done_callback(self._count_duplicates)
            handed_over = True
        finally:
            if not handed_over:
                reservation.release()
        duplicates = 0
        if self.store.journaled:
            # Durable already; with the writer more than a quarter batch behind, the ack waits for it
            # rather than letting senders pile up rows in memory until they are refused.
            self.store.wait_for_room(self.ack_timeout_seconds)
        else:  # durable only once committed: wait for the commit
            try:
                receipt = future.result(timeout=self.ack_timeout_seconds)
            except FutureTimeout:
                # Still queued: it may be stored later, and the retry is then recognised as a duplicate.
                self._count(requests_overloaded=1)
                raise Overloaded("store did not confirm durability in time; retry", retry_after_seconds=2.0) from None
            except Overloaded:
                self._count(requests_overloaded=1)
                raise
            duplicates = receipt.duplicates if receipt else 0
        self._count(requests=1, spans_accepted=batch.accepted, spans_rejected=batch.rejected,
                    spans_identity_mismatch=batch.mismatched, spans_redacted=batch.redacted,
                    spans_columnar=batch.columnar)
        if batch.rejected:
            self.store.note_event("spans_rejected", batch.rejected, "; ".join(batch.reasons))
        if batch.mismatched:
            principal = identity.principal if identity else None
            self.store.note_event("identity_mismatch", batch.mismatched, f"principal {principal}")
        message = "; ".join(batch.reasons) if batch.rejected else ""
        return ExportResult(accepted=batch.accepted, rejected=batch.rejected, message=message, duplicates=duplicates)

    def _count_duplicates(self, future) -> None:
        """Retried spans are recognised when the writer commits (after the ack, with the journal)."""
        if future.cancelled() or future.exception() is not None:
            return
        receipt = future.result()
        if receipt is not None and receipt.duplicates:
            self._count(spans_duplicate=receipt.duplicates)
            self.store.note_event("spans_duplicate", receipt.duplicates, "retried spans acknowledged, not stored again")

    def count_unauthenticated(self) -> None:
        self._count(requests_unauthenticated=1)

    def _count(self, **increments: int) -> None:
        with self._lock:
            for key, value in increments.items():
                self.counters[key] += value
