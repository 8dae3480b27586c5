"""OpenAI Agents SDK: spans from the SDK's own tracing hook, policy decisions around function tools.

Spans come from a ``TracingProcessor`` registered with the SDK, mapped to the GenAI conventions:

=====================  ==============================================================================
SDK span               OTel span
=====================  ==============================================================================
task (one run)         ``invoke_workflow {workflow_name}`` (root; ``gen_ai.conversation.id`` = group_id)
agent                  ``invoke_agent {agent}`` (tokens summed over its turns)
function               ``execute_tool {tool}`` (the policy decision is recorded here)
handoff                ``handoff {to_agent}`` (``gen_ai.agent.name`` = from, ``govtrace.action.target`` = to)
generation / response  ``chat {model}`` with token usage (when the model reports one)
turn, guardrail, …     no span: their children attach to the nearest mapped ancestor
=====================  ==============================================================================

A handoff stays inside this agent process's identity (same credential, same policy): it is recorded
as a span, not as a delegation; delegation is for crossing identities (tasks, MCP).

Enforcement wraps the SDK's function-tool invocation (``_invoke_function_tool_with_metadata``, the
one place every function tool, agent-as-tool and MCP tool is invoked): the decision is recorded on
the tool's span with the model's ``tool_call_id``; a denied tool does not run and the model
receives the denial text as the tool's output.

When another OTel instrumentation of this SDK is active (OpenInference, OpenLLMetry, the official
one), our processor steps aside for that run and the decision enriches *their* tool span.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection
from typing import Any

import agents.run_internal.tool_execution as tool_execution
import agents.tool as agents_tool
from agents.tracing import TracingProcessor, add_trace_processor, get_trace_provider
from agents.tracing import get_current_span as current_sdk_span
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import SpanKind, Status, StatusCode
from wrapt import wrap_function_wrapper

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.enforcement import Denial
from govtrace.instrumentation.governed import (
    FAULTS,
    run_governed_async,
    runtime,
    third_party_instrumentation,
)
from govtrace.instrumentation.telemetry import current_delegation

_INVOKE = "_invoke_function_tool_with_metadata"


class GovtraceOpenAIAgentsInstrumentor(BaseInstrumentor):
    """Entry point ``govtrace_openai_agents``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai-agents >= 0.24",)

    def _instrument(self, **kwargs: Any) -> None:
        runtime()  # configuration errors surface now, not in the first tool call
        _PROCESSOR.enabled = True
        _PROCESSOR.register()
        wrap_function_wrapper(tool_execution, _INVOKE, _invoke_function_tool)
        wrap_function_wrapper(agents_tool, _INVOKE, _invoke_function_tool)

    def _uninstrument(self, **kwargs: Any) -> None:
        # The SDK has no way to remove one processor: ours stays registered and goes quiet.
        _PROCESSOR.enabled = False
        unwrap(tool_execution, _INVOKE)
        unwrap(agents_tool, _INVOKE)


# --- enforcement ------------------------------------------------------------------------------------
async def _invoke_function_tool(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    try:
        function_tool = kwargs["function_tool"]
        tool_context = kwargs["context"]
        raw_arguments = kwargs["arguments"]
        tool = function_tool.name
        arguments = _parse_arguments(raw_arguments)
        call_id = getattr(tool_context, "tool_call_id", None)
        span = _PROCESSOR.otel_span(current_sdk_span())
    except Exception as exc:
        FAULTS.record("openai_agents_invoke", exc)
        return await wrapped(*args, **kwargs)

    result = await run_governed_async(tool, arguments, lambda: wrapped(*args, **kwargs), call_id=call_id, span=span)
    if isinstance(result, Denial):
        return agents_tool._FunctionToolInvocationResult(str(result))
    return result


def _parse_arguments(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"input": raw}


# --- spans ------------------------------------------------------------------------------------------
class _Node:
    """One SDK span: the OTel span it maps to (or None), the context its children start in."""

    __slots__ = ("kind", "span", "context", "agent", "usage", "parent")

    def __init__(self, kind: str, span: Any, context: Any, agent: str | None, parent: _Node | None):
        self.kind = kind
        self.span = span
        self.context = context
        self.agent = agent
        self.usage = [0, 0]
        self.parent = parent


class _Run:
    __slots__ = ("context", "conversation_id", "step_aside")

    def __init__(self, context: Any, conversation_id: str | None, step_aside: bool):
        self.context = context
        self.conversation_id = conversation_id
        self.step_aside = step_aside


class GovtraceTracingProcessor(TracingProcessor):
    """Maps the SDK's traces and spans to OTel spans on the govtrace tracer."""

    def __init__(self) -> None:
        self.enabled = False
        self._registered = False
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._nodes: dict[str, _Node] = {}

    def register(self) -> None:
        """Add this processor to the SDK once (again, if ``set_trace_processors`` replaced the list since)."""
        with self._lock:
            multi = getattr(get_trace_provider(), "_multi_processor", None)
            registered = getattr(multi, "_processors", None)
            if (self in registered) if registered is not None else self._registered:
                return
            add_trace_processor(self)
            self._registered = True

    def otel_span(self, sdk_span: Any) -> Any:
        """Our OTel span for an SDK span (None when stepping aside or unknown)."""
        node = self._nodes.get(getattr(sdk_span, "span_id", None)) if sdk_span is not None else None
        return node.span if node is not None else None

    # TracingProcessor --------------------------------------------------------------------------------
    def on_trace_start(self, trace_obj: Any) -> None:
        if not self.enabled:
            return
        try:
            other = third_party_instrumentation("openai_agents")
            self._runs[trace_obj.trace_id] = _Run(
                otel_context.get_current(), getattr(trace_obj, "group_id", None), step_aside=other is not None
            )
        except Exception as exc:
            FAULTS.record("openai_agents_trace", exc)

    def on_trace_end(self, trace_obj: Any) -> None:
        self._runs.pop(getattr(trace_obj, "trace_id", None), None)

    def on_span_start(self, sdk_span: Any) -> None:
        run = self._runs.get(sdk_span.trace_id)
        if run is None or run.step_aside:
            return
        try:
            parent = self._nodes.get(sdk_span.parent_id) if sdk_span.parent_id else None
            parent_context = parent.context if parent is not None else run.context
            agent = parent.agent if parent is not None else None
            span = self._start(sdk_span.span_data, parent_context, agent, run)
            data = sdk_span.span_data
            if data.type == "agent":
                agent = data.name
            context = trace.set_span_in_context(span, parent_context) if span is not None else parent_context
            self._nodes[sdk_span.span_id] = _Node(data.type, span, context, agent, parent)
        except Exception as exc:
            FAULTS.record("openai_agents_span_start", exc)

    def on_span_end(self, sdk_span: Any) -> None:
        node = self._nodes.pop(sdk_span.span_id, None)
        if node is None:
            return
        try:
            self._finish(node, sdk_span)
        except Exception as exc:
            FAULTS.record("openai_agents_span_end", exc)
        finally:
            if node.span is not None:
                node.span.end()

    def shutdown(self) -> None:
        return None

    def force_flush(self) -> None:
        return None

    # mapping ---------------------------------------------------------------------------------------------
    def _start(self, data: Any, parent_context: Any, agent: str | None, run: _Run) -> Any:
        rt = runtime()
        kind = data.type
        attrs: dict[str, Any] = {A.GEN_AI_AGENT_ID: rt.agent_id}
        if kind == "task":
            name = f"{A.OP_INVOKE_WORKFLOW} {data.name}"
            attrs.update({A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW, A.GEN_AI_WORKFLOW_NAME: data.name})
        elif kind == "agent":
            name = f"{A.OP_INVOKE_AGENT} {data.name}"
            attrs.update({A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_AGENT, A.GEN_AI_AGENT_NAME: data.name})
            attrs.update(_delegation_attributes())
        elif kind == "function":
            name = f"{A.OP_EXECUTE_TOOL} {data.name}"
            attrs.update({A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL, A.GEN_AI_TOOL_NAME: data.name,
                          A.GEN_AI_TOOL_TYPE: "function"})
            if agent:
                attrs[A.GEN_AI_AGENT_NAME] = agent
        elif kind == "handoff":
            name = "handoff"
            if data.from_agent:
                attrs[A.GEN_AI_AGENT_NAME] = data.from_agent
        elif kind in ("generation", "response"):
            model = getattr(data, "model", None)
            name = f"{A.OP_CHAT} {model}" if model else A.OP_CHAT
            attrs[A.GEN_AI_OPERATION_NAME] = A.OP_CHAT
            if model:
                attrs[A.GEN_AI_REQUEST_MODEL] = model
            if agent:
                attrs[A.GEN_AI_AGENT_NAME] = agent
        else:
            return None
        if run.conversation_id and kind in ("task", "agent", "generation", "response"):
            attrs[A.GEN_AI_CONVERSATION_ID] = run.conversation_id
        span_kind = SpanKind.CLIENT if kind in ("generation", "response") else SpanKind.INTERNAL
        return rt.tracer.start_span(name, context=parent_context, kind=span_kind, attributes=attrs)

    def _finish(self, node: _Node, sdk_span: Any) -> None:
        data = sdk_span.span_data
        kind = data.type
        if kind == "turn":
            _add_usage(_agent_node(node), getattr(data, "usage", None))
            return
        span = node.span
        if span is None:
            return
        if kind == "agent" and any(node.usage):
            span.set_attributes({A.GEN_AI_USAGE_INPUT_TOKENS: node.usage[0], A.GEN_AI_USAGE_OUTPUT_TOKENS: node.usage[1]})
        elif kind == "handoff" and data.to_agent:
            span.update_name(f"handoff {data.to_agent}")
            span.set_attribute(A.ACTION_TARGET, data.to_agent)
        elif kind == "generation":
            _set_usage(span, getattr(data, "usage", None))
        elif kind == "response":
            response = getattr(data, "response", None)
            if response is not None and getattr(response, "model", None):
                span.update_name(f"{A.OP_CHAT} {response.model}")
                span.set_attribute(A.GEN_AI_RESPONSE_MODEL, response.model)
            usage = getattr(response, "usage", None)
            if usage is not None:
                _set_usage(span, {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens})
        error = sdk_span.error
        if error:
            if A.ERROR_TYPE not in (getattr(span, "attributes", None) or {}):
                span.set_attribute(A.ERROR_TYPE, "tool_error" if kind == "function" else "_OTHER")
            span.set_status(Status(StatusCode.ERROR, str(error.get("message") or "")))


def _agent_node(node: _Node) -> _Node | None:
    current = node.parent
    while current is not None and current.kind != "agent":
        current = current.parent
    return current


def _add_usage(node: _Node | None, usage: Any) -> None:
    if node is None or not isinstance(usage, dict):
        return
    node.usage[0] += int(usage.get("input_tokens") or 0)
    node.usage[1] += int(usage.get("output_tokens") or 0)


def _set_usage(span: Any, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    tokens_in = usage.get("input_tokens", usage.get("prompt_tokens"))
    tokens_out = usage.get("output_tokens", usage.get("completion_tokens"))
    if tokens_in is not None:
        span.set_attribute(A.GEN_AI_USAGE_INPUT_TOKENS, int(tokens_in))
    if tokens_out is not None:
        span.set_attribute(A.GEN_AI_USAGE_OUTPUT_TOKENS, int(tokens_out))


def _delegation_attributes() -> dict[str, Any]:
    delegation = current_delegation()
    attrs: dict[str, Any] = {A.DELEGATION_DEPTH: delegation["depth"]}
    if delegation["acting_for"]:
        attrs[A.DELEGATION_ACTING_FOR] = delegation["acting_for"]
    if delegation["delegating_agent"]:
        attrs[A.DELEGATION_DELEGATING_AGENT] = delegation["delegating_agent"]
    return attrs


_PROCESSOR = GovtraceTracingProcessor()
