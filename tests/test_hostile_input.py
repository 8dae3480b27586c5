"""Hostile and broken input: every case gets a clear status, the spans that can be stored are, and
the collector keeps serving the next request."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import zlib

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from govtrace.collector.config import load_config
from govtrace.collector.loadgen import EXPORT_METHOD
from govtrace.collector.server import Collector

NOW_NS = 1_763_700_000_000_000_000
MAX_BODY = 1024 * 1024


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    config = load_config(None, {"db": str(folder / "hostile.duckdb"), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0",
                                "decode_workers": 0, "max_body_bytes": MAX_BODY}, environ={})
    with Collector(config) as running:
        yield running


# --- building requests, down to the wire where a valid message cannot express the hostility ----

def _span(span_id: int, trace_id: bytes | None = None, start_ns: int = NOW_NS, **attributes) -> Span:
    span = Span(trace_id=trace_id if trace_id is not None else span_id.to_bytes(16, "big"),
                span_id=span_id.to_bytes(8, "big"), name="execute_tool lookup", kind=1,
                start_time_unix_nano=start_ns, end_time_unix_nano=start_ns + 1_000_000)
    span.attributes.extend(KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes.items())
    return span


def _request(*spans: Span | bytes) -> bytes:
    """Serialized request of these spans; a ``bytes`` span is inserted on the wire as is."""
    spans_bytes = b"".join(_field(2, s if isinstance(s, bytes) else s.SerializeToString()) for s in spans)
    scope = _field(1, _field(1, b"hostile-test")) + spans_bytes
    resource = _field(1, _field(1, KeyValue(key="gen_ai.agent.id", value=AnyValue(string_value="agent-h"))
                                    .SerializeToString()))
    return _field(1, resource + _field(2, scope))


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _span_with_raw_attribute(span_id: int, value: bytes) -> bytes:
    """A span whose one attribute's AnyValue is ``value`` (wire bytes), appended to its fields."""
    return _span(span_id).SerializeToString() + _field(9, _field(1, b"raw") + _field(2, value))


def _nested(depth: int) -> bytes:
    value = AnyValue(string_value="bottom").SerializeToString()
    for _ in range(depth):
        value = _field(5, _field(1, value))  # AnyValue.array_value -> ArrayValue.values
    return value


# --- sending ---------------------------------------------------------------------------------

def _grpc(collector, body: bytes) -> ExportTraceServiceResponse:
    channel = grpc.insecure_channel(collector.grpc_endpoint, options=[("grpc.max_send_message_length", 64 << 20)])
    try:
        export = channel.unary_unary(EXPORT_METHOD, request_serializer=lambda b: b,
                                     response_deserializer=ExportTraceServiceResponse.FromString)
        return export(body, timeout=30)
    finally:
        channel.close()


def _http(collector, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", collector.http.port, timeout=30)
    try:
        connection.request("POST", "/v1/traces", body=body,
                           headers={"Content-Type": "application/x-protobuf", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _stored(collector, span_ids: list[int]) -> int:
    cursor = collector.store.cursor()
    try:
        hexes = [i.to_bytes(8, "big").hex() for i in span_ids]
        return cursor.execute(f"SELECT count(*) FROM spans WHERE span_id IN ({','.join('?' * len(hexes))})",
                              hexes).fetchall()[0][0]
    finally:
        cursor.close()


_next_id = iter(range(1000, 10**9, 10))


def _still_serving(collector) -> None:
    """A good request right after: stored."""
    span_id = next(_next_id)
    assert _grpc(collector, _request(_span(span_id))).partial_success.rejected_spans == 0
    assert _http(collector, _request(_span(span_id + 1)))[0] == 200
    assert _stored(collector, [span_id, span_id + 1]) == 2


# --- whole requests that cannot be used ----------------------------------------------------------

@pytest.mark.parametrize("body", [b"\x0a\xff\xff\xff", b"\xff" * 64, _request(_span(1))[:-3]],
                         ids=["bad-length", "garbage", "truncated"])
def test_malformed_protobuf_is_invalid_argument_or_400(collector, body):
    with pytest.raises(grpc.RpcError) as failure:
        _grpc(collector, body)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status, reply = _http(collector, body)
    assert status == 400 and b"malformed" in reply
    _still_serving(collector)


def test_truncated_gzip_and_a_gzip_bomb_are_refused_over_http(collector):
    body = gzip.compress(_request(_span(2)))
    status, reply = _http(collector, body[:-8], {"Content-Encoding": "gzip"})
    assert status == 400 and b"truncated" in reply
    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb_body = bomb.compress(b"\0" * (64 * MAX_BODY)) + bomb.flush()  # 64 MiB of zeros in ~64 KiB
    assert len(bomb_body) < MAX_BODY
    status, reply = _http(collector, bomb_body, {"Content-Encoding": "gzip"})
    assert status == 413 and b"decompressed" in reply
    status, _ = _http(collector, body, {"Content-Encoding": "br"})
    assert status == 400
    _still_serving(collector)


def test_wrong_content_type_is_415(collector):
    assert _http(collector, _request(_span(3)), {"Content-Type": "text/plain"})[0] == 415
    _still_serving(collector)


def test_a_body_over_the_maximum_is_resource_exhausted_or_413(collector):
    big = _request(*[_span(i, padding="x" * 2048) for i in range(10, 10 + MAX_BODY // 2048 + 10)])
    assert len(big) > MAX_BODY
    with pytest.raises(grpc.RpcError) as failure:
        _grpc(collector, big)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _http(collector, big)[0] == 413
    # Chunked, so the size is only known while reading.
    connection = http.client.HTTPConnection("127.0.0.1", collector.http.port, timeout=30)
    connection.request("POST", "/v1/traces", body=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                       headers={"Content-Type": "application/x-protobuf"}, encode_chunked=True)
    assert connection.getresponse().status == 413
    connection.close()
    _still_serving(collector)


def test_json_that_is_not_otlp_is_400_not_a_crash(collector):
    for document in (b'{"resourceSpans": [1, "x", null]}', b'{"resourceSpans": {"a": 1}}', b"[]", b"\xff\xfe",
                     b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 7}]}]}]}'):
        status, _ = _http(collector, document, {"Content-Type": "application/json"})
        assert status in (200, 400), document
    _still_serving(collector)


def test_a_client_that_sends_half_a_request_and_goes_away_costs_nothing(collector):
    with socket.create_connection(("127.0.0.1", collector.http.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                     b"Content-Length: 100000\r\n\r\n" + b"\x0a" * 100)
    _still_serving(collector)


# --- spans that cannot be stored, next to spans that can -------------------------------------------

def _partial(collector, body: bytes, good: list[int], rejected: int, reason: str) -> None:
    reply = _grpc(collector, body)
    assert reply.partial_success.rejected_spans == rejected
    assert reason in reply.partial_success.error_message
    assert _stored(collector, good) == len(good)


def test_invalid_utf8_in_one_span_rejects_that_span_only(collector):
    bad = _span_with_raw_attribute(21, _field(1, b"caf\xc3\x28 \xff"))  # AnyValue.string_value, not UTF-8
    _partial(collector, _request(_span(20), bad, _span(22)), [20, 22], 1, "does not parse")
    status, reply = _http(collector, _request(_span(23), _span_with_raw_attribute(24, _field(1, b"\xff"))))
    assert status == 200 and _stored(collector, [23]) == 1


def test_values_nested_deeper_than_the_limits_reject_their_span_only(collector):
    moderately = _span_with_raw_attribute(31, _nested(40))  # parses, deeper than our 32 levels
    extremely = _span_with_raw_attribute(32, _nested(500))  # deeper than the protobuf parser allows
    _partial(collector, _request(_span(30), moderately, extremely, _span(33)), [30, 33], 2, "nested")


def test_ten_thousand_attributes_on_one_span_are_stored_losslessly(collector):
    span = _span(40)
    span.attributes.extend(KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(10_000))
    assert _grpc(collector, _request(span)).partial_success.rejected_spans == 0
    cursor = collector.store.cursor()
    record = cursor.execute("SELECT record FROM spans WHERE span_id = ?", [(40).to_bytes(8, "big").hex()]).fetchall()
    cursor.close()
    attributes = json.loads(record[0][0])["attributes"]
    assert len(attributes) == 10_000 and attributes["k9999"] == 9999


@pytest.mark.parametrize("bad, reason", [
    (_span(51, trace_id=b"\0" * 16), "trace_id must be 16 non-zero bytes"),
    (_span(52, trace_id=b"\1" * 8), "trace_id must be 16 non-zero bytes"),
    (Span(trace_id=b"\1" * 16, span_id=b"\0" * 8, start_time_unix_nano=NOW_NS), "span_id must be 8 non-zero bytes"),
    (_span(54, start_ns=86_400 * 10**9), "before 2000"),
    (_span(55, start_ns=4_102_444_800 * 10**9), "in the future"),
], ids=["zero-trace-id", "short-trace-id", "zero-span-id", "year-1970", "year-2100"])
def test_a_batch_with_an_invalid_span_stores_the_valid_ones_and_counts_the_rejected(collector, bad, reason):
    good = [next(_next_id), next(_next_id)]
    _partial(collector, _request(_span(good[0]), bad, _span(good[1])), good, 1, reason)


def _rejected_so_far(collector) -> int:
    _still_serving(collector)  # counts reach the store with the next commit
    cursor = collector.store.cursor()
    try:
        return cursor.execute("SELECT coalesce(sum(count), 0) FROM ingest_events WHERE event = 'spans_rejected'"
                              ).fetchall()[0][0]
    finally:
        cursor.close()


def test_rejections_are_counted_in_the_store_for_completeness_reports(collector):
    before = _rejected_so_far(collector)
    _partial(collector, _request(_span(61), _span(62, trace_id=b"\0" * 16), _span(63, trace_id=b"\0" * 16)),
             [61], 2, "trace_id")
    assert _rejected_so_far(collector) - before == 2
