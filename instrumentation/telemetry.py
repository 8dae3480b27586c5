"""Minimal, explicit instrumentation: an agent's identity, its tasks and its tool calls as OTel spans.

An ``AgentTelemetry`` owns one TracerProvider whose resource carries the agent's static identity
(``gen_ai.agent.id``, name, owner, environment), so several agents can live in one process. Spans
follow the GenAI conventions (``invoke_agent``, ``execute_tool``) plus our ``govtrace.*`` keys.

Delegation travels as W3C baggage (``govtrace.delegation.*``), so it crosses any boundary that
propagates trace context (HTTP, MCP ``params._meta``) and every span records who the agent acts for.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import baggage, context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from govtrace.instrumentation import attributes as A

INSTRUMENTATION_NAME = "govtrace.instrumentation"
DEFAULT_ENDPOINT = "http://127.0.0.1:4317"

# Baggage keys that carry the delegation context across agents and processes.
BAGGAGE_ACTING_FOR = A.DELEGATION_ACTING_FOR
BAGGAGE_DELEGATING_AGENT = A.DELEGATION_DELEGATING_AGENT
BAGGAGE_CURRENT_AGENT = "govtrace.delegation.current_agent"
BAGGAGE_DEPTH = A.DELEGATION_DEPTH
BAGGAGE_SCOPES = A.DELEGATION_SCOPES


def arguments_digest(arguments: Any) -> str:
    """sha256 of the canonical JSON of a call's arguments: binds approvals to the exact call."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _exporter_for(endpoint: str, protocol: str) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    if protocol in ("http", "http/protobuf"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    raise ValueError(f"unknown OTLP protocol {protocol!r}: use 'grpc' or 'http'")


class ToolCall:
    """The span of one tool call, with helpers that record governance facts on it."""

    def __init__(self, span: Span, arguments: Any, digest: str | None = None):
        self.span = span
        self.arguments = arguments
        # The caller may pass the digest it already computed: canonical JSON + sha256 is a tenth of
        # the enforcement point's budget per call.
        self.arguments_digest = digest or (arguments_digest(arguments) if arguments is not None else None)

    def record_policy(
        self,
        *,
        effect: str,
        policy_id: str,
        rule_id: str | None = None,
        version: str | None = None,
        tier: int | None = None,
        reasons: Sequence[str] = (),
        mode: str = "enforce",
        decision_id: str | None = None,
        boundary: str | None = None,
    ) -> str:
        if effect not in A.EFFECTS:
            raise ValueError(f"policy effect must be one of {A.EFFECTS}, got {effect!r}")
        decision_id = decision_id or uuid.uuid4().hex
        facts = {
            A.POLICY_DECISION_ID: decision_id,
            A.POLICY_EFFECT: effect,
            A.POLICY_ID: policy_id,
            A.POLICY_RULE_ID: rule_id,
            A.POLICY_VERSION: version,
            A.POLICY_TIER: tier,
            A.POLICY_REASONS: list(reasons) if reasons else None,
            A.POLICY_MODE: mode,
            A.POLICY_BOUNDARY: boundary,
        }
        facts = {k: v for k, v in facts.items() if v is not None}
        self.span.set_attributes(facts)
        self.span.add_event(A.EVENT_POLICY_DECISION, facts)
        return decision_id

    def record_data(
        self, *, resource: str, operation: str, classification: str | None = None, record_count: int | None = None
    ) -> None:
        facts = {
            A.DATA_RESOURCE: resource,
            A.DATA_OPERATION: operation,
            A.DATA_CLASSIFICATION: classification,
            A.DATA_RECORD_COUNT: record_count,
        }
        self.span.set_attributes({k: v for k, v in facts.items() if v is not None})

    def record_cost(self, amount: float, currency: str = "USD", source: str = "reported") -> None:
        self.span.set_attributes({A.COST_AMOUNT: float(amount), A.COST_CURRENCY: currency, A.COST_SOURCE: source})

    def record_usage(self, *, model: str | None = None, input_tokens: int = 0, output_tokens: int = 0) -> None:
        if model:
            self.span.set_attribute(A.GEN_AI_REQUEST_MODEL, model)
        self.span.set_attribute(A.GEN_AI_USAGE_INPUT_TOKENS, int(input_tokens))
        self.span.set_attribute(A.GEN_AI_USAGE_OUTPUT_TOKENS, int(output_tokens))

    def record_action(
        self,
        *,
        target: str | None = None,
        amount: float | None = None,
        reversible: bool | None = None,
        regulatory_scope: Sequence[str] = (),
    ) -> None:
        facts = {
            A.ACTION_TARGET: target,
            A.ACTION_AMOUNT: None if amount is None else float(amount),
            A.ACTION_REVERSIBLE: reversible,
            A.ACTION_REGULATORY_SCOPE: list(regulatory_scope) if regulatory_scope else None,
        }
        self.span.set_attributes({k: v for k, v in facts.items() if v is not None})

    def record_escalation(
        self,
        *,
        escalation_id: str,
        tier: int,
        routed_to: str | None = None,
        deadline: str | None = None,
        sla_seconds: float | None = None,
    ) -> None:
        facts = {
            A.OVERSIGHT_ESCALATION_ID: escalation_id,
            A.OVERSIGHT_TIER: tier,
            A.OVERSIGHT_ROUTED_TO: routed_to,
            A.OVERSIGHT_DEADLINE: deadline,
            A.OVERSIGHT_SLA_SECONDS: sla_seconds,
            A.OVERSIGHT_OUTCOME: "pending",
            A.OVERSIGHT_ARGUMENTS_DIGEST: self.arguments_digest,
        }
        facts = {k: v for k, v in facts.items() if v is not None}
        self.span.set_attributes(facts)
        self.span.add_event(A.EVENT_OVERSIGHT_REQUESTED, facts)

    def record_approval(
        self, *, outcome: str, approver_id: str | None = None, approver_role: str | None = None, decided_at: str | None = None
    ) -> None:
        if outcome not in A.OVERSIGHT_OUTCOMES:
            raise ValueError(f"oversight outcome must be one of {A.OVERSIGHT_OUTCOMES}, got {outcome!r}")
        facts = {
            A.OVERSIGHT_OUTCOME: outcome,
            A.OVERSIGHT_APPROVER_ID: approver_id,
            A.OVERSIGHT_APPROVER_ROLE: approver_role,
            A.OVERSIGHT_DECIDED_AT: decided_at,
        }
        facts = {k: v for k, v in facts.items() if v is not None}
        self.span.set_attributes(facts)
        self.span.add_event(A.EVENT_OVERSIGHT_DECIDED, facts)

    def fail(self, error_type: str, message: str = "") -> None:
        self.span.set_attribute(A.ERROR_TYPE, error_type)
        self.span.set_status(Status(StatusCode.ERROR, message or error_type))


class AgentTelemetry:
    """One agent identity and the tracer that stamps it on every span."""

    def __init__(
        self,
        agent_id: str,
        *,
        name: str | None = None,
        owner: str | None = None,
        environment: str | None = None,
        credential: str | None = None,
        endpoint: str | None = None,
        protocol: str = "grpc",
        exporter: SpanExporter | None = None,
        processor: SpanProcessor | None = None,
        resource_attributes: Mapping[str, Any] | None = None,
    ):
        attrs: dict[str, Any] = {
            A.SERVICE_NAME: name or agent_id,
            A.GEN_AI_AGENT_ID: agent_id,
            A.GEN_AI_AGENT_NAME: name or agent_id,
        }
        if owner:
            attrs[A.AGENT_OWNER] = owner
        if environment:
            attrs[A.DEPLOYMENT_ENVIRONMENT] = environment
        if credential:
            attrs[A.AGENT_CREDENTIAL] = credential
        attrs.update(resource_attributes or {})
        self.agent_id = agent_id
        self.name = name or agent_id
        # Resource.create merges OTEL_RESOURCE_ATTRIBUTES; explicit arguments win.
        self.provider = TracerProvider(resource=Resource.create(attrs))
        if processor is None:
            exporter = exporter or _exporter_for(
                endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", DEFAULT_ENDPOINT), protocol
            )
            processor = BatchSpanProcessor(exporter, schedule_delay_millis=500)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer(INSTRUMENTATION_NAME)

    @contextmanager
    def task(
        self,
        name: str,
        *,
        acting_for: str | None = None,
        conversation_id: str | None = None,
        delegated_scopes: Sequence[str] = (),
    ) -> Iterator[Span]:
        """An ``invoke_agent`` span. Inside another agent's span it records the delegation."""
        delegation = current_delegation()
        caller = delegation["current_agent"]
        delegated = bool(caller and caller != self.agent_id)
        delegating_agent = caller if delegated else delegation["delegating_agent"]
        depth = delegation["depth"] + 1 if delegated else delegation["depth"]
        principal = acting_for or delegation["acting_for"]
        scopes = list(delegated_scopes) or delegation["scopes"]
        attrs: dict[str, Any] = {
            A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_AGENT,
            A.GEN_AI_AGENT_ID: self.agent_id,
            A.GEN_AI_AGENT_NAME: self.name,
            A.DELEGATION_DEPTH: depth,
        }
        if principal:
            attrs[A.DELEGATION_ACTING_FOR] = principal
        if delegating_agent:
            attrs[A.DELEGATION_DELEGATING_AGENT] = delegating_agent
        if scopes:
            attrs[A.DELEGATION_SCOPES] = scopes
        if conversation_id:
            attrs[A.GEN_AI_CONVERSATION_ID] = conversation_id
        ctx = _with_delegation(principal, self.agent_id, delegating_agent, depth, scopes)
        token = context.attach(ctx)
        try:
            with self.tracer.start_as_current_span(
                f"invoke_agent {self.name}", kind=SpanKind.INTERNAL, attributes=attrs
            ) as span:
                yield span
        finally:
            context.detach(token)

    @contextmanager
    def tool_call(
        self,
        tool: str,
        *,
        arguments: Any = None,
        call_id: str | None = None,
        tool_type: str = "function",
        capture_content: bool = False,
    ) -> Iterator[ToolCall]:
        """An ``execute_tool`` span carrying the delegation context and the arguments digest."""
        delegation = current_delegation()
        attrs: dict[str, Any] = {
            A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL,
            A.GEN_AI_TOOL_NAME: tool,
            A.GEN_AI_TOOL_TYPE: tool_type,
            A.GEN_AI_TOOL_CALL_ID: call_id or f"call_{uuid.uuid4().hex[:16]}",
            A.GEN_AI_AGENT_ID: self.agent_id,
            A.GEN_AI_AGENT_NAME: self.name,
            A.DELEGATION_DEPTH: delegation["depth"],
        }
        if delegation["acting_for"]:
            attrs[A.DELEGATION_ACTING_FOR] = delegation["acting_for"]
        if delegation["delegating_agent"]:
            attrs[A.DELEGATION_DELEGATING_AGENT] = delegation["delegating_agent"]
        digest = arguments_digest(arguments) if arguments is not None else None
        if digest is not None:
            attrs[A.ACTION_ARGUMENTS_DIGEST] = digest
            if capture_content:
                attrs[A.GEN_AI_TOOL_CALL_ARGUMENTS] = json.dumps(arguments, default=str)
        with self.tracer.start_as_current_span(
            f"execute_tool {tool}", kind=SpanKind.INTERNAL, attributes=attrs, record_exception=True
        ) as span:
            yield ToolCall(span, arguments, digest)

    def flush(self, timeout_millis: int = 10_000) -> bool:
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.provider.shutdown()


def current_delegation() -> dict[str, Any]:
    """The delegation context of the current OTel context.

    ``current_agent`` runs the enclosing task; ``delegating_agent`` handed that task to it;
    ``depth`` counts the hand-offs from the human principal ``acting_for``.
    """
    entries = baggage.get_all()  # one context lookup for all five entries (this runs on every call)
    depth_raw = entries.get(BAGGAGE_DEPTH)
    scopes_raw = entries.get(BAGGAGE_SCOPES)
    try:
        depth = int(depth_raw) if depth_raw is not None else 0
    except (TypeError, ValueError):
        depth = 0
    return {
        "acting_for": _str_or_none(entries.get(BAGGAGE_ACTING_FOR)),
        "current_agent": _str_or_none(entries.get(BAGGAGE_CURRENT_AGENT)),
        "delegating_agent": _str_or_none(entries.get(BAGGAGE_DELEGATING_AGENT)),
        "depth": depth,
        "scopes": [s for s in str(scopes_raw).split(",") if s] if scopes_raw else [],
    }


def _str_or_none(value: object) -> str | None:
    return str(value) if value else None


def _with_delegation(
    acting_for: str | None, agent_id: str, delegating_agent: str | None, depth: int, scopes: Sequence[str]
) -> context.Context:
    ctx = context.get_current()
    if acting_for:
        ctx = baggage.set_baggage(BAGGAGE_ACTING_FOR, acting_for, ctx)
    ctx = baggage.set_baggage(BAGGAGE_CURRENT_AGENT, agent_id, ctx)
    if delegating_agent:
        ctx = baggage.set_baggage(BAGGAGE_DELEGATING_AGENT, delegating_agent, ctx)
    else:
        ctx = baggage.remove_baggage(BAGGAGE_DELEGATING_AGENT, ctx)
    ctx = baggage.set_baggage(BAGGAGE_DEPTH, str(depth), ctx)
    if scopes:
        ctx = baggage.set_baggage(BAGGAGE_SCOPES, ",".join(scopes), ctx)
    return ctx
