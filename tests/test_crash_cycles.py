"""Twenty SIGKILLs under sustained load: every acknowledged span is stored exactly once.

Senders behave like an OTLP exporter with retries: a request that fails (the collector died
under it) is sent again, unchanged, until it is acknowledged. Some of those retries repeat spans the
dead collector had already committed but never acknowledged; deduplication on (start time, trace
id, span id, principal) must store them once. At the end every span ever sent has been
acknowledged, so the store must hold exactly that set, once each, with gap-free sequence numbers
and a ledger that verifies.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from govtrace.collector.loadgen import EXPORT_METHOD, FreshIds, build_request

CYCLES = 20
SENDERS = 4
SPANS_PER_REQUEST = 64


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Collector:
    """``govtrace serve`` on fixed ports, so senders reconnect to the same address after a restart."""

    def __init__(self, db: Path):
        self.db = db
        self.grpc_port, self.http_port = _free_port(), _free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "govtrace.collector.cli", "serve", "--db", str(self.db),
             "--grpc", f"127.0.0.1:{self.grpc_port}", "--http", f"127.0.0.1:{self.http_port}", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "GOVTRACE_DECODE_WORKERS": "0", "GOVTRACE_SEAL_EVERY_EVENTS": "2000"},
        )
        line = self.proc.stdout.readline()
        assert line, f"govtrace serve did not start: {self.proc.stderr.read()}"
        assert json.loads(line)["grpc"].endswith(str(self.grpc_port))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        assert self.proc.wait(timeout=120) == 0


class _Senders:
    def __init__(self, endpoint: str):
        self.channel = grpc.insecure_channel(endpoint)
        self.export = self.channel.unary_unary(EXPORT_METHOD, request_serializer=lambda b: b,
                                               response_deserializer=ExportTraceServiceResponse.FromString)
        self.acknowledged: list[str] = []
        self.retries = 0
        self.progress = threading.Condition()
        self.stopping = threading.Event()
        self.failures: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(SENDERS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def wait_for_more(self, spans: int) -> None:
        with self.progress:
            target = len(self.acknowledged) + spans
            assert self.progress.wait_for(lambda: len(self.acknowledged) >= target or self.failures, timeout=120), \
                "the collector stopped acknowledging"
        assert not self.failures, self.failures

    def finish(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(180)
        self.channel.close()
        assert not self.failures, self.failures

    def _run(self, n: int) -> None:
        try:
            template = FreshIds(build_request(SPANS_PER_REQUEST, seed=n))
            while not self.stopping.is_set():
                built = template.fresh()
                while True:  # until acknowledged: an exporter's retry loop, same bytes every time
                    try:
                        self.export(built.body, timeout=30, wait_for_ready=True)
                        break
                    except grpc.RpcError as exc:
                        if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                              grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN):
                            raise
                        with self.progress:
                            self.retries += 1
                with self.progress:
                    self.acknowledged.extend(built.span_ids)
                    self.progress.notify_all()
        except BaseException as exc:  # surfaced by the main thread
            with self.progress:
                self.failures.append(exc)
                self.progress.notify_all()


def test_twenty_sigkills_under_load_lose_no_acknowledged_span_and_store_none_twice(tmp_path):
    db = tmp_path / "cycles.duckdb"
    collector = _Collector(db)
    collector.start()
    senders = _Senders(f"127.0.0.1:{collector.grpc_port}")
    senders.start()
    rng = random.Random(8)
    for _ in range(CYCLES):
        senders.wait_for_more(rng.randrange(4, 40) * SPANS_PER_REQUEST)
        collector.kill()  # SIGKILL with requests in flight, at a different point each time
        collector.start()
    senders.wait_for_more(SPANS_PER_REQUEST)
    senders.finish()  # every sender's last request acknowledged
    collector.stop()

    con = duckdb.connect(str(db), read_only=True)
    total, distinct, seq_max = con.execute("SELECT count(*), count(DISTINCT span_id), max(seq) FROM spans").fetchall()[0]
    stored = {row[0] for row in con.execute("SELECT span_id FROM spans").fetchall()}
    recognised = con.execute("SELECT coalesce(sum(count), 0) FROM ingest_events WHERE event = 'spans_duplicate'"
                             ).fetchall()[0][0]
    con.close()
    acknowledged = set(senders.acknowledged)
    lost = acknowledged - stored
    figures = {"cycles": CYCLES, "acknowledged": len(acknowledged), "lost": len(lost),
               "duplicates": total - distinct, "client_retries": senders.retries,
               "retried_spans_recognised_as_stored": recognised}
    print(f"\ncrash cycles: {figures}")
    assert len(senders.acknowledged) == len(acknowledged), "the load generator sent a span twice by itself"
    assert lost == set(), f"{len(lost)} acknowledged spans lost"
    assert total == distinct, f"{total - distinct} spans stored twice"
    assert stored == acknowledged, "stored spans that were never sent"
    assert seq_max == total - 1, "sequence numbers have gaps"

    verify = subprocess.run([sys.executable, "-m", "govtrace.collector.cli", "verify-store", "--db", str(db), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
