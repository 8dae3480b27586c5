"""The governed-call engine every entry point shares: ``@governed_tool`` and each framework instrumentor.

``run_governed`` (and ``run_governed_async``) runs one tool call: find the span that represents it
(the framework's own, ours, or a third party's when that instrumentation is active) or open an
``execute_tool`` span; record who acts, for whom, on what data; build a ``ToolRequest``; let the
configured enforcer decide and run the tool or return a ``Denial``. Three promises hold throughout:

- the host's exceptions pass through untouched (same object, same traceback);
- our own faults, a faulty enforcer included, are counted in ``FAULTS``, logged once per kind, and
  never change the outcome: the call runs (fail open) and its span carries no decision, which the
  readiness answers report as "no policy check recorded";
- spans are exported in the background, so an unreachable collector never blocks a tool call.

The configuration it runs with (``Governance``) is set by ``setup.instrument()``, or built from the
environment on first use (zero-code mode).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.enforcement import Denial, Enforcer, ToolRequest
from govtrace.instrumentation.faults import FaultCounter
from govtrace.instrumentation.redaction import content_attribute
from govtrace.instrumentation.telemetry import (
    INSTRUMENTATION_NAME,
    AgentTelemetry,
    ToolCall,
    current_delegation,
)

T = TypeVar("T")
logger = logging.getLogger("govtrace.instrumentation")

# Third-party keys, read only to recognise another instrumentation's tool span (never emitted).
_OI_SPAN_KIND = "openinference.span.kind"
_OI_TOOL_NAME = "tool.name"
_TRACELOOP_SPAN_KIND = "traceloop.span.kind"
_TRACELOOP_ENTITY_NAME = "traceloop.entity.name"


# --- faults -----------------------------------------------------------------------------------------
FAULTS = FaultCounter(logger, "instrumentation", "govtrace.instrumentation.FAULTS")


@contextmanager
def guarded(kind: str):
    """Run our own bookkeeping; a fault in it is counted and swallowed, never raised to the host."""
    try:
        yield
    except Exception as exc:
        FAULTS.record(kind, exc)


# --- what a tool does, for the policy -----------------------------------------------------------------
@dataclass(frozen=True)
class ToolSpec:
    """What a tool touches, for its ToolRequest. A field may be a callable of the call's arguments."""

    resource: Any = None
    operation: Any = None
    classification: Any = None
    record_count: Any = None
    amount: Any = None
    currency: Any = None
    reversible: Any = None
    regulatory_scope: Any = ()
    target: Any = None
    estimated_cost: Any = None

    def resolve(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = value(arguments) if callable(value) else value
        return values


_TOOL_SPECS: dict[str, ToolSpec] = {}


def describe_tool(name: str, **spec: Any) -> None:
    """Say what a framework tool touches (resource, operation, classification, …) so its requests carry it."""
    register_tool(name, ToolSpec(**spec))


def register_tool(name: str, spec: ToolSpec) -> None:
    _TOOL_SPECS[name] = spec


# --- the configured runtime -------------------------------------------------------------------------
class Governance:
    """The instrumentation configured for this process: identity, enforcer, content switch, frameworks."""

    def __init__(self, telemetry: AgentTelemetry, enforcer: Enforcer, *, capture_content: bool = False):
        self.telemetry = telemetry
        self.enforcer = enforcer
        self.capture_content = capture_content
        self.frameworks: list[str] = []
        self.faults = FAULTS
        self._instrumentors: list[Any] = []

    @property
    def agent_id(self) -> str:
        return self.telemetry.agent_id

    @property
    def name(self) -> str:
        return self.telemetry.name

    @property
    def tracer(self) -> trace.Tracer:
        return self.telemetry.tracer

    def flush(self, timeout_millis: int = 10_000) -> bool:
        return self.telemetry.flush(timeout_millis)


_LOCK = threading.RLock()
_RUNTIME: Governance | None = None
_DEFAULT: Callable[[], Governance] | None = None  # set by setup: the configuration from the environment


def runtime() -> Governance:
    """The configured Governance; built from the environment on first use when ``instrument()`` was not called."""
    global _RUNTIME
    current = _RUNTIME
    if current is not None:
        return current
    with _LOCK:
        if _RUNTIME is None:
            if _DEFAULT is None:
                # setup registers the configuration from the environment when it is imported;
                # instrumentors reach this module without it (the package loads it lazily).
                importlib.import_module("govtrace.instrumentation.setup")
            if _DEFAULT is None:
                raise RuntimeError("govtrace.instrumentation.setup did not register a default configuration")
            _RUNTIME = _DEFAULT()
        return _RUNTIME


def set_runtime(governance: Governance | None) -> Governance | None:
    """Install a configuration (None forgets it); returns the previous one."""
    global _RUNTIME
    with _LOCK:
        previous, _RUNTIME = _RUNTIME, governance
    return previous


def set_default_runtime(factory: Callable[[], Governance]) -> None:
    global _DEFAULT
    _DEFAULT = factory


def third_party_instrumentation(framework_token: str) -> str | None:
    """The module of another active OTel instrumentor for this framework (OpenInference, OpenLLMetry, official)."""
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

    pending = list(BaseInstrumentor.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        module = cls.__module__
        if module.startswith("govtrace") or framework_token not in module:
            continue
        instance = cls.__dict__.get("_instance")
        if instance is not None and getattr(instance, "is_instrumented_by_opentelemetry", False):
            return module
    return None


# --- the governed-call engine -------------------------------------------------------------------------
_GOVERNED: ContextVar[tuple[Any, str] | None] = ContextVar("govtrace_governed", default=None)
_RECENT_FOREIGN: ContextVar[tuple[Any, ...]] = ContextVar("govtrace_recent_foreign_spans", default=())
_SLOT: ContextVar[ToolSlot | None] = ContextVar("govtrace_tool_slot", default=None)


class ToolSlot:
    """A framework tool call about to start: the span the framework opens for it is collected here."""

    __slots__ = ("tool", "call_id", "arguments", "span", "foreign", "claimed", "denial")

    def __init__(self, tool: str, call_id: str | None = None, arguments: Any = None):
        self.tool = tool
        self.call_id = call_id
        self.arguments = arguments
        self.span: Any = None  # opened by one of our framework hooks
        self.foreign: list[Any] = []  # opened by another instrumentation meanwhile
        self.claimed = False
        self.denial: Denial | None = None


@contextmanager
def tool_slot(tool: str, call_id: str | None = None, arguments: Any = None):
    slot = ToolSlot(tool, call_id, arguments)
    token = _SLOT.set(slot)
    try:
        yield slot
    finally:
        _SLOT.reset(token)


def current_slot() -> ToolSlot | None:
    return _SLOT.get()


def is_governed(tool: str) -> bool:
    """True when this code runs directly inside the governed call of ``tool`` (a wrapper of the same call)."""
    governed = _GOVERNED.get()
    return governed is not None and governed[1] == tool and governed[0] is trace.get_current_span()


class _Prepared:
    """One call ready for the enforcer: the configuration, its span, its request."""

    __slots__ = ("rt", "call", "request", "ours")

    def __init__(self, rt: Governance, call: ToolCall, request: ToolRequest, ours: bool):
        self.rt = rt
        self.call = call
        self.request = request
        self.ours = ours  # our span (we may mark errors on it), not another instrumentation's


def run_governed(
    tool: str,
    arguments: Any,
    execute: Callable[[], T],
    *,
    call_id: str | None = None,
    span: Any = None,
    spec: ToolSpec | None = None,
    on_result: Callable[[Any, Any], None] | None = None,
) -> T | Denial:
    """Run one tool call through the enforcer, in its span. Returns the tool's result or a Denial."""
    if is_governed(tool):
        return execute()
    with ExitStack() as stack:
        prepared = _prepare(stack, tool, arguments, call_id, span, spec)
        if prepared is None:
            return execute()
        try:
            result = _enforce_sync(prepared, execute)
        except BaseException as exc:
            _record_error(prepared, exc)
            raise
        _after(prepared, result, on_result)
        return result


async def run_governed_async(
    tool: str,
    arguments: Any,
    execute: Callable[[], Awaitable[T]],
    *,
    call_id: str | None = None,
    span: Any = None,
    spec: ToolSpec | None = None,
    on_result: Callable[[Any, Any], None] | None = None,
) -> T | Denial:
    """``run_governed`` for a coroutine tool: the enforcer decides in a worker thread (an approval wait
    never blocks the event loop) and the tool itself runs in the caller's task."""
    if is_governed(tool):
        return await execute()
    with ExitStack() as stack:
        prepared = _prepare(stack, tool, arguments, call_id, span, spec)
        if prepared is None:
            return await execute()
        try:
            result = await _enforce_async(prepared, execute)
        except BaseException as exc:
            _record_error(prepared, exc)
            raise
        _after(prepared, result, on_result)
        return result


def _prepare(
    stack: ExitStack, tool: str, arguments: Any, call_id: str | None, span: Any, spec: ToolSpec | None
) -> _Prepared | None:
    try:
        rt = runtime()
        args = _as_mapping(arguments)
        facts = (spec or _TOOL_SPECS.get(tool) or ToolSpec()).resolve(args)
        delegation = current_delegation()
        actor = delegation["current_agent"] or rt.agent_id
        existing = span if span is not None and span.is_recording() else _existing_tool_span(tool)
        if existing is not None:
            call = ToolCall(existing, args)
            _enrich(existing, rt, actor, call, call_id, delegation)
        else:
            call = stack.enter_context(rt.telemetry.tool_call(tool, arguments=args, call_id=call_id))
            if actor != rt.agent_id:
                call.span.set_attribute(A.GEN_AI_AGENT_ID, actor)
            if rt.capture_content:
                call.span.set_attribute(A.GEN_AI_TOOL_CALL_ARGUMENTS, content_attribute(args))
        _record_facts(call.span, facts)
        request = ToolRequest(
            agent_id=actor,
            tool=tool,
            arguments=args,
            resource=facts["resource"],
            operation=facts["operation"],
            classification=facts["classification"],
            record_count=facts["record_count"],
            amount=facts["amount"],
            currency=facts["currency"] or "USD",
            reversible=facts["reversible"],
            regulatory_scope=tuple(facts["regulatory_scope"] or ()),
            estimated_cost=facts["estimated_cost"],
            task_id=_trace_id(call.span),
            acting_for=delegation["acting_for"],
            delegating_agent=delegation["delegating_agent"],
            delegation_depth=delegation["depth"],
            delegated_scopes=tuple(delegation["scopes"]),
        )
        return _Prepared(rt, call, request, ours=_is_ours(call.span))
    except Exception as exc:
        FAULTS.record("prepare", exc)
        return None


class _Outcome:
    """What the tool did when the enforcer let it run; replayed so the host sees exactly that."""

    __slots__ = ("called", "value", "error", "traceback", "done")

    def __init__(self) -> None:
        self.called = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.traceback: Any = None
        self.done = threading.Event()

    def fail(self, exc: BaseException) -> None:
        self.error, self.traceback = exc, exc.__traceback__
        self.done.set()

    def succeed(self, value: Any) -> None:
        self.value = value
        self.done.set()

    def replay(self) -> Any:
        if self.error is not None:
            raise self.error.with_traceback(self.traceback)
        return self.value


def _enforce_sync(prepared: _Prepared, execute: Callable[[], T]) -> T | Denial:
    outcome = _Outcome()

    def run_tool() -> T:
        if outcome.called:  # an enforcer asking twice never runs a tool twice
            return outcome.replay()
        outcome.called = True
        try:
            with _governing(prepared.call.span, prepared.request.tool):
                value = execute()
        except BaseException as exc:
            outcome.fail(exc)
            raise
        outcome.succeed(value)
        return value

    try:
        decided = prepared.rt.enforcer.run(prepared.call, prepared.request, run_tool)
    except BaseException as exc:
        if outcome.called:
            if exc is not outcome.error and isinstance(exc, Exception):
                FAULTS.record("enforcer", exc)
            return outcome.replay()
        if not isinstance(exc, Exception):
            raise
        FAULTS.record("enforcer", exc)
        return run_tool()
    return outcome.replay() if outcome.called else decided


async def _enforce_async(prepared: _Prepared, execute: Callable[[], Awaitable[T]]) -> T | Denial:
    enforcer = prepared.rt.enforcer
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): decide inline, then run here
        return await _enforce_inline(enforcer, prepared, execute)
    outcome = _Outcome()
    go: asyncio.Future[None] = loop.create_future()

    def bridge() -> Any:  # the enforcer's execute(), called in its worker thread
        if not outcome.called:
            outcome.called = True
            with guarded("enforcer_bridge"):
                loop.call_soon_threadsafe(_resolve, go)
        outcome.done.wait()
        return outcome.replay()

    def decide() -> tuple[str, Any]:
        try:
            return "returned", enforcer.run(prepared.call, prepared.request, bridge)
        except BaseException as exc:
            return "raised", exc

    decision = asyncio.ensure_future(asyncio.to_thread(decide))
    try:
        await asyncio.wait({go, decision}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        outcome.fail(asyncio.CancelledError())  # an enforcer still deciding will not run the tool
        raise
    if go.done():
        try:
            with _governing(prepared.call.span, prepared.request.tool):
                value = await execute()
        except BaseException as exc:
            outcome.fail(exc)
            if not isinstance(exc, asyncio.CancelledError):
                await _settle(decision, exc)
            raise
        outcome.succeed(value)
        await _settle(decision, None)
        return value
    try:
        kind, payload = decision.result()
    except Exception as exc:  # no worker thread could run the enforcer (executor shut down)
        kind, payload = "raised", exc
    if kind == "returned":
        return payload
    if not isinstance(payload, Exception):
        raise payload
    FAULTS.record("enforcer", payload)
    with _governing(prepared.call.span, prepared.request.tool):
        return await execute()


async def _enforce_inline(enforcer: Enforcer, prepared: _Prepared, execute: Callable[[], Awaitable[T]]) -> T | Denial:
    proceed = object()
    try:
        decided = enforcer.run(prepared.call, prepared.request, lambda: proceed)
    except Exception as exc:
        FAULTS.record("enforcer", exc)
        decided = proceed
    if decided is not proceed:
        return decided
    with _governing(prepared.call.span, prepared.request.tool):
        return await execute()


async def _settle(decision: asyncio.Future[tuple[str, Any]], host_error: BaseException | None) -> None:
    """Let the enforcer finish its bookkeeping after the tool ran; its own faults are only counted."""
    try:
        kind, payload = await decision
    except Exception as exc:
        kind, payload = "raised", exc
    if kind == "raised" and payload is not host_error and isinstance(payload, Exception):
        FAULTS.record("enforcer", payload)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@contextmanager
def _governing(span: Any, tool: str):
    """The tool body runs with its span current (nested spans join it) and marked as governed."""
    token = otel_context.attach(trace.set_span_in_context(span))
    marker = _GOVERNED.set((span, tool))
    try:
        yield
    finally:
        _GOVERNED.reset(marker)
        otel_context.detach(token)


def _after(prepared: _Prepared, result: Any, on_result: Callable[[Any, Any], None] | None) -> None:
    if isinstance(result, Denial):
        return
    with guarded("record_result"):
        span = prepared.call.span
        if prepared.rt.capture_content and (prepared.ours or A.GEN_AI_TOOL_CALL_RESULT not in _attributes(span)):
            span.set_attribute(A.GEN_AI_TOOL_CALL_RESULT, content_attribute(result))
        if on_result is not None and prepared.ours:
            on_result(span, result)


def _record_error(prepared: _Prepared, exc: BaseException) -> None:
    if not prepared.ours or not isinstance(exc, Exception):
        return
    with guarded("record_error"):
        prepared.call.span.set_attribute(A.ERROR_TYPE, type(exc).__qualname__)
        prepared.call.span.set_status(Status(StatusCode.ERROR, str(exc) or type(exc).__qualname__))


def _enrich(span: Any, rt: Governance, actor: str, call: ToolCall, call_id: str | None, delegation: dict) -> None:
    """Our facts on a span someone else opened for this call (a framework hook, another instrumentation)."""
    present = _attributes(span)
    facts: dict[str, Any] = {A.GEN_AI_AGENT_ID: actor, A.DELEGATION_DEPTH: delegation["depth"]}
    if delegation["acting_for"]:
        facts[A.DELEGATION_ACTING_FOR] = delegation["acting_for"]
    if delegation["delegating_agent"]:
        facts[A.DELEGATION_DELEGATING_AGENT] = delegation["delegating_agent"]
    if call.arguments_digest:
        facts[A.ACTION_ARGUMENTS_DIGEST] = call.arguments_digest
    if call_id and A.GEN_AI_TOOL_CALL_ID not in present:
        facts[A.GEN_AI_TOOL_CALL_ID] = call_id
    if rt.capture_content and A.GEN_AI_TOOL_CALL_ARGUMENTS not in present:
        facts[A.GEN_AI_TOOL_CALL_ARGUMENTS] = content_attribute(call.arguments)
    span.set_attributes(facts)


def _record_facts(span: Any, facts: Mapping[str, Any]) -> None:
    values = {
        A.DATA_RESOURCE: facts["resource"],
        A.DATA_OPERATION: facts["operation"],
        A.DATA_CLASSIFICATION: facts["classification"],
        A.DATA_RECORD_COUNT: facts["record_count"],
        A.ACTION_TARGET: facts["target"],
        A.ACTION_AMOUNT: None if facts["amount"] is None else float(facts["amount"]),
        A.ACTION_REVERSIBLE: facts["reversible"],
        A.ACTION_REGULATORY_SCOPE: list(facts["regulatory_scope"]) if facts["regulatory_scope"] else None,
    }
    span.set_attributes({key: value for key, value in values.items() if value is not None})


def _existing_tool_span(tool: str) -> Any:
    """The span another hook or instrumentation already opened for this tool call, if any."""
    slot = _SLOT.get()
    candidates: list[Any] = []
    if slot is not None and slot.tool == tool:
        candidates += [slot.span, *slot.foreign]
    candidates += [trace.get_current_span(), *_RECENT_FOREIGN.get()]
    for span in candidates:
        if span is not None and span.is_recording() and _describes_tool(span, tool):
            return span
    return None


def _describes_tool(span: Any, tool: str) -> bool:
    if getattr(span, "kind", SpanKind.INTERNAL) == SpanKind.CLIENT:
        return False  # e.g. the MCP SDK's "MCP send tools/call" span: the transport, not the tool call
    attrs = _attributes(span)
    if attrs.get(A.GEN_AI_OPERATION_NAME) not in (None, A.OP_EXECUTE_TOOL):
        return False
    if attrs.get(_OI_SPAN_KIND) not in (None, "TOOL") or attrs.get(_TRACELOOP_SPAN_KIND) not in (None, "tool"):
        return False
    if tool in (attrs.get(A.GEN_AI_TOOL_NAME), attrs.get(_OI_TOOL_NAME), attrs.get(_TRACELOOP_ENTITY_NAME)):
        return True
    return getattr(span, "name", None) in (tool, f"{A.OP_EXECUTE_TOOL} {tool}", f"{tool}.tool")


def _attributes(span: Any) -> Mapping[str, Any]:
    return getattr(span, "attributes", None) or {}


def _is_ours(span: Any) -> bool:
    scope = getattr(span, "instrumentation_scope", None)
    return scope is not None and scope.name.startswith(INSTRUMENTATION_NAME)


def _trace_id(span: Any) -> str | None:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def _as_mapping(arguments: Any) -> dict[str, Any]:
    if arguments is None:
        return {}
    if isinstance(arguments, Mapping):
        return dict(arguments)
    return {"input": arguments}


class _ForeignSpanWatcher(SpanProcessor):
    """Notes spans other instrumentations start, so a governed call can enrich theirs instead of adding one."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        try:
            scope = getattr(span, "instrumentation_scope", None)
            if scope is not None and scope.name.startswith(INSTRUMENTATION_NAME):
                return
            slot = _SLOT.get()
            if slot is not None and not slot.claimed:
                slot.foreign.append(span)
            _RECENT_FOREIGN.set((span, *_RECENT_FOREIGN.get()[:7]))
        except Exception as exc:
            FAULTS.record("foreign_span_watch", exc)

    def on_end(self, span: Any) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def watch_foreign_spans(provider: Any) -> None:
    """Add the watcher that lets governed calls enrich other instrumentations' tool spans (once per provider)."""
    add = getattr(provider, "add_span_processor", None)
    if add is None or getattr(provider, "_govtrace_watcher", False):
        return
    add(_ForeignSpanWatcher())
    provider._govtrace_watcher = True
