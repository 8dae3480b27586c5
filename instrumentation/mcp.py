"""MCP SDK 2.x: governed client tool calls, and the delegation context across the MCP boundary.

The SDK (2.3+) already traces itself: the client opens ``MCP send tools/call <tool>`` (CLIENT) and
injects W3C trace context into ``params._meta``; the server's ``OpenTelemetryMiddleware`` opens
``tools/call <tool>`` (SERVER, ``gen_ai.operation.name=execute_tool``) as its child. We add no
duplicate of either:

- client, ``ClientSession.call_tool``: the call is governed (policy decision before it is sent) in an
  ``execute_tool <tool>`` span that is the parent of the SDK's CLIENT span. When the call is the
  body of a tool already governed (an Agents SDK or LangChain tool backed by MCP), that span is the
  execute_tool span and nothing is added. The caller's identity and delegation travel as W3C
  baggage next to ``traceparent`` in ``params._meta`` (injected here when the global propagator
  does not carry baggage);
- server, the SDK's middleware: its span is enriched with the serving agent's identity and the
  caller's delegation (acting for, delegating agent = the caller, depth + 1), and the handler runs
  in a context carrying that delegation, so the server agent's own spans, tasks and governed tools
  join the caller's chain. ``@governed_tool`` on a server tool enriches the SDK's server span
  instead of opening a second execute_tool span.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from mcp.client.session import ClientSession
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.types import CallToolResult, TextContent
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Status, StatusCode
from wrapt import wrap_function_wrapper

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.enforcement import Denial
from govtrace.instrumentation.governed import FAULTS, guarded, run_governed_async, runtime
from govtrace.instrumentation.telemetry import (
    BAGGAGE_ACTING_FOR,
    BAGGAGE_CURRENT_AGENT,
    BAGGAGE_DELEGATING_AGENT,
    BAGGAGE_DEPTH,
    BAGGAGE_SCOPES,
)

_BAGGAGE = W3CBaggagePropagator()


class GovtraceMcpInstrumentor(BaseInstrumentor):
    """Entry point ``govtrace_mcp``: governed ``ClientSession.call_tool`` and server-side delegation."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("mcp >= 2.3",)

    def _instrument(self, **kwargs: Any) -> None:
        runtime()  # configuration errors surface now, not in the first tool call
        wrap_function_wrapper("mcp.client.session", "ClientSession.call_tool", _call_tool)
        wrap_function_wrapper("mcp.server._otel", "OpenTelemetryMiddleware.__call__", _serve)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap(ClientSession, "call_tool")
        unwrap(OpenTelemetryMiddleware, "__call__")


# --- client -----------------------------------------------------------------------------------------
async def _call_tool(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    try:
        name = args[0] if args else kwargs["name"]
        arguments = args[1] if len(args) > 1 else kwargs.get("arguments")
    except Exception as exc:
        FAULTS.record("mcp_call_tool", exc)
        return await wrapped(*args, **kwargs)

    async def send() -> Any:
        token = None
        with guarded("mcp_caller_context"):
            token = otel_context.attach(_caller_context())
        try:
            return await wrapped(*args, **_with_baggage_in_meta(kwargs))
        finally:
            if token is not None:
                otel_context.detach(token)

    result = await run_governed_async(name, arguments or {}, send, on_result=_record_tool_error)
    if isinstance(result, Denial):
        return CallToolResult(
            content=[TextContent(type="text", text=str(result))],
            structured_content=result.as_tool_result(),
            is_error=True,
        )
    return result


def _caller_context() -> otel_context.Context:
    """The current context, naming this agent as the caller when no task did so already."""
    ctx = otel_context.get_current()
    if baggage.get_baggage(BAGGAGE_CURRENT_AGENT, ctx) is None:
        ctx = baggage.set_baggage(BAGGAGE_CURRENT_AGENT, runtime().agent_id, ctx)
        if baggage.get_baggage(BAGGAGE_DEPTH, ctx) is None:
            ctx = baggage.set_baggage(BAGGAGE_DEPTH, "0", ctx)
    return ctx


def _with_baggage_in_meta(kwargs: dict) -> dict:
    """The SDK injects with the global propagator; when that one drops baggage, put it in ``_meta`` here."""
    try:
        if "baggage" in propagate.get_global_textmap().fields:
            return kwargs
        meta = dict(kwargs.get("meta") or {})
        _BAGGAGE.inject(meta)
        return {**kwargs, "meta": meta}
    except Exception as exc:
        FAULTS.record("mcp_meta", exc)
        return kwargs


def _record_tool_error(span: Any, result: Any) -> None:
    if isinstance(result, CallToolResult) and result.is_error:
        span.set_attribute(A.ERROR_TYPE, "tool_error")
        span.set_status(Status(StatusCode.ERROR))


# --- server -----------------------------------------------------------------------------------------
async def _serve(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    if len(args) != 2 or kwargs:
        return await wrapped(*args, **kwargs)
    ctx, call_next = args

    async def delegated(inner_ctx: Any) -> Any:
        token = None
        with guarded("mcp_server_delegation"):
            token = otel_context.attach(_delegated_context(getattr(inner_ctx, "meta", None)))
        try:
            return await call_next(inner_ctx)
        finally:
            if token is not None:
                otel_context.detach(token)

    return await wrapped(ctx, delegated)


def _delegated_context(meta: Mapping[str, Any] | None) -> otel_context.Context:
    """This server agent acting on the caller's request: records it on the SDK's span, returns the context."""
    received = _BAGGAGE.extract(dict(meta or {}), context=otel_context.Context())
    acting_for = baggage.get_baggage(BAGGAGE_ACTING_FOR, received)
    caller = baggage.get_baggage(BAGGAGE_CURRENT_AGENT, received)
    previous = baggage.get_baggage(BAGGAGE_DELEGATING_AGENT, received)
    scopes = baggage.get_baggage(BAGGAGE_SCOPES, received)
    try:
        depth = int(str(baggage.get_baggage(BAGGAGE_DEPTH, received) or 0))
    except ValueError:
        depth = 0
    rt = runtime()
    delegated = bool(caller) and caller != rt.agent_id
    delegating = str(caller) if delegated else (str(previous) if previous else None)
    depth = depth + 1 if delegated else depth

    span = trace.get_current_span()  # the SDK's server span
    if span.is_recording():
        facts: dict[str, Any] = {A.GEN_AI_AGENT_ID: rt.agent_id, A.GEN_AI_AGENT_NAME: rt.name, A.DELEGATION_DEPTH: depth}
        if acting_for:
            facts[A.DELEGATION_ACTING_FOR] = str(acting_for)
        if delegating:
            facts[A.DELEGATION_DELEGATING_AGENT] = delegating
        if scopes:
            facts[A.DELEGATION_SCOPES] = [s for s in str(scopes).split(",") if s]
        span.set_attributes(facts)

    ctx = otel_context.get_current()
    ctx = baggage.set_baggage(BAGGAGE_CURRENT_AGENT, rt.agent_id, ctx)
    ctx = baggage.set_baggage(BAGGAGE_DEPTH, str(depth), ctx)
    if acting_for:
        ctx = baggage.set_baggage(BAGGAGE_ACTING_FOR, str(acting_for), ctx)
    if delegating:
        ctx = baggage.set_baggage(BAGGAGE_DELEGATING_AGENT, delegating, ctx)
    if scopes:
        ctx = baggage.set_baggage(BAGGAGE_SCOPES, str(scopes), ctx)
    return ctx
