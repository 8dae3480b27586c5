"""LangChain / LangGraph: spans from callbacks, policy decisions inside the tool run.

Spans come from LangChain's own hook, a ``BaseCallbackHandler`` added to every callback manager:

- ``invoke_agent {name}`` for each agent run: a run carrying ``lc_agent_name`` (``create_agent``) or
  the root of a LangGraph graph (``create_react_agent``), with ``gen_ai.conversation.id`` from the
  ``thread_id`` and the delegation context of the caller;
- ``chat {model}`` (CLIENT) for each model call, with token usage;
- ``execute_tool {tool}`` for each tool run, with the model's ``tool_call_id``.

Callbacks cannot stop a tool, so enforcement wraps the tool run: ``BaseTool.run``/``arun`` open a
slot for the call, and the tool class's own ``_run``/``_arun`` (patched on first use, restored by
``uninstrument``) asks the enforcer. This happens after ``on_tool_start``, so the decision lands on
the tool span already opened for this call: ours, or another instrumentation's. A denied tool does
not run; the model receives the denial text as the tool's output (``ToolMessage`` status "error").

When OpenInference, OpenLLMetry or the official LangChain instrumentation is active, our handler
steps aside (no spans of its own) and the decision enriches their tool span.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
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
    current_slot,
    guarded,
    run_governed,
    run_governed_async,
    runtime,
    third_party_instrumentation,
    tool_slot,
)
from govtrace.instrumentation.telemetry import current_delegation

_GRAPH_INTEGRATIONS = ("langgraph", "langchain_create_agent")
_CONTROL_FLOW = ("GraphBubbleUp",)  # LangGraph interrupts and Command jumps travel as exceptions


class GovtraceLangChainInstrumentor(BaseInstrumentor):
    """Entry point ``govtrace_langchain``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("langchain-core >= 1.0",)

    def _instrument(self, **kwargs: Any) -> None:
        runtime()  # configuration errors surface now, not in the first tool call
        _HANDLER.enabled = True
        wrap_function_wrapper("langchain_core.callbacks.base", "BaseCallbackManager.__init__", _add_handler)
        wrap_function_wrapper("langchain_core.tools.base", "BaseTool.run", _tool_run)
        wrap_function_wrapper("langchain_core.tools.base", "BaseTool.arun", _tool_arun)

    def _uninstrument(self, **kwargs: Any) -> None:
        _HANDLER.enabled = False
        unwrap(BaseCallbackManager, "__init__")
        unwrap(BaseTool, "run")
        unwrap(BaseTool, "arun")
        with _PATCH_LOCK:
            for owner, method in _PATCHED:
                unwrap(owner, method)
            _PATCHED.clear()


# --- enforcement ------------------------------------------------------------------------------------
_PATCH_LOCK = threading.Lock()
_PATCHED: set[tuple[type, str]] = set()


def _tool_run(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    try:
        slot = _open_slot(instance, args, kwargs)
    except Exception as exc:
        FAULTS.record("langchain_tool_run", exc)
        return wrapped(*args, **kwargs)
    with slot as opened:
        output = wrapped(*args, **kwargs)
    return _mark_denied(output, opened)


async def _tool_arun(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    try:
        slot = _open_slot(instance, args, kwargs)
    except Exception as exc:
        FAULTS.record("langchain_tool_run", exc)
        return await wrapped(*args, **kwargs)
    with slot as opened:
        output = await wrapped(*args, **kwargs)
    return _mark_denied(output, opened)


def _open_slot(instance: Any, args: tuple, kwargs: dict) -> Any:
    _enforce_in(type(instance))
    tool_input = args[0] if args else kwargs.get("tool_input")
    return tool_slot(instance.name, kwargs.get("tool_call_id"), _arguments(instance, tool_input))


def _mark_denied(output: Any, slot: Any) -> Any:
    if slot.denial is not None and isinstance(output, ToolMessage):
        with guarded("langchain_denied_message"):
            output.status = "error"
    return output


def _enforce_in(cls: type) -> None:
    """Patch the tool class's own ``_run``/``_arun`` once (BaseTool's default ``_arun`` calls ``_run``)."""
    for method, wrapper in (("_run", _enforced_run), ("_arun", _enforced_arun)):
        owner = next((klass for klass in cls.__mro__ if method in vars(klass)), None)
        if owner is None or owner is BaseTool or (owner, method) in _PATCHED:
            continue
        with _PATCH_LOCK:
            if (owner, method) not in _PATCHED:
                wrap_function_wrapper(owner, method, wrapper)
                _PATCHED.add((owner, method))


def _claim(instance: Any) -> Any:
    slot = current_slot()
    if slot is None or slot.claimed or slot.tool != getattr(instance, "name", None):
        return None
    slot.claimed = True
    return slot


def _enforced_run(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    slot = _claim(instance)
    if slot is None:
        return wrapped(*args, **kwargs)
    result = run_governed(slot.tool, slot.arguments, lambda: wrapped(*args, **kwargs), call_id=slot.call_id,
                          span=slot.span)
    return _denied_output(instance, slot, result) if isinstance(result, Denial) else result


async def _enforced_arun(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    slot = _claim(instance)
    if slot is None:
        return await wrapped(*args, **kwargs)
    result = await run_governed_async(slot.tool, slot.arguments, lambda: wrapped(*args, **kwargs),
                                      call_id=slot.call_id, span=slot.span)
    return _denied_output(instance, slot, result) if isinstance(result, Denial) else result


def _denied_output(instance: Any, slot: Any, denial: Denial) -> Any:
    slot.denial = denial
    text = str(denial)
    return (text, None) if getattr(instance, "response_format", None) == "content_and_artifact" else text


def _arguments(instance: Any, tool_input: Any) -> dict[str, Any]:
    if isinstance(tool_input, dict):
        filtered = getattr(instance, "_filter_injected_args", None)
        return dict(filtered(tool_input)) if callable(filtered) else dict(tool_input)
    return {} if tool_input is None else {"input": tool_input}


# --- spans ------------------------------------------------------------------------------------------
class _Run:
    __slots__ = ("span", "context", "agent", "step_aside", "conversation_id")

    def __init__(self, span: Any, context: Any, agent: str | None, step_aside: bool, conversation_id: str | None):
        self.span = span
        self.context = context
        self.agent = agent
        self.step_aside = step_aside
        self.conversation_id = conversation_id


class GovtraceCallbackHandler(BaseCallbackHandler):
    """Opens our spans from LangChain's callbacks. Never raises into LangChain."""

    run_inline = True  # called in the caller's context, so the tool slot and the OTel context are visible
    raise_error = False

    def __init__(self) -> None:
        super().__init__()
        self.enabled = False
        self._runs: dict[UUID, _Run] = {}

    # chains and agents ---------------------------------------------------------------------------------
    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        with guarded("langchain_chain_start"):
            metadata = metadata or {}
            parent = self._runs.get(parent_run_id) if parent_run_id else None
            named = metadata.get("lc_agent_name")
            if parent is None:
                base = otel_context.get_current()
                step_aside = not self.enabled or third_party_instrumentation("langchain") is not None
                conversation = metadata.get("thread_id")
                agent = named or kwargs.get("name") or _serialized_name(serialized)
                starts_agent = bool(named) or metadata.get("ls_integration") in _GRAPH_INTEGRATIONS
            else:
                base, step_aside, conversation = parent.context, parent.step_aside, parent.conversation_id
                agent = named or parent.agent
                starts_agent = bool(named) and named != parent.agent
            span = None
            if starts_agent and not step_aside:
                attrs = {
                    A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_AGENT,
                    A.GEN_AI_AGENT_NAME: agent,
                    A.GEN_AI_AGENT_ID: runtime().agent_id,
                    **_delegation_attributes(base),
                }
                if conversation:
                    attrs[A.GEN_AI_CONVERSATION_ID] = str(conversation)
                span = runtime().tracer.start_span(f"{A.OP_INVOKE_AGENT} {agent}", context=base, attributes=attrs)
            self._track(run_id, span, base, agent if (starts_agent or parent) else None, step_aside, conversation)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    # models --------------------------------------------------------------------------------------------------
    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        with guarded("langchain_model_start"):
            self._model_start(run_id, parent_run_id, metadata or {}, kwargs.get("invocation_params") or {})

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        with guarded("langchain_model_start"):
            self._model_start(run_id, parent_run_id, metadata or {}, kwargs.get("invocation_params") or {})

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with guarded("langchain_model_end"):
            run = self._runs.get(run_id)
            if run is not None and run.span is not None:
                _record_usage(run.span, response)
        self._end(run_id, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    # tools ---------------------------------------------------------------------------------------------------
    def on_tool_start(self, serialized: Any, input_str: str, *, run_id: UUID, parent_run_id: UUID | None = None,
                      metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        with guarded("langchain_tool_start"):
            parent = self._runs.get(parent_run_id) if parent_run_id else None
            base = parent.context if parent is not None else otel_context.get_current()
            step_aside = (parent.step_aside if parent is not None
                          else not self.enabled or third_party_instrumentation("langchain") is not None)
            name = (serialized or {}).get("name") or kwargs.get("name") or "tool"
            span = None
            if not step_aside:
                attrs = {
                    A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL,
                    A.GEN_AI_TOOL_NAME: name,
                    A.GEN_AI_TOOL_TYPE: "function",
                    A.GEN_AI_AGENT_ID: runtime().agent_id,
                }
                if kwargs.get("tool_call_id"):
                    attrs[A.GEN_AI_TOOL_CALL_ID] = kwargs["tool_call_id"]
                if parent is not None and parent.agent:
                    attrs[A.GEN_AI_AGENT_NAME] = parent.agent
                span = runtime().tracer.start_span(f"{A.OP_EXECUTE_TOOL} {name}", context=base, attributes=attrs)
                slot = current_slot()
                if slot is not None and slot.tool == name and slot.span is None and not slot.claimed:
                    slot.span = span
            agent = parent.agent if parent is not None else None
            self._track(run_id, span, base, agent, step_aside, parent.conversation_id if parent else None)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    # bookkeeping ---------------------------------------------------------------------------------------------
    def _model_start(self, run_id: UUID, parent_run_id: UUID | None, metadata: dict, params: dict) -> None:
        parent = self._runs.get(parent_run_id) if parent_run_id else None
        base = parent.context if parent is not None else otel_context.get_current()
        step_aside = (parent.step_aside if parent is not None
                      else not self.enabled or third_party_instrumentation("langchain") is not None)
        span = None
        if not step_aside:
            model = metadata.get("ls_model_name") or params.get("model") or params.get("model_name")
            attrs: dict[str, Any] = {A.GEN_AI_OPERATION_NAME: A.OP_CHAT, A.GEN_AI_AGENT_ID: runtime().agent_id}
            if model:
                attrs[A.GEN_AI_REQUEST_MODEL] = str(model)
            if metadata.get("ls_provider"):
                attrs[A.GEN_AI_PROVIDER_NAME] = str(metadata["ls_provider"])
            if parent is not None and parent.agent:
                attrs[A.GEN_AI_AGENT_NAME] = parent.agent
            if parent is not None and parent.conversation_id:
                attrs[A.GEN_AI_CONVERSATION_ID] = str(parent.conversation_id)
            name = f"{A.OP_CHAT} {model}" if model else A.OP_CHAT
            span = runtime().tracer.start_span(name, context=base, kind=SpanKind.CLIENT, attributes=attrs)
        self._track(run_id, span, base, parent.agent if parent else None, step_aside,
                    parent.conversation_id if parent else None)

    def _track(self, run_id: UUID, span: Any, base: Any, agent: str | None, step_aside: bool,
               conversation: Any) -> None:
        context = trace.set_span_in_context(span, base) if span is not None else base
        self._runs[run_id] = _Run(span, context, agent, step_aside, conversation)

    def _end(self, run_id: UUID, error: BaseException | None) -> None:
        run = self._runs.pop(run_id, None)
        if run is None or run.span is None:
            return
        try:
            if error is not None and not _is_control_flow(error):
                run.span.set_attribute(A.ERROR_TYPE, type(error).__qualname__)
                run.span.record_exception(error)
                run.span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__qualname__))
        except Exception as exc:
            FAULTS.record("langchain_end", exc)
        finally:
            run.span.end()


def _serialized_name(serialized: Any) -> str | None:
    if isinstance(serialized, dict):
        return serialized.get("name") or (serialized.get("id") or [None])[-1]
    return None


def _is_control_flow(error: BaseException) -> bool:
    return any(klass.__name__ in _CONTROL_FLOW for klass in type(error).__mro__)


def _delegation_attributes(ctx: Any) -> dict[str, Any]:
    token = otel_context.attach(ctx)
    try:
        delegation = current_delegation()
    finally:
        otel_context.detach(token)
    attrs: dict[str, Any] = {A.DELEGATION_DEPTH: delegation["depth"]}
    if delegation["acting_for"]:
        attrs[A.DELEGATION_ACTING_FOR] = delegation["acting_for"]
    if delegation["delegating_agent"]:
        attrs[A.DELEGATION_DELEGATING_AGENT] = delegation["delegating_agent"]
    return attrs


def _record_usage(span: Any, response: Any) -> None:
    tokens_in = tokens_out = 0
    seen = False
    model = None
    for generations in getattr(response, "generations", None) or []:
        for generation in generations:
            message = getattr(generation, "message", None)
            usage = getattr(message, "usage_metadata", None)
            if usage:
                seen = True
                tokens_in += int(usage.get("input_tokens") or 0)
                tokens_out += int(usage.get("output_tokens") or 0)
            model = model or (getattr(message, "response_metadata", None) or {}).get("model_name")
    output = getattr(response, "llm_output", None) or {}
    if not seen:
        usage = output.get("token_usage") or output.get("usage") or {}
        if usage:
            seen = True
            tokens_in = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
            tokens_out = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
    if seen:
        span.set_attributes({A.GEN_AI_USAGE_INPUT_TOKENS: tokens_in, A.GEN_AI_USAGE_OUTPUT_TOKENS: tokens_out})
    model = model or output.get("model_name")
    if model:
        span.set_attribute(A.GEN_AI_RESPONSE_MODEL, str(model))


def _add_handler(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> None:
    wrapped(*args, **kwargs)
    with guarded("langchain_add_handler"):
        if _HANDLER.enabled and _HANDLER not in instance.inheritable_handlers:
            instance.add_handler(_HANDLER, inherit=True)


_HANDLER = GovtraceCallbackHandler()
