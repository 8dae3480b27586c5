"""The composition root: store, ingest service and both receivers, wired by hand in one place.

Start order is store, then receivers; stop order is the reverse, so shutdown drains the queue and
every accepted request is stored before the file closes.
"""

from __future__ import annotations

import logging
from typing import Any

from govtrace.collector.config import CollectorConfig, split_address
from govtrace.collector.decode_pool import Decoder
from govtrace.collector.ingest import IngestService
from govtrace.collector.otlp_grpc import GrpcReceiver
from govtrace.collector.otlp_http import HttpReceiver
from govtrace.collector.read_api import ReadService
from govtrace.collector.store import Store

log = logging.getLogger(__name__)


class Collector:
    def __init__(self, config: CollectorConfig):
        self.config = config
        self.store: Store | None = None
        self.grpc: GrpcReceiver | None = None
        self.http: HttpReceiver | None = None

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        config = self.config
        ledger_migrations, hook_factory = _ledger_wiring(config)
        self.store = Store(
            config.db,
            max_queue_spans=config.max_queue_spans,
            max_batch_spans=config.max_batch_spans,
            memory_limit=config.duckdb_memory_limit,
            extra_migrations=ledger_migrations,
            hook_factory=hook_factory,
        )
        self.store.start()
        self.decoder = Decoder(config.decode_workers)
        self.ingest = IngestService(
            self.store, max_body_bytes=config.max_body_bytes, ack_timeout_seconds=config.ack_timeout_seconds,
            decoder=self.decoder,
        )
        self.reads = ReadService(self.store, self.ingest.counters)
        self.grpc = GrpcReceiver(self.ingest, config.grpc, max_workers=config.grpc_workers)
        host, port = split_address(config.http)
        self.http = HttpReceiver(self.ingest, self.reads, host, port)
        self.grpc.start()
        self.http.start()

    def stop(self) -> None:
        if self.http:
            self.http.stop()
        if self.grpc:
            self.grpc.stop()
        if getattr(self, "decoder", None):
            self.decoder.close()
        if self.store:
            self.store.close()

    @property
    def grpc_endpoint(self) -> str:
        assert self.grpc is not None
        return f"{self.grpc.host}:{self.grpc.port}"

    @property
    def http_url(self) -> str:
        assert self.http is not None
        return f"http://{self.http.host}:{self.http.port}"


def _ledger_wiring(config: CollectorConfig):
    """The tamper-evident ledger, when its module is present."""
    try:
        from govtrace.collector.ledger.wiring import ledger_for
    except ImportError:
        return None, None
    return ledger_for(config)
