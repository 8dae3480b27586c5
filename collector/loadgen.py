"""Pre-built OTLP requests of realistic agent spans, for load tests, crash tests and benchmarks.

The stock Python SDK exporter delivers only ~7 k spans/s per process, far below what the
collector ingests, so load is generated from serialized ``ExportTraceServiceRequest`` bytes sent
over a raw gRPC channel. Each span carries about twenty attributes, like a governed tool call.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from govtrace.instrumentation import attributes as A

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TOOLS = ["search_vendors", "create_purchase_order", "pay_invoice", "lookup_customer", "send_email",
         "read_employee_record", "list_accounts", "rotate_key", "query_warehouse", "summarize"]
RESOURCES = ["erp://vendors", "bank://payments", "crm://customers", "hris://employees", "iam://accounts"]
CLASSES = ["public", "internal", "confidential", "restricted", "pii"]
EFFECTS = ["allow"] * 8 + ["deny", "escalate"]


@dataclass(frozen=True)
class BuiltRequest:
    body: bytes
    span_ids: tuple[str, ...]  # hex, in order


def key_value(key: str, value: object) -> KeyValue:
    """An OTLP attribute from a Python value (an ``AnyValue`` is taken as it is)."""
    if isinstance(value, AnyValue):
        return KeyValue(key=key, value=value)
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_request(spans: int = 512, *, agents: int = 8, spans_per_trace: int = 16, seed: int | None = None,
                  start_ns: int | None = None) -> BuiltRequest:
    """One request of ``spans`` tool-call spans from one agent's resource."""
    rng = random.Random(seed)
    start_ns = start_ns or time.time_ns() - 60 * 10**9
    agent = f"agent-{rng.randrange(agents):02d}"
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend([
        key_value(A.SERVICE_NAME, agent), key_value(A.GEN_AI_AGENT_ID, agent), key_value(A.AGENT_OWNER, f"owner-{agent}@acme.example"),
    ])
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "govtrace.instrumentation"
    span_ids = []
    trace_id = os.urandom(16)
    root_id = None
    for i in range(spans):
        if i % spans_per_trace == 0:
            trace_id = os.urandom(16)
            root_id = None
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = os.urandom(8)
        if root_id is not None:
            span.parent_span_id = root_id
        else:
            root_id = span.span_id
        span.name = f"execute_tool {TOOLS[i % len(TOOLS)]}"
        span.kind = 1
        span.start_time_unix_nano = start_ns + i * 1_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(1, 400) * 1_000_000
        tool = TOOLS[rng.randrange(len(TOOLS))]
        effect = EFFECTS[rng.randrange(len(EFFECTS))]
        span.attributes.extend([
            key_value(A.GEN_AI_OPERATION_NAME, "execute_tool"),
            key_value(A.GEN_AI_TOOL_NAME, tool),
            key_value(A.GEN_AI_TOOL_CALL_ID, f"call_{rng.getrandbits(48):012x}"),
            key_value(A.GEN_AI_AGENT_ID, agent),
            key_value(A.GEN_AI_REQUEST_MODEL, "gpt-4o-mini"),
            key_value(A.GEN_AI_CONVERSATION_ID, f"conv-{trace_id.hex()[:8]}"),
            key_value(A.GEN_AI_USAGE_INPUT_TOKENS, rng.randrange(100, 4000)),
            key_value(A.GEN_AI_USAGE_OUTPUT_TOKENS, rng.randrange(10, 800)),
            key_value(A.COST_AMOUNT, round(rng.random() / 50, 6)),
            key_value(A.POLICY_EFFECT, effect),
            key_value(A.POLICY_ID, "acme-fleet"),
            key_value(A.POLICY_RULE_ID, f"rule-{rng.randrange(12)}"),
            key_value(A.POLICY_TIER, 1 if effect == "allow" else 3),
            key_value(A.DATA_RESOURCE, RESOURCES[rng.randrange(len(RESOURCES))]),
            key_value(A.DATA_CLASSIFICATION, CLASSES[rng.randrange(len(CLASSES))]),
            key_value(A.DATA_RECORD_COUNT, rng.randrange(1, 5000)),
            key_value(A.DELEGATION_ACTING_FOR, f"user-{rng.randrange(50)}@acme.example"),
            key_value(A.ACTION_ARGUMENTS_DIGEST, f"{rng.getrandbits(256):064x}"),
            key_value(A.GEN_AI_TOOL_CALL_ARGUMENTS, '{"query": "' + "x" * rng.randrange(120, 220) + '"}'),
            key_value(A.ACTION_REVERSIBLE, rng.random() < 0.7),
        ])
        span_ids.append(span.span_id.hex())
    return BuiltRequest(request.SerializeToString(), tuple(span_ids))


class RawExporter:
    """Sends serialized requests over one gRPC channel; no protobuf work on the client side."""

    def __init__(self, endpoint: str, timeout: float = 30.0):
        self.channel = grpc.insecure_channel(
            endpoint, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        self._export = self.channel.unary_unary(
            EXPORT_METHOD, request_serializer=lambda body: body,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        self.timeout = timeout

    def send(self, body: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> ExportTraceServiceResponse:
        return self._export(body, timeout=self.timeout, metadata=metadata or None)

    def close(self) -> None:
        self.channel.close()


class FreshIds:
    """Cheap distinct copies of one built request: new trace and span ids written in place.

    Building a 512-span request costs tens of milliseconds of client CPU; rewriting its ids at
    known byte offsets costs a fraction of one, so senders can send unique spans at full speed.
    """

    def __init__(self, built: BuiltRequest):
        self.template = built.body
        self.span_offsets: list[int] = []
        for span_id in built.span_ids:
            raw = bytes.fromhex(span_id)
            self.span_offsets.append(self.template.index(raw))
        request = ExportTraceServiceRequest.FromString(built.body)
        trace_ids = {span.trace_id for span in request.resource_spans[0].scope_spans[0].spans}
        self.trace_offsets: list[list[int]] = []
        for trace_id in trace_ids:
            offsets, start = [], 0
            while (found := self.template.find(trace_id, start)) != -1:
                offsets.append(found)
                start = found + 1
            self.trace_offsets.append(offsets)

    def fresh(self) -> BuiltRequest:
        body = bytearray(self.template)
        span_bytes = os.urandom(8 * len(self.span_offsets))
        span_ids = []
        for i, offset in enumerate(self.span_offsets):
            new = span_bytes[8 * i: 8 * i + 8]
            body[offset:offset + 8] = new
            span_ids.append(new.hex())
        for offsets in self.trace_offsets:
            new_trace = os.urandom(16)
            for offset in offsets:
                body[offset:offset + 16] = new_trace
        return BuiltRequest(bytes(body), tuple(span_ids))
