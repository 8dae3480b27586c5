"""Identity-verified ingest: bearer tokens from the real OTel SDK exporters, principals stamped on
every stored span, and spans that claim an agent their credential does not own."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from govtrace.collector.auth import Credentials, TokensFileError, token_hash
from govtrace.collector.config import ConfigError, load_config
from govtrace.collector.loadgen import EXPORT_METHOD, build_request
from govtrace.collector.server import Collector
from govtrace.instrumentation import attributes as A

BILLING_TOKEN = "gt_billing-token-for-tests"
OPS_TOKEN = "gt_ops-token-for-tests"
READER_TOKEN = "gt_reader-token-for-tests"


def _tokens_file(tmp_path) -> str:
    path = tmp_path / "tokens.yaml"
    path.write_text(f"""
agents:
  - principal: billing-service
    agent_ids: [billing-agent]
    token_sha256: {token_hash(BILLING_TOKEN)}
  - principal: ops-service
    agent_ids: ["*"]
    token_sha256: [{token_hash(OPS_TOKEN)}]
readers:
  - user: dana@acme.example
    role: investigator
    token_sha256: {token_hash(READER_TOKEN)}
""")
    return str(path)


def _start(tmp_path, **settings) -> Collector:
    config = load_config(None, {"db": str(tmp_path / "auth.duckdb"), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0",
                                "decode_workers": 0, "auth_tokens_file": _tokens_file(tmp_path), **settings},
                         environ={})
    collector = Collector(config)
    collector.start()
    return collector


@pytest.fixture
def secured(tmp_path):
    collector = _start(tmp_path)
    yield collector
    collector.stop()


def _emit(exporter, agent_id: str, span_agent_id: str | None = None) -> str:
    provider = TracerProvider(resource=Resource.create({"service.name": "billing", A.GEN_AI_AGENT_ID: agent_id}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("execute_tool pay_invoice") as span:
        span.set_attribute(A.GEN_AI_OPERATION_NAME, "execute_tool")
        if span_agent_id:
            span.set_attribute(A.GEN_AI_AGENT_ID, span_agent_id)
        span_id = format(span.get_span_context().span_id, "016x")
    provider.shutdown()
    return span_id


def _rows(collector, sql: str, params=()) -> list[tuple]:
    cursor = collector.store.cursor()
    try:
        return cursor.execute(sql, list(params)).fetchall()
    finally:
        cursor.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_sdk_exporter_with_its_token_has_its_principal_stamped_on_the_stored_span(secured, protocol):
    headers = {"authorization": f"Bearer {BILLING_TOKEN}"}
    if protocol == "grpc":
        exporter = GrpcExporter(endpoint=secured.grpc_endpoint, insecure=True, headers=headers)
    else:
        exporter = HttpExporter(endpoint=secured.http_url + "/v1/traces", headers=headers)
    span_id = _emit(exporter, "billing-agent")
    [(principal, mismatch, record)] = _rows(
        secured, "SELECT principal, identity_mismatch, record FROM spans WHERE span_id = ?", [span_id])
    assert principal == "billing-service"
    assert mismatch is False
    # In the record itself, so the ledger's hash covers who sent it.
    assert json.loads(record)["ingest"]["principal"] == "billing-service"


def _grpc_export(endpoint: str, body: bytes, metadata=()):
    channel = grpc.insecure_channel(endpoint)
    try:
        export = channel.unary_unary(EXPORT_METHOD, request_serializer=lambda b: b,
                                     response_deserializer=ExportTraceServiceResponse.FromString)
        return export(body, timeout=10, metadata=metadata or None)
    finally:
        channel.close()


def _http_post(url: str, body: bytes, headers: dict[str, str]):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf", **headers},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer not-a-token"),), (("authorization", "Basic x"),)])
def test_grpc_requests_without_a_valid_token_are_unauthenticated_and_store_nothing(secured, metadata):
    with pytest.raises(grpc.RpcError) as failure:
        _grpc_export(secured.grpc_endpoint, build_request(4, seed=1).body, metadata)
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _rows(secured, "SELECT count(*) FROM spans") == [(0,)]


def test_http_requests_without_a_valid_token_get_401_with_a_bearer_challenge(secured):
    status, _, headers = _http_post(secured.http_url + "/v1/traces", build_request(4, seed=2).body, {})
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = _http_post(secured.http_url + "/v1/traces", build_request(4, seed=2).body,
                              {"Authorization": f"Bearer {READER_TOKEN}"})
    assert status == 401, "a reader token is not an agent credential"
    assert _rows(secured, "SELECT count(*) FROM spans") == [(0,)]
    assert secured.ingest.counters["requests_unauthenticated"] == 2


def _billing_exporter(collector) -> GrpcExporter:
    return GrpcExporter(endpoint=collector.grpc_endpoint, insecure=True,
                        headers={"authorization": f"Bearer {BILLING_TOKEN}"})


def test_a_span_claiming_an_agent_its_credential_does_not_own_is_stored_flagged(secured):
    honest = _emit(_billing_exporter(secured), "billing-agent")
    forged = _emit(_billing_exporter(secured), "billing-agent", span_agent_id="payroll-agent")
    rows = dict(_rows(secured, "SELECT span_id, identity_mismatch FROM spans"))
    assert rows == {honest: False, forged: True}
    [(agent, principal, record)] = _rows(
        secured, "SELECT agent_id, principal, record FROM spans WHERE span_id = ?", [forged])
    assert (agent, principal) == ("payroll-agent", "billing-service")
    assert json.loads(record)["ingest"]["identity_mismatch"] is True
    # The mismatch count reaches the store with the writer's next commit.
    _emit(_billing_exporter(secured), "billing-agent")
    assert _rows(secured, "SELECT sum(count) FROM ingest_events WHERE event = 'identity_mismatch'") == [(1,)]


def test_a_wildcard_credential_may_speak_for_any_agent(secured):
    body = build_request(8, seed=3).body
    _grpc_export(secured.grpc_endpoint, body, (("authorization", f"Bearer {OPS_TOKEN}"),))
    assert _rows(secured, "SELECT count(*), bool_or(identity_mismatch), min(principal) FROM spans") == [
        (8, False, "ops-service")]


def test_with_the_reject_policy_a_forged_span_is_refused_and_the_honest_ones_stored(tmp_path):
    collector = _start(tmp_path, identity_mismatch="reject")
    try:
        body = build_request(16, seed=4).body  # resource agent id agent-0x: not billing-agent
        reply = _grpc_export(collector.grpc_endpoint, body, (("authorization", f"Bearer {BILLING_TOKEN}"),))
        assert reply.partial_success.rejected_spans == 16
        assert "may not speak for agent" in reply.partial_success.error_message
        honest = _emit(_billing_exporter(collector), "billing-agent")
        assert _rows(collector, "SELECT span_id FROM spans") == [(honest,)]
    finally:
        collector.stop()


def test_a_tokens_file_holding_a_plain_token_instead_of_its_hash_stops_start_up(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("agents:\n  - principal: p\n    agent_ids: [a]\n    token_sha256: my-secret-token\n")
    with pytest.raises(TokensFileError, match="64 hex digits"):
        Credentials.load(path)
    config = load_config(None, {"db": str(tmp_path / "x.duckdb"), "auth_tokens_file": str(path)}, environ={})
    with pytest.raises(ConfigError, match="auth_tokens_file"):
        Collector(config).start()


def test_one_token_for_two_principals_is_refused(tmp_path):
    digest = token_hash("shared")
    path = tmp_path / "dup.yaml"
    path.write_text(f"agents:\n  - principal: a\n    agent_ids: [x]\n    token_sha256: {digest}\n"
                    f"  - principal: b\n    agent_ids: [y]\n    token_sha256: {digest}\n")
    with pytest.raises(TokensFileError, match="two principals"):
        Credentials.load(path)


def test_one_sender_cannot_suppress_another_senders_span_by_sending_its_ids_first(secured):
    body = build_request(8, seed=5).body
    _grpc_export(secured.grpc_endpoint, body, (("authorization", f"Bearer {OPS_TOKEN}"),))
    _grpc_export(secured.grpc_endpoint, body, (("authorization", f"Bearer {BILLING_TOKEN}"),))
    _grpc_export(secured.grpc_endpoint, body, (("authorization", f"Bearer {BILLING_TOKEN}"),))  # a retry
    assert _rows(secured, "SELECT principal, count(*), count(DISTINCT span_id) FROM spans GROUP BY ALL ORDER BY ALL") == [
        ("billing-service", 8, 8), ("ops-service", 8, 8)]
