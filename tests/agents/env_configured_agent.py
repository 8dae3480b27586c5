"""An agent configured only by its environment, as under ``opentelemetry-instrument``.

The tracer provider is set up by someone else (here by hand, as the OTel configurator would); the
agent never calls ``instrument()``: GOVTRACE_AGENT_ID, GOVTRACE_POLICIES and GOVTRACE_CAPTURE_CONTENT
configure the governed tools on first use.
"""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from govtrace.instrumentation import Denial, governed_tool
from govtrace.instrumentation import attributes as A

memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
trace.set_tracer_provider(provider)


@governed_tool
def allowed_tool(who: str) -> str:
    return "ok"


@governed_tool
def forbidden_tool() -> str:
    return "ran"


def outcome(result):
    return f"denied ({result.effect})" if isinstance(result, Denial) else result


print("allowed_tool:", outcome(allowed_tool("ann@example.org")))
print("forbidden_tool:", outcome(forbidden_tool()))
span = next(s for s in memory.get_finished_spans() if s.name == "execute_tool allowed_tool")
print(
    "allowed_tool span:",
    f"agent={span.attributes[A.GEN_AI_AGENT_ID]} effect={span.attributes[A.POLICY_EFFECT]} "
    f"arguments={span.attributes[A.GEN_AI_TOOL_CALL_ARGUMENTS]}",
)
