"""Redaction at ingest: secrets and personal data never reach the store, and the record says where
they were cut out (JSON pointers and detector names, never the value)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanContext, Status, StatusCode

from govtrace.collector.config import ConfigError, load_config
from govtrace.collector.redaction import Redactor, escape
from govtrace.collector.server import Collector
from govtrace.instrumentation import attributes as A

OPENAI_KEY = "sk-proj-Z3x9QmT4vB7nK2pL8wR5yH1cJ6dF0gA"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudC0xIn0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.org"
EMPLOYEE = "EMP-204518"
SECRETS = [OPENAI_KEY, AWS_KEY, JWT, "Z3x9QmT4vB7nK2pL", CARD, CARD.replace(" ", ""), EMAIL, EMPLOYEE,
           "hunter2-is-my-password", "opaque-session-cookie-value"]


@pytest.fixture(scope="module")
def redacting(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redaction")
    patterns = folder / "patterns.yaml"
    patterns.write_text("employee_id: 'EMP-\\d{6}'\n")
    config = load_config(None, {"db": str(folder / "redact.duckdb"), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0",
                                "decode_workers": 0, "redact": "api_key,bearer_token,email,card_number",
                                "redact_patterns_file": str(patterns), "seal_every_events": 1}, environ={})
    collector = Collector(config)
    collector.start()
    yield collector
    collector.stop()


def _emit(collector) -> tuple[str, str]:
    provider = TracerProvider(resource=Resource.create({
        "service.name": "support-bot", A.GEN_AI_AGENT_ID: "support-bot", "deployment.api_key": OPENAI_KEY,
    }))
    provider.add_span_processor(SimpleSpanProcessor(HttpExporter(endpoint=collector.http_url + "/v1/traces")))
    linked = SpanContext(trace_id=0x5B8EFFF798038103D269B633813FC60C, span_id=0xEEE19B7EC3C1B174, is_remote=True)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("execute_tool send_email",
                                      links=[Link(linked, {"note": f"forwarded by {EMAIL}"})]) as span:
        span.set_attributes({
            A.GEN_AI_OPERATION_NAME: "execute_tool",
            A.GEN_AI_TOOL_NAME: "send_email",
            A.DELEGATION_ACTING_FOR: "alice@acme.example",  # an identity the audit keeps
            A.GEN_AI_TOOL_CALL_ARGUMENTS: json.dumps({"to": EMAIL, "card": CARD, "api_key": "hunter2-is-my-password",
                                                      "note": f"employee {EMPLOYEE}"}),
            "http.request.header.authorization": f"Bearer {JWT}",
            "http.request.header.cookie": "opaque-session-cookie-value",
            "tool.env": [f"OPENAI_API_KEY={OPENAI_KEY}", f"AWS={AWS_KEY}", "harmless"],
            "request.ts": "1763700000000000000",  # 19 digits, not a card
        })
        span.add_event("exception", {"exception.type": "AuthError", "exception.message": f"bad key {AWS_KEY}"})
        span.set_status(Status(StatusCode.ERROR, f"refused for {EMAIL}"))
        ids = (format(span.get_span_context().trace_id, "032x"), format(span.get_span_context().span_id, "016x"))
    provider.shutdown()
    return ids


@pytest.fixture(scope="module")
def stored(redacting):
    _, span_id = _emit(redacting)
    cursor = redacting.store.cursor()
    row = cursor.execute("SELECT * FROM spans WHERE span_id = ?", [span_id]).fetchdf().iloc[0].to_dict()
    cursor.close()
    return row


def test_no_secret_reaches_any_stored_column(stored):
    everything = json.dumps({k: str(v) for k, v in stored.items()})
    leaked = [secret for secret in SECRETS if secret in everything]
    assert leaked == []


def test_the_record_lists_every_redaction_by_pointer_and_detector_without_the_value(stored):
    record = json.loads(stored["record"])
    found = {(r["pointer"], r["detector"]) for r in record["ingest"]["redactions"]}
    assert found >= {
        ("/resource/deployment.api_key", "api_key"),
        (f"/attributes/{A.GEN_AI_TOOL_CALL_ARGUMENTS}", "email"),
        (f"/attributes/{A.GEN_AI_TOOL_CALL_ARGUMENTS}", "card_number"),
        (f"/attributes/{A.GEN_AI_TOOL_CALL_ARGUMENTS}", "api_key"),
        (f"/attributes/{A.GEN_AI_TOOL_CALL_ARGUMENTS}", "employee_id"),
        ("/attributes/http.request.header.authorization", "api_key"),
        ("/attributes/http.request.header.cookie", "api_key"),
        ("/attributes/tool.env/0", "api_key"),
        ("/attributes/tool.env/1", "api_key"),
        ("/events/0/attributes/exception.message", "api_key"),
        ("/links/0/attributes/note", "email"),
        ("/status/message", "email"),
    }
    for redaction in record["ingest"]["redactions"]:
        assert set(redaction) == {"pointer", "detector", "count"}
        assert f"[REDACTED:{redaction['detector']}]" in json.dumps(_resolve(record, redaction["pointer"]))


def _resolve(document, pointer: str):
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def test_identities_the_audit_needs_and_harmless_values_are_left_alone(stored):
    record = json.loads(stored["record"])
    assert stored["acting_for"] == "alice@acme.example"
    assert stored["agent_id"] == "support-bot"
    assert record["attributes"]["tool.env"][2] == "harmless"
    assert record["attributes"]["request.ts"] == "1763700000000000000"
    assert stored["tool_name"] == "send_email"
    arguments = json.loads(record["attributes"][A.GEN_AI_TOOL_CALL_ARGUMENTS])
    assert arguments == {"to": "[REDACTED:email]", "card": "[REDACTED:card_number]", "api_key": "[REDACTED:api_key]",
                         "note": "employee [REDACTED:employee_id]"}


def test_redacted_records_still_verify_against_the_ledger_and_their_columns(redacting, stored, tmp_path):
    redacting.stop()  # seals a final checkpoint and releases the file
    result = subprocess.run([sys.executable, "-m", "govtrace.collector.cli", "verify-store",
                             "--db", redacting.config.db, "--json"], capture_output=True, text=True, timeout=120)
    redacting.start()
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["column_mismatches"] == 0


def test_json_pointer_tokens_escape_slash_and_tilde():
    assert escape("a/b~c") == "a~1b~0c"
    found: list = []
    attributes = {"x/y": "mail bob@acme.example"}
    Redactor.from_settings("email").redact_attributes(attributes, "/attributes", found)
    assert found == [{"pointer": "/attributes/x~1y", "detector": "email", "count": 1}]


@pytest.mark.parametrize("text, detector", [
    ("key=AIzaSyA1234567890abcdefghijklmnopqrstuv", "api_key"),
    ("ghp_" + "a" * 36, "api_key"),
    ("xoxb-123456789012-abcdefghij", "api_key"),
    ('{"password": "correct horse battery"}', "api_key"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "bearer_token"),
    ("Amex 3782 822463 10005 on file", "card_number"),
    ("mastercard 5555-5555-5555-4444", "card_number"),
])
def test_each_builtin_detector_finds_its_kind(text, detector):
    found: list = []
    out = Redactor.from_settings("api_key,bearer_token,email,card_number").redact_text(text, "/p", found)
    assert f"[REDACTED:{detector}]" in out
    assert [f["detector"] for f in found] == [detector]


@pytest.mark.parametrize("text", ["4111 1111 1111 1112", "order 1234567890123", "sk-short", "an arguments digest "
                                  + "ab" * 32, "trace 5b8efff798038103d269b633813fc60c"])
def test_lookalikes_are_not_redacted(text):
    found: list = []
    assert Redactor.from_settings("api_key,bearer_token,email,card_number").redact_text(text, "/p", found) == text
    assert found == []


def test_an_unknown_detector_or_a_bad_pattern_stops_start_up(tmp_path):
    config = load_config(None, {"db": str(tmp_path / "x.duckdb"), "redact": "api_key,ssn"}, environ={})
    with pytest.raises(ConfigError, match="unknown detector"):
        Collector(config).start()
    patterns = tmp_path / "p.yaml"
    patterns.write_text("broken: '(unclosed'\n")
    config = load_config(None, {"db": str(tmp_path / "y.duckdb"), "redact_patterns_file": str(patterns)}, environ={})
    with pytest.raises(ConfigError, match="does not compile"):
        Collector(config).start()

