"""Governance in one line: ``instrument()`` and ``@governed_tool``.

``instrument(agent_id=...)`` configures this process once: an ``AgentTelemetry`` whose tracer
provider becomes the global one (OTEL_* environment honoured), the enforcer (the policy engine when
``policies`` names a file, else ``Unenforced``), the content-capture switch, and the framework
instrumentors that are importable (MCP, OpenAI Agents SDK, LangChain). ``@governed_tool`` governs a
plain Python function. Both run every call through ``governed.run_governed``.

Zero-code mode (``opentelemetry-instrument``) builds the same configuration from the environment:
``GOVTRACE_AGENT_ID``, ``GOVTRACE_POLICIES``, ``GOVTRACE_CAPTURE_CONTENT`` (docs/instrumentation.md).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.enforcement import Enforcer, Unenforced
from govtrace.instrumentation.governed import (
    FAULTS,
    Governance,
    ToolSpec,
    guarded,
    register_tool,
    run_governed,
    run_governed_async,
    set_default_runtime,
    set_runtime,
    watch_foreign_spans,
)
from govtrace.instrumentation.telemetry import INSTRUMENTATION_NAME, AgentTelemetry

logger = logging.getLogger("govtrace.instrumentation")

ENV_AGENT_ID = "GOVTRACE_AGENT_ID"
ENV_POLICIES = "GOVTRACE_POLICIES"
ENV_CAPTURE_CONTENT = "GOVTRACE_CAPTURE_CONTENT"

# framework -> (distribution that must be installed, module, instrumentor class, extra to install)
FRAMEWORKS: dict[str, tuple[str, str, str, str]] = {
    "mcp": ("mcp", "govtrace.instrumentation.mcp", "GovtraceMcpInstrumentor", "mcp"),
    "openai_agents": (
        "openai-agents",
        "govtrace.instrumentation.openai_agents",
        "GovtraceOpenAIAgentsInstrumentor",
        "openai-agents",
    ),
    "langchain": ("langchain-core", "govtrace.instrumentation.langchain", "GovtraceLangChainInstrumentor", "langchain"),
}


class _AdoptedTelemetry(AgentTelemetry):
    """An AgentTelemetry over a tracer provider configured elsewhere (the app, ``opentelemetry-instrument``).

    It deliberately skips ``AgentTelemetry.__init__``: the provider, its resource and its exporters
    belong to whoever built them; identity is stamped on our spans as attributes instead.
    """

    def __init__(self, agent_id: str, name: str | None, provider: Any):
        self.agent_id = agent_id
        self.name = name or agent_id
        self.provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION_NAME)

    def flush(self, timeout_millis: int = 10_000) -> bool:
        flush = getattr(self.provider, "force_flush", None)
        return bool(flush(timeout_millis)) if flush else True

    def shutdown(self) -> None:  # not ours to shut down
        self.flush()


def instrument(
    agent_id: str | None = None,
    *,
    name: str | None = None,
    owner: str | None = None,
    environment: str | None = None,
    credential: str | None = None,
    policies: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    approval_handler: Any = None,
    capture_content: bool = False,
    frameworks: str | Iterable[str] | None = "auto",
    enforcer: Enforcer | None = None,
    exporter: SpanExporter | None = None,
    tracer_provider: Any = None,
) -> Governance:
    """Make this agent process accountable: identity, policy enforcement, tool spans for its frameworks.

    ``agent_id`` defaults to ``GOVTRACE_AGENT_ID``, then ``gen_ai.agent.id`` in ``OTEL_RESOURCE_ATTRIBUTES``,
    then ``OTEL_SERVICE_NAME``. ``policies`` is a policy file for the policy engine (with
    ``approval_handler`` for tier-3 approvals); ``enforcer`` passes any other ``Enforcer`` instead.
    ``endpoint`` or ``exporter`` override where spans go (default: OTLP from the OTEL_* environment).
    ``tracer_provider`` adopts a provider the application already built. ``frameworks`` is ``"auto"``
    (every supported framework that is installed), a list of names from ``FRAMEWORKS``, or None.
    Calling it again replaces the previous configuration.
    """
    agent_id = agent_id or _agent_id_from_environment()
    if not agent_id:
        raise ValueError(f"instrument(): agent_id is required (or set {ENV_AGENT_ID} or OTEL_RESOURCE_ATTRIBUTES "
                         "gen_ai.agent.id)")
    if policies is not None and enforcer is not None:
        raise ValueError("instrument(): give either policies= (a policy file) or enforcer=, not both")
    if approval_handler is not None and policies is None:
        raise ValueError("instrument(): approval_handler= needs policies= (approvals are asked by the policy engine)")
    wanted = _wanted_frameworks(frameworks)
    if enforcer is None:
        enforcer = _policy_enforcer(policies, agent_id, approval_handler) if policies is not None else Unenforced()

    uninstrument()
    if tracer_provider is not None:
        telemetry: AgentTelemetry = _AdoptedTelemetry(agent_id, name, tracer_provider)
    else:
        telemetry = AgentTelemetry(
            agent_id,
            name=name,
            owner=owner,
            environment=environment,
            credential=credential,
            endpoint=endpoint,
            protocol=_otlp_protocol(),
            exporter=exporter if exporter is not None or endpoint is not None else _exporter_from_environment(),
            resource_attributes=_service_name_override(),
        )
    watch_foreign_spans(telemetry.provider)
    _make_global(telemetry.provider)
    governance = Governance(telemetry, enforcer, capture_content=capture_content)
    set_runtime(governance)
    for framework, explicit in wanted:
        _activate(governance, framework, explicit)
    return governance


def uninstrument() -> None:
    """Deactivate the framework instrumentors ``instrument()`` started and forget the configuration.

    Spans already recorded stay queued in the tracer provider; ``Governance.flush()`` sends them now.
    """
    previous = set_runtime(None)
    if previous is None:
        return
    for instrumentor in previous._instrumentors:
        with guarded("uninstrument"):
            instrumentor.uninstrument()


def _make_global(provider: Any) -> None:
    current = trace.get_tracer_provider()
    if current is provider:
        return
    if isinstance(current, trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
        return
    logger.warning(
        "a global tracer provider was already set: govtrace spans use the govtrace provider, spans that "
        "libraries open through the global provider (the MCP SDK's own spans) go to the existing one"
    )


# --- configuration from the environment ------------------------------------------------------------
def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _agent_id_from_environment(resource_attributes: Mapping[str, Any] | None = None) -> str | None:
    if os.environ.get(ENV_AGENT_ID):
        return os.environ[ENV_AGENT_ID]
    attrs = resource_attributes if resource_attributes is not None else Resource.create().attributes
    agent_id = attrs.get(A.GEN_AI_AGENT_ID)
    if agent_id:
        return str(agent_id)
    service = os.environ.get("OTEL_SERVICE_NAME") or attrs.get(A.SERVICE_NAME)
    return str(service) if service and not str(service).startswith("unknown_service") else None


def _from_environment(provider: Any) -> Governance:
    resource = getattr(provider, "resource", None)
    attrs = resource.attributes if resource is not None else None
    agent_id = _agent_id_from_environment(attrs) or "unknown_agent"
    policies = os.environ.get(ENV_POLICIES)
    enforcer = _policy_enforcer(policies, agent_id, None, strict=False) if policies else Unenforced()
    telemetry = _AdoptedTelemetry(agent_id, None, provider)
    watch_foreign_spans(provider)
    return Governance(telemetry, enforcer, capture_content=_truthy(os.environ.get(ENV_CAPTURE_CONTENT)))


def _policy_enforcer(policies: Any, agent_id: str, approval_handler: Any, *, strict: bool = True) -> Enforcer:
    """The policy engine for a policy file.

    ``strict`` (``instrument(policies=...)``): a bad file raises here, at start-up, naming the problem.
    Otherwise (zero-code, nobody to raise to): the engine keeps the load error and denies every call
    (its fail-closed mode), and the error is logged now.
    """
    try:
        from govtrace.instrumentation.policy import PolicyEnforcementPoint, load_policy
    except ImportError as exc:
        raise ImportError(
            f"policies={policies!r} needs the policy engine (govtrace.instrumentation.policy), which could not be "
            f"imported: {exc}. Pass enforcer= instead, or policies=None to run unenforced."
        ) from exc
    if strict:
        return PolicyEnforcementPoint(load_policy(policies), agent_id=agent_id, approval_handler=approval_handler)
    enforcer = PolicyEnforcementPoint(policies, agent_id=agent_id, approval_handler=approval_handler)
    if enforcer.load_error is not None:
        logger.error("%s=%s could not be loaded, every governed call will be denied: %s", ENV_POLICIES, policies,
                     enforcer.load_error)
    return enforcer


def _otlp_protocol() -> str:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    return "http" if (protocol or "grpc").startswith("http") else "grpc"


def _exporter_from_environment() -> SpanExporter | None:
    """``OTEL_TRACES_EXPORTER`` (otlp, console, none) and the OTLP settings the exporter reads itself."""
    kind = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")[0].strip().lower()
    if kind == "none":
        return _NoExport()
    if kind == "console":
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind!r} is not supported here: use otlp, console or none")
    if _otlp_protocol() == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter()


class _NoExport(SpanExporter):
    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS


def _service_name_override() -> dict[str, str] | None:
    service = os.environ.get("OTEL_SERVICE_NAME")
    return {A.SERVICE_NAME: service} if service else None


def _wanted_frameworks(frameworks: str | Iterable[str] | None) -> list[tuple[str, bool]]:
    if frameworks is None:
        return []
    disabled = {name.strip() for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    if frameworks == "auto":
        return [(name, False) for name in FRAMEWORKS if f"govtrace_{name}" not in disabled and _installed(name)]
    names = [frameworks] if isinstance(frameworks, str) else list(frameworks)
    unknown = [name for name in names if name not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"instrument(): unknown frameworks {unknown}; known: {sorted(FRAMEWORKS)} or 'auto'")
    for name in names:
        if not _installed(name):
            dist, _, _, extra = FRAMEWORKS[name]
            raise ImportError(f"instrument(): framework {name!r} needs {dist}: pip install 'govtrace[{extra}]'")
    return [(name, True) for name in names]


def _installed(framework: str) -> bool:
    try:
        importlib.metadata.distribution(FRAMEWORKS[framework][0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _activate(governance: Governance, framework: str, explicit: bool) -> None:
    _, module, class_name, _ = FRAMEWORKS[framework]
    try:
        instrumentor = getattr(importlib.import_module(module), class_name)()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=governance.telemetry.provider)
    except Exception as exc:
        if explicit:
            raise
        FAULTS.record(f"activate_{framework}", exc)
        return
    if not instrumentor.is_instrumented_by_opentelemetry:
        message = f"govtrace_{framework} was not activated: installed versions do not match {instrumentor.instrumentation_dependencies()}"
        if explicit:
            raise RuntimeError(message)
        logger.warning(message)
        return
    governance.frameworks.append(framework)
    governance._instrumentors.append(instrumentor)


# --- @governed_tool ---------------------------------------------------------------------------------
def governed_tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    resource: Any = None,
    operation: Any = None,
    classification: Any = None,
    record_count: Any = None,
    amount: Any = None,
    currency: Any = None,
    reversible: Any = None,
    regulatory_scope: Any = (),
    target: Any = None,
    estimated_cost: Any = None,
) -> Any:
    """Govern a plain Python tool (sync or async): an ``execute_tool`` span, a policy decision, then the call.

    Returns the tool's result, or the ``Denial`` when the policy stops the call (the function does not
    run; ``str(denial)`` is a sentence for a model, ``denial.as_tool_result()`` a dict). Any field may
    be a callable of the call's arguments, e.g. ``amount=lambda args: args["amount"]``. The spec is
    also registered under the tool's name, so a framework tool wrapping this function uses it too.
    """
    spec = ToolSpec(
        resource=resource,
        operation=operation,
        classification=classification,
        record_count=record_count,
        amount=amount,
        currency=currency,
        reversible=reversible,
        regulatory_scope=regulatory_scope,
        target=target,
        estimated_cost=estimated_cost,
    )

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        tool = name or func.__name__
        signature = _signature(func)
        register_tool(tool, spec)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                arguments = _bound_arguments(signature, args, kwargs)
                return await run_governed_async(tool, arguments, lambda: func(*args, **kwargs), spec=spec)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            arguments = _bound_arguments(signature, args, kwargs)
            return run_governed(tool, arguments, lambda: func(*args, **kwargs), spec=spec)

        return wrapper

    return decorate(fn) if fn is not None else decorate


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _bound_arguments(signature: inspect.Signature | None, args: tuple, kwargs: dict) -> dict[str, Any]:
    try:
        if signature is None:
            raise TypeError("no signature")
        bound = signature.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        first = next(iter(signature.parameters), None)
        if first in ("self", "cls"):
            arguments.pop(first, None)
        return arguments
    except TypeError:  # the call itself is malformed: the function will say so when it runs
        return {"args": list(args), **kwargs}


set_default_runtime(lambda: _from_environment(trace.get_tracer_provider()))
