"""The real OTel SDK exporters (gRPC, HTTP/protobuf) and an HTTP/JSON body against a real collector."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request

import duckdb
import grpc
import pyarrow as pa
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from govtrace.collector.loadgen import build_request
from govtrace.instrumentation import attributes as A


def _emit(exporter, agent_id: str) -> tuple[str, str]:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "billing", A.GEN_AI_AGENT_ID: agent_id, A.AGENT_OWNER: "ops@acme"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("execute_tool pay_invoice") as span:
        span.set_attributes({
            A.GEN_AI_OPERATION_NAME: "execute_tool",
            A.GEN_AI_TOOL_NAME: "pay_invoice",
            A.POLICY_EFFECT: "escalate",
            A.POLICY_TIER: 3,
            A.POLICY_REASONS: ["amount over 1000", "irreversible"],
            A.COST_AMOUNT: 0.25,
            A.DATA_RECORD_COUNT: 12,
            "custom.flag": True,
        })
        ids = (format(span.get_span_context().trace_id, "032x"), format(span.get_span_context().span_id, "016x"))
    provider.shutdown()
    return ids


def _row(collector, span_id: str) -> dict:
    cursor = collector.store.cursor()
    df = cursor.execute("SELECT * FROM spans WHERE span_id = ?", [span_id]).fetchdf()
    assert len(df) == 1, f"span {span_id} stored {len(df)} times"
    return df.iloc[0].to_dict()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_exporter_spans_are_stored_with_every_attribute_and_resource_attribute(collector, protocol):
    if protocol == "grpc":
        exporter = GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True)
    else:
        exporter = HttpExporter(endpoint=collector.http_url + "/v1/traces")
    trace_id, span_id = _emit(exporter, agent_id=f"agent-{protocol}")
    row = _row(collector, span_id)
    assert row["trace_id"] == trace_id
    assert row["agent_id"] == f"agent-{protocol}"
    assert row["agent_owner"] == "ops@acme"
    assert row["service_name"] == "billing"
    assert row["operation"] == "execute_tool"
    assert row["tool_name"] == "pay_invoice"
    assert row["policy_effect"] == "escalate"
    assert row["policy_tier"] == 3
    assert row["cost_amount"] == 0.25
    assert row["data_record_count"] == 12
    record = json.loads(row["record"])
    assert record["attributes"]["custom.flag"] is True
    assert record["attributes"][A.POLICY_REASONS] == ["amount over 1000", "irreversible"]
    assert record["resource"][A.GEN_AI_AGENT_ID] == f"agent-{protocol}"
    assert record["resource"]["telemetry.sdk.language"] == "python"
    assert record["scope"]["name"] == "test"


def _json_body(trace_id: str = "5b8efff798038103d269b633813fc60c", span_id: str = "eee19b7ec3c1b174") -> dict:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "gen_ai.agent.id", "value": {"stringValue": "json-agent"}}]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "name": "execute_tool lookup", "kind": 1,
            "startTimeUnixNano": "1763700000000000000", "endTimeUnixNano": "1763700000500000000",
            "attributes": [
                {"key": "gen_ai.tool.name", "value": {"stringValue": "lookup"}},
                {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                {"key": "nested", "value": {"kvlistValue": {"values": [
                    {"key": "n", "value": {"intValue": "7"}},
                    {"key": "raw", "value": {"bytesValue": "AAEC"}}]}}},
            ],
        }]}],
    }]}


def _post(url: str, body: bytes, content_type: str, encoding: str | None = None):
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_http_json_body_with_hex_ids_and_nested_values_is_stored_losslessly(collector):
    status, body, _ = _post(collector.http_url + "/v1/traces", json.dumps(_json_body()).encode(), "application/json")
    assert status == 200, body
    row = _row(collector, "eee19b7ec3c1b174")
    assert row["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert row["agent_id"] == "json-agent"
    assert row["duration_ms"] == 500.0
    record = json.loads(row["record"])
    assert record["attributes"]["nested"] == {"n": 7, "raw": {"$bytes": "AAEC"}}


def test_gzip_json_body_is_accepted(collector):
    body = gzip.compress(json.dumps(_json_body(span_id="00000000000000aa")).encode())
    status, _, _ = _post(collector.http_url + "/v1/traces", body, "application/json", "gzip")
    assert status == 200
    assert _row(collector, "00000000000000aa")["tool_name"] == "lookup"


def test_malformed_protobuf_is_rejected_and_the_server_keeps_serving(collector):
    status, body, _ = _post(collector.http_url + "/v1/traces", b"\x0a\xff\xff\xff", "application/x-protobuf")
    assert status == 400
    assert b"malformed" in body
    channel = grpc.insecure_channel(collector.grpc_endpoint)
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda b: b, response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as failure:
        export(b"\x0a\xff\xff\xff", timeout=10)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A good request on the same channel right after is stored.
    status, _, _ = _post(collector.http_url + "/v1/traces", json.dumps(_json_body(span_id="00000000000000bb")).encode(),
                         "application/json")
    assert status == 200
    assert _row(collector, "00000000000000bb")["agent_id"] == "json-agent"
    channel.close()


def test_a_batch_with_some_invalid_spans_stores_the_valid_ones_and_reports_partial_success(collector):
    document = _json_body(span_id="00000000000000cc")
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    bad = dict(spans[0], traceId="00000000000000000000000000000000", spanId="00000000000000dd")
    spans.append(bad)
    status, body, _ = _post(collector.http_url + "/v1/traces", json.dumps(document).encode(), "application/json")
    assert status == 200
    reply = json.loads(body)
    assert reply["partialSuccess"]["rejectedSpans"] == "1"
    assert "trace_id" in reply["partialSuccess"]["errorMessage"]
    assert _row(collector, "00000000000000cc")["tool_name"] == "lookup"
    cursor = collector.store.cursor()
    assert cursor.execute("SELECT count(*) FROM spans WHERE span_id = '00000000000000dd'").fetchone()[0] == 0


def test_wrong_content_type_gets_415(collector):
    status, _, _ = _post(collector.http_url + "/v1/traces", b"hello", "text/plain")
    assert status == 415


def test_grpc_protobuf_request_round_trips_partial_success(collector):
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = b"\x00" * 16
    span.span_id = b"\x01" * 8
    span.start_time_unix_nano = 1763700000000000000
    channel = grpc.insecure_channel(collector.grpc_endpoint)
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=lambda b: b,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    reply = ExportTraceServiceResponse.FromString(export(request, timeout=10))
    assert reply.partial_success.rejected_spans == 1
    channel.close()


def test_decoding_in_worker_processes_stores_the_same_rows(tmp_path):
    from govtrace.collector.config import load_config
    from govtrace.collector.server import Collector

    config = load_config(None, {"db": str(tmp_path / "pool.duckdb"), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0",
                                "decode_workers": 1}, environ={})
    with Collector(config) as running:
        status, _, _ = _post(running.http_url + "/v1/traces", json.dumps(_json_body(span_id="00000000000000ee")).encode(),
                             "application/json")
        assert status == 200
        row = _row(running, "00000000000000ee")
        assert row["tool_name"] == "lookup"
        assert json.loads(row["record"])["attributes"]["nested"]["n"] == 7
        status, _, _ = _post(running.http_url + "/v1/traces", b"\x0a\xff\xff\xff", "application/x-protobuf")
        assert status == 400


# --- retries are idempotent -------------------------------------------------------------------

def _raw_export(collector, body: bytes) -> ExportTraceServiceResponse:
    channel = grpc.insecure_channel(collector.grpc_endpoint)
    try:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                     request_serializer=lambda b: b,
                                     response_deserializer=ExportTraceServiceResponse.FromString)
        return export(body, timeout=10)
    finally:
        channel.close()


def _span_rows(collector) -> tuple[int, int, int]:
    cursor = collector.store.cursor()
    try:
        return cursor.execute("SELECT count(*), count(DISTINCT span_id), max(seq) FROM spans").fetchall()[0]
    finally:
        cursor.close()


def test_a_retried_request_is_acknowledged_again_but_stored_once(collector):
    built = build_request(64, seed=11)
    _raw_export(collector, built.body)
    reply = _raw_export(collector, built.body)  # the client never saw the first answer and retries
    assert reply.partial_success.rejected_spans == 0
    assert _span_rows(collector) == (64, 64, 63), "stored once, and seq stays gap-free"
    assert collector.ingest.counters["spans_duplicate"] == 64


def test_a_span_repeated_inside_one_request_is_stored_once(collector):
    request = ExportTraceServiceRequest.FromString(build_request(8, seed=12).body)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans.append(spans[3])
    _raw_export(collector, request.SerializeToString())
    assert _span_rows(collector) == (8, 8, 7)


def test_the_same_ids_with_another_start_time_are_a_different_span_and_are_kept(collector):
    request = ExportTraceServiceRequest.FromString(build_request(4, seed=13).body)
    _raw_export(collector, request.SerializeToString())
    for span in request.resource_spans[0].scope_spans[0].spans:
        span.start_time_unix_nano += 1
    _raw_export(collector, request.SerializeToString())
    total, distinct, _ = _span_rows(collector)
    assert (total, distinct) == (8, 4)


def test_spans_stored_before_deduplication_existed_are_recognised_after_the_upgrade(tmp_path):
    from govtrace.collector import schema
    from govtrace.collector.decode import parse_protobuf
    from govtrace.collector.normalize import normalize_request
    from govtrace.collector.store import Store

    db = tmp_path / "old.duckdb"
    built = build_request(32, seed=14)
    table = normalize_request(parse_protobuf(built.body)).table
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    for name, step in schema.MIGRATIONS[:3]:  # the schema as it was before 0004_span_keys
        step(con)
        con.execute("INSERT INTO schema_migrations VALUES (?, now())", [name])
    stored = table.set_column(0, "seq", pa.array(range(32), type=pa.int64()))
    con.register("old_rows", stored)
    con.execute("INSERT INTO spans SELECT * FROM old_rows")
    con.close()
    with Store(db) as store:  # migrates: backfills the keys of the 32 old spans
        receipt = store.submit(table).result(timeout=30)
    assert (receipt.stored, receipt.duplicates) == (0, 32)
