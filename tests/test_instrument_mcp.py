"""MCP SDK 2.x: a real stdio server subprocess and a real ClientSession, both instrumented by govtrace."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from govtrace.instrumentation import FAULTS, Denial, instrument, uninstrument
from govtrace.instrumentation import attributes as A

SERVER = Path(__file__).parent / "agents" / "mcp_weather_server.py"


class RecordingEnforcer:
    def __init__(self, effect: str = "allow"):
        self.effect = effect
        self.requests = []

    def run(self, call, request, execute):
        self.requests.append(request)
        decision_id = call.record_policy(effect=self.effect, policy_id="client-policy", rule_id=self.effect)
        if self.effect == "deny":
            return Denial(request.tool, "deny", "the planner may not call this tool", decision_id)
        return execute()


@pytest.fixture(scope="module")
def global_provider():
    """The MCP SDK traces through the global tracer provider: record what reaches it."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


@pytest.fixture
def client(global_provider, tmp_path):
    provider, memory = global_provider
    memory.clear()
    FAULTS.reset()
    server_spans = tmp_path / "server-spans.jsonl"

    def start(enforcer):
        governance = instrument(agent_id="planner", tracer_provider=provider, frameworks=["mcp"], enforcer=enforcer)
        return governance, memory, server_spans

    yield start
    uninstrument()


def call_tools(governance, server_spans, calls, *, acting_for="alice@example.com"):
    async def main():
        params = StdioServerParameters(
            command=sys.executable, args=[str(SERVER)], env={**os.environ, "SPANS_FILE": str(server_spans)}
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            with governance.telemetry.task("plan trip", acting_for=acting_for):
                return [await session.call_tool(name, arguments) for name, arguments in calls]

    return asyncio.run(main())


def read_server_spans(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_name(spans, name):
    found = [span for span in spans if (span.name if hasattr(span, "name") else span["name"]) == name]
    assert len(found) == 1, [s.name if hasattr(s, "name") else s["name"] for s in spans]
    return found[0]


def hex_id(value: int) -> str:
    return f"0x{value:016x}"


def test_a_tool_call_is_governed_on_the_client_and_joins_the_servers_span(client):
    enforcer = RecordingEnforcer()
    governance, memory, server_file = client(enforcer)

    (result,) = call_tools(governance, server_file, [("get_weather", {"city": "Paris"})])

    assert result.content[0].text == "sunny in Paris"
    spans = memory.get_finished_spans()
    task = by_name(spans, "invoke_agent planner")
    tool = by_name(spans, "execute_tool get_weather")
    send = by_name(spans, "MCP send tools/call get_weather")
    assert tool.parent.span_id == task.context.span_id
    assert send.parent.span_id == tool.context.span_id  # the SDK's own CLIENT span nests in ours
    assert send.kind == SpanKind.CLIENT
    assert tool.attributes[A.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert tool.attributes[A.GEN_AI_TOOL_NAME] == "get_weather"
    assert tool.attributes[A.GEN_AI_AGENT_ID] == "planner"
    assert tool.attributes[A.POLICY_EFFECT] == "allow"
    assert tool.attributes[A.DELEGATION_ACTING_FOR] == "alice@example.com"
    (request,) = enforcer.requests
    assert (request.agent_id, request.tool, dict(request.arguments)) == ("planner", "get_weather", {"city": "Paris"})

    server = by_name(read_server_spans(server_file), "tools/call get_weather")
    assert server["kind"] == "SpanKind.SERVER"
    assert server["context"]["trace_id"] == f"0x{tool.context.trace_id:032x}"
    assert server["parent_id"] == hex_id(send.context.span_id)
    attributes = server["attributes"]
    assert attributes[A.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert attributes[A.GEN_AI_AGENT_ID] == "weather-server"
    assert attributes[A.DELEGATION_ACTING_FOR] == "alice@example.com"
    assert attributes[A.DELEGATION_DELEGATING_AGENT] == "planner"
    assert attributes[A.DELEGATION_DEPTH] == 1
    assert attributes[A.DATA_RESOURCE] == "weather-api"
    # the server-side policy saw the delegation, and recorded its decision on the SDK's span: no duplicate
    assert attributes[A.POLICY_RULE_ID] == "for-alice@example.com-via-planner-depth-1"
    names = [span["name"] for span in read_server_spans(server_file)]
    assert "execute_tool get_weather" not in names
    assert FAULTS.total == 0


def test_a_server_side_agent_works_in_the_callers_chain(client):
    governance, memory, server_file = client(RecordingEnforcer())

    whoami, forecast = call_tools(governance, server_file, [("whoami", {}), ("forecast", {"city": "Oslo"})])

    assert json.loads(whoami.content[0].text) == {
        "acting_for": "alice@example.com",
        "current_agent": "weather-server",
        "delegating_agent": "planner",
        "depth": 1,
        "scopes": [],
    }
    assert forecast.content[0].text == "rain tomorrow in Oslo"
    trace_id = f"0x{by_name(memory.get_finished_spans(), 'invoke_agent planner').context.trace_id:032x}"
    server = read_server_spans(server_file)
    call = by_name(server, "tools/call forecast")
    task = by_name(server, "invoke_agent Weather server")
    lookup = by_name(server, "execute_tool lookup_forecast")
    assert {call["context"]["trace_id"], task["context"]["trace_id"], lookup["context"]["trace_id"]} == {trace_id}
    assert task["parent_id"] == call["context"]["span_id"]
    assert lookup["parent_id"] == task["context"]["span_id"]
    for span in (task, lookup):
        assert span["attributes"][A.DELEGATION_ACTING_FOR] == "alice@example.com"
        assert span["attributes"][A.DELEGATION_DELEGATING_AGENT] == "planner"
        assert span["attributes"][A.DELEGATION_DEPTH] == 1
    assert lookup["attributes"][A.POLICY_RULE_ID] == "for-alice@example.com-via-planner-depth-1"


def test_a_denied_call_never_reaches_the_server(client):
    governance, memory, server_file = client(RecordingEnforcer("deny"))

    (result,) = call_tools(governance, server_file, [("get_weather", {"city": "Paris"})])

    assert result.is_error is True
    assert result.content[0].text.startswith("govtrace denied 'get_weather': the planner may not call this tool")
    assert result.structured_content["error"] == "denied_by_policy"
    tool = by_name(memory.get_finished_spans(), "execute_tool get_weather")
    assert tool.attributes[A.POLICY_EFFECT] == "deny"
    assert not [s for s in memory.get_finished_spans() if s.name.startswith("MCP send tools/call")]
    assert "tools/call get_weather" not in [span["name"] for span in read_server_spans(server_file)]


def test_a_failing_server_tool_marks_the_client_span_as_a_tool_error(client):
    governance, memory, server_file = client(RecordingEnforcer())

    (result,) = call_tools(governance, server_file, [("broken_tool", {})])

    assert result.is_error is True
    tool = by_name(memory.get_finished_spans(), "execute_tool broken_tool")
    assert tool.attributes[A.ERROR_TYPE] == "tool_error"
    assert tool.status.status_code == StatusCode.ERROR
    server = by_name(read_server_spans(server_file), "tools/call broken_tool")
    assert server["attributes"][A.ERROR_TYPE] == "tool_error"


def test_delegation_crosses_even_when_the_global_propagator_drops_baggage(client):
    governance, memory, server_file = client(RecordingEnforcer())
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    try:
        (whoami,) = call_tools(governance, server_file, [("whoami", {})], acting_for="bob@example.com")
    finally:
        propagate.set_global_textmap(previous)

    seen = json.loads(whoami.content[0].text)
    assert (seen["acting_for"], seen["delegating_agent"], seen["depth"]) == ("bob@example.com", "planner", 1)


def test_uninstrument_removes_the_client_wrapper(client):
    governance, memory, server_file = client(RecordingEnforcer())
    uninstrument()

    (result,) = call_tools(governance, server_file, [("get_weather", {"city": "Rome"})])

    assert result.content[0].text == "sunny in Rome"
    assert not [s for s in memory.get_finished_spans() if s.name == "execute_tool get_weather"]
