"""The composition root: store, ingest service and both receivers, wired by hand in one place.

Start order is credentials and policy (so bad files fail before anything opens), store, decode
workers, then receivers; stop order is the reverse, so shutdown drains the queue and every
accepted request is stored before the file closes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from govtrace.collector.admission import (
    MemoryBudget,
    keep_large_allocations_returnable,
    resident_bytes,
)
from govtrace.collector.auth import Credentials, TokensFileError
from govtrace.collector.config import CollectorConfig, ConfigError, parse_bytes, split_address
from govtrace.collector.decode_pool import Decoder, PolicySettings
from govtrace.collector.ingest import IngestService
from govtrace.collector.otlp_grpc import GrpcReceiver
from govtrace.collector.otlp_http import HttpReceiver
from govtrace.collector.read_api import ReadService
from govtrace.collector.redaction import RedactionConfigError
from govtrace.collector.store import Store
from govtrace.collector.tls import grpc_credentials, http_context

log = logging.getLogger(__name__)

MIN_REQUEST_BUDGET = 64 * 1024 * 1024
HEADROOM = 0.10  # of memory_limit_bytes: allocator slack, gRPC transport buffers, read cursors
WORKER_WORKING_SET_CAP = 112 * 1024 * 1024
# Requests are refused while all the collector's processes are measured above the limit less this
# margin: what is already admitted still has to finish within it.
RSS_CEILING_MARGIN = 0.12


class Collector:
    def __init__(self, config: CollectorConfig):
        self.config = config
        self.store: Store | None = None
        self.grpc: GrpcReceiver | None = None
        self.http: HttpReceiver | None = None
        self.decoder: Decoder | None = None

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        config = self.config
        keep_large_allocations_returnable()
        credentials = _credentials(config)
        settings = PolicySettings(identity_mismatch=config.identity_mismatch, redact=config.redact,
                                  redact_patterns_file=config.redact_patterns_file,
                                  redact_keep_keys=config.redact_keep_keys, columnar=config.columnar_decode)
        try:
            settings.build()
        except RedactionConfigError as exc:
            raise ConfigError(str(exc)) from None
        ledger_migrations, hook_factory = _ledger_wiring(config)
        self.store = Store(
            config.db,
            max_queue_spans=config.max_queue_spans,
            max_batch_spans=config.max_batch_spans,
            memory_limit=config.duckdb_memory_limit,
            # Committed rows stay in DuckDB's memory until a checkpoint writes them compressed to
            # the file: half its limit bounds them (larger thresholds checkpoint less often).
            checkpoint_threshold=f"{parse_bytes(config.duckdb_memory_limit, 'duckdb_memory_limit') // 2}B",
            dedupe_window_spans=config.dedupe_window_spans,
            commit_linger_seconds=config.commit_linger_seconds,
            extra_migrations=ledger_migrations,
            hook_factory=hook_factory,
            journal=config.intake_journal,
            threads=config.duckdb_threads,
        )
        self.store.start()
        self.decoder = Decoder(config.decode_workers, settings)
        decoder = self.decoder
        resting = _own_rss(decoder)
        self.budget = MemoryBudget(
            _request_budget(config, resting), rss_ceiling_bytes=_rss_ceiling(config, resting),
            measure_rss=lambda: _own_rss(decoder))
        self.ingest = IngestService(
            self.store, max_body_bytes=config.max_body_bytes, ack_timeout_seconds=config.ack_timeout_seconds,
            decoder=self.decoder, budget=self.budget,
        )
        self.reads = ReadService(self.store, self.ingest.counters, budget=self.budget,
                                 enforce_roles=credentials is not None)
        self.grpc = GrpcReceiver(
            self.ingest, config.grpc, max_workers=config.grpc_workers, credentials=grpc_credentials(config),
            authenticate=credentials.identify_sender if credentials else None,
        )
        host, port = split_address(config.http)
        self.http = HttpReceiver(
            self.ingest, self.reads, host, port, ssl_context=http_context(config),
            authenticate=credentials.identify_sender if credentials else None,
            authenticate_reader=credentials.identify_reader if credentials else None,
        )
        self.grpc.start()
        self.http.start()

    def stop(self) -> None:
        if self.http:
            self.http.stop()
        if self.grpc:
            self.grpc.stop()
        if self.decoder:
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
        return f"{self.http.scheme}://{self.http.host}:{self.http.port}"


def _credentials(config: CollectorConfig) -> Credentials | None:
    if not config.auth_tokens_file:
        return None
    try:
        return Credentials.load(config.auth_tokens_file)
    except TokensFileError as exc:
        raise ConfigError(f"setting auth_tokens_file: {exc}") from None


def _request_budget(config: CollectorConfig, resting: int) -> int:
    """What ``memory_limit_bytes`` leaves for requests in flight once DuckDB's share, the
    processes' resting size (measured at start-up, decode workers included) and the decode
    workers' working set are set aside."""
    budget = (int(config.memory_limit_bytes * (1 - HEADROOM)) - parse_bytes(config.duckdb_memory_limit, "")
              - resting - config.decode_workers * worker_working_set(config.max_body_bytes))
    if budget < MIN_REQUEST_BUDGET:
        log.warning("memory_limit_bytes leaves %d MiB for requests (resting size %d MiB); using %d MiB",
                    budget // 2**20, resting // 2**20, MIN_REQUEST_BUDGET // 2**20)
        budget = MIN_REQUEST_BUDGET
    return budget


def _own_rss(decoder: Decoder) -> int:
    """This process and its decode workers (not other children of an embedding process)."""
    return resident_bytes([os.getpid(), *decoder.worker_pids()])


def _rss_ceiling(config: CollectorConfig, resting: int) -> int:
    """Above this measured size new requests are refused: the limit less a margin for what is
    already admitted, or, embedded in a process already large at start-up (a test runner, a
    notebook), half the limit above that size."""
    return max(int(config.memory_limit_bytes * (1 - RSS_CEILING_MARGIN)), resting + config.memory_limit_bytes // 2)


def worker_working_set(max_body_bytes: int) -> int:
    """What a decode worker grows by above its resting size under sustained load: a large request
    decodes to about 8x its body in Python objects and Arrow columns, and the allocators keep some
    of it between requests (measured: about 110 MiB with 4 MiB requests)."""
    return min(8 * max_body_bytes, WORKER_WORKING_SET_CAP)


def _ledger_wiring(config: CollectorConfig):
    """The tamper-evident ledger, when its module is present."""
    try:
        from govtrace.collector.ledger.wiring import ledger_for
    except ImportError:
        return None, None
    return ledger_for(config)
