"""Beyond capacity the receivers answer with retryable statuses, the queue and the memory held for
requests are bounded, and a real collector under a load it cannot absorb stays under its memory
limit while storing everything it acknowledged."""

from __future__ import annotations

import http.client
import threading
import time

import duckdb
import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from govtrace.collector.admission import MemoryBudget
from govtrace.collector.bench_ingest import run_overload_bench
from govtrace.collector.config import load_config
from govtrace.collector.decode_pool import Decoder
from govtrace.collector.errors import Overloaded
from govtrace.collector.ingest import IngestService
from govtrace.collector.loadgen import EXPORT_METHOD, build_request
from govtrace.collector.otlp_grpc import GrpcReceiver
from govtrace.collector.otlp_http import HttpReceiver
from govtrace.collector.read_api import ReadService
from govtrace.collector.server import Collector
from govtrace.collector.store import AppendHook, Store


class _Gate(AppendHook):
    """Holds the writer inside its first commit until opened: requests stay in flight."""

    def __init__(self):
        self.entered = threading.Event()
        self.opened = threading.Event()

    def on_append(self, con, first_seq, records) -> None:
        self.entered.set()
        assert self.opened.wait(60), "the test never opened the gate"


class _Pipeline:
    def __init__(self, tmp_path, *, budget_bytes: int, max_queue_spans: int = 200_000):
        self.gate = _Gate()
        self.store = Store(tmp_path / "overload.duckdb", max_queue_spans=max_queue_spans,
                           max_batch_spans=min(max_queue_spans, 32_768), hook_factory=lambda con: self.gate)
        self.store.start()
        self.ingest = IngestService(self.store, decoder=Decoder(0), budget=MemoryBudget(budget_bytes))
        self.grpc = GrpcReceiver(self.ingest, "127.0.0.1:0", max_workers=8)
        self.http = HttpReceiver(self.ingest, ReadService(self.store), "127.0.0.1", 0)
        self.grpc.start()
        self.http.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc.port}")
        self.export = self.channel.unary_unary(EXPORT_METHOD, request_serializer=lambda b: b,
                                               response_deserializer=ExportTraceServiceResponse.FromString)

    def send_in_background(self, body: bytes) -> threading.Thread:
        thread = threading.Thread(target=self.export, args=(body,), kwargs={"timeout": 60})
        thread.start()
        return thread

    def stored(self) -> int:
        cursor = self.store.cursor()
        try:
            return cursor.execute("SELECT count(*) FROM spans").fetchall()[0][0]
        finally:
            cursor.close()

    def close(self) -> None:
        self.gate.opened.set()
        self.channel.close()
        self.http.stop()
        self.grpc.stop()
        self.store.close()


@pytest.fixture
def pipeline(tmp_path):
    made = []

    def make(**kwargs) -> _Pipeline:
        made.append(_Pipeline(tmp_path, **kwargs))
        return made[-1]

    yield make
    for item in made:
        item.close()


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)


def test_when_the_memory_budget_is_spent_grpc_says_unavailable_with_retry_info(pipeline):
    p = pipeline(budget_bytes=1)  # the first request is always admitted; nothing else fits beside it
    first = p.send_in_background(build_request(64, seed=1).body)
    assert p.gate.entered.wait(30)
    with pytest.raises(grpc.RpcError) as refused:
        p.export(build_request(64, seed=2).body, timeout=30)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    trailers = dict(refused.value.trailing_metadata())
    retry = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert retry.retry_delay.seconds >= 1 and trailers["retry-after"] == "1"
    p.gate.opened.set()
    first.join(30)
    p.store.wait_committed()  # acknowledged rows hold their memory until they are written
    p.export(build_request(64, seed=2).body, timeout=30)  # the retry, once there is room
    assert p.stored() == 128
    assert p.ingest.budget.stats()["budget_used_bytes"] == 0, "every reservation is given back"


def test_when_the_memory_budget_is_spent_http_says_503_with_retry_after_and_keeps_the_connection(pipeline):
    p = pipeline(budget_bytes=1)
    first = p.send_in_background(build_request(64, seed=3).body)
    assert p.gate.entered.wait(30)
    held = p.ingest.budget.stats()["budget_used_bytes"]
    connection = http.client.HTTPConnection("127.0.0.1", p.http.port, timeout=30)
    body = build_request(512, seed=4).body
    connection.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
    response = connection.getresponse()
    response.read()
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    stats = p.ingest.budget.stats()
    assert stats["budget_refusals"] == 1 and stats["budget_used_bytes"] == held, "the refused body holds nothing"
    p.gate.opened.set()
    first.join(30)
    p.store.wait_committed()  # acknowledged rows hold their memory until they are written
    # The refused body was read off the wire and dropped: the same connection carries the retry.
    connection.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
    assert connection.getresponse().status == 200
    connection.close()
    assert p.stored() == 64 + 512


def test_the_span_queue_is_bounded_and_refuses_with_unavailable(pipeline):
    p = pipeline(budget_bytes=1 << 40, max_queue_spans=64)
    writing = p.send_in_background(build_request(64, seed=5).body)
    assert p.gate.entered.wait(30)
    queued = p.send_in_background(build_request(64, seed=6).body)
    _wait_for(lambda: p.store.queued_spans == 64)
    with pytest.raises(grpc.RpcError) as refused:
        p.export(build_request(64, seed=7).body, timeout=30)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "queue full" in refused.value.details()
    p.gate.opened.set()
    writing.join(30)
    queued.join(30)
    assert p.stored() == 128


def test_a_real_collector_under_more_load_than_it_can_take_stays_under_its_memory_limit(tmp_path):
    limit = 1024**3
    figures = run_overload_bench(seconds=4, senders=2, concurrency=32, spans_per_request=2048,
                                 memory_limit_bytes=limit, db=str(tmp_path / "overload.duckdb"), progress=False,
                                 kill_at_end=True)
    assert figures["retryable_rejections"] > 0, "the load never exceeded capacity: the test proves nothing"
    assert figures["collector_peak_rss_bytes"] < limit, figures
    # Killed: rows acknowledged but not yet committed wait in the intake journal, and the next
    # start stores them before it serves. Count after that start.
    config = load_config(None, {"db": str(tmp_path / "overload.duckdb"), "grpc": "127.0.0.1:0",
                                "http": "127.0.0.1:0", "decode_workers": 0}, environ={})
    with Collector(config):
        pass
    con = duckdb.connect(str(tmp_path / "overload.duckdb"), read_only=True)
    stored = con.execute("SELECT count(*) FROM spans").fetchall()[0][0]
    con.close()
    assert stored >= figures["acknowledged_spans"], figures


def test_the_budget_refuses_while_the_measured_resident_size_is_over_its_ceiling():
    resident = {"bytes": 100}
    budget = MemoryBudget(1 << 30, rss_ceiling_bytes=500, measure_rss=lambda: resident["bytes"])
    first = budget.reserve(10)  # nothing held: always admitted, whatever the measurement
    budget.reserve(10).release()
    resident["bytes"] = 900
    time.sleep(0.06)  # past the sampling interval
    with pytest.raises(Overloaded, match="resident size 0 MiB is over its ceiling") as refused:
        budget.reserve(10)
    assert refused.value.retry_after_seconds == 1.0
    assert budget.stats()["rss_refusals"] == 1
    first.release()
    budget.reserve(10).release()  # nothing held: admitted, so a request can always make progress
    resident["bytes"] = 100
    time.sleep(0.06)
    held = budget.reserve(10)
    budget.reserve(10).release()
    held.release()
    assert budget.stats()["budget_used_bytes"] == 0
