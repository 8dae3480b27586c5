"""OpenAI Agents SDK: a real Runner on a scripted model, a function tool and a handoff, instrumented."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from agents import Agent, RunConfig, Runner
from agents.mcp import MCPServerStdio
from agents.tracing import set_trace_processors
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from govtrace.instrumentation import FAULTS, Denial, instrument, uninstrument
from govtrace.instrumentation import attributes as A

AGENTS = Path(__file__).parent / "agents"
_spec = importlib.util.spec_from_file_location("agents_sdk_weather", AGENTS / "agents_sdk_weather.py")
weather = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(weather)

RUN = RunConfig(workflow_name="weather-workflow", group_id="conv-42")


class RecordingEnforcer:
    def __init__(self, effect: str = "allow"):
        self.effect = effect
        self.requests = []

    def run(self, call, request, execute):
        self.requests.append(request)
        decision_id = call.record_policy(effect=self.effect, policy_id="unit-test", rule_id=self.effect)
        if self.effect == "deny":
            return Denial(request.tool, "deny", "weather lookups are switched off", decision_id)
        return execute()


@pytest.fixture
def spans():
    set_trace_processors([])  # no export to the vendor's tracing backend from tests
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    memory.provider = provider
    weather.WEATHER_CALLS.clear()
    FAULTS.reset()
    yield memory
    uninstrument()


def governed(memory, enforcer):
    return instrument(agent_id="travel-desk", tracer_provider=memory.provider, frameworks=["openai_agents"],
                      enforcer=enforcer)


def named(memory, name):
    found = [span for span in memory.get_finished_spans() if span.name == name]
    assert len(found) == 1, sorted(span.name for span in memory.get_finished_spans())
    return found[0]


def test_a_run_with_a_handoff_and_a_tool_call_becomes_one_governed_trace(spans):
    enforcer = RecordingEnforcer()
    governed(spans, enforcer)
    triage, _ = weather.build()

    result = Runner.run_sync(triage, "Weather in Paris?", run_config=RUN)

    assert result.final_output == "It is sunny in Paris."
    assert weather.WEATHER_CALLS == ["Paris"]
    assert sorted(span.name for span in spans.get_finished_spans()) == [
        "chat scripted-model-1",
        "chat scripted-model-1",
        "chat scripted-model-1",
        "execute_tool get_weather",
        "handoff WeatherAgent",
        "invoke_agent Triage",
        "invoke_agent WeatherAgent",
        "invoke_workflow weather-workflow",
    ]
    workflow = named(spans, "invoke_workflow weather-workflow")
    triage_span = named(spans, "invoke_agent Triage")
    weather_span = named(spans, "invoke_agent WeatherAgent")
    handoff = named(spans, "handoff WeatherAgent")
    tool = named(spans, "execute_tool get_weather")
    assert workflow.parent is None
    assert {span.context.trace_id for span in spans.get_finished_spans()} == {workflow.context.trace_id}
    assert triage_span.parent.span_id == workflow.context.span_id
    assert weather_span.parent.span_id == workflow.context.span_id
    assert handoff.parent.span_id == triage_span.context.span_id
    assert tool.parent.span_id == weather_span.context.span_id

    assert workflow.attributes[A.GEN_AI_OPERATION_NAME] == "invoke_workflow"
    assert workflow.attributes[A.GEN_AI_WORKFLOW_NAME] == "weather-workflow"
    assert workflow.attributes[A.GEN_AI_CONVERSATION_ID] == "conv-42"
    assert weather_span.attributes[A.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert weather_span.attributes[A.GEN_AI_AGENT_NAME] == "WeatherAgent"
    assert weather_span.attributes[A.GEN_AI_AGENT_ID] == "travel-desk"
    assert weather_span.attributes[A.GEN_AI_CONVERSATION_ID] == "conv-42"
    assert (weather_span.attributes[A.GEN_AI_USAGE_INPUT_TOKENS], weather_span.attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS]) == (22, 14)
    assert (handoff.attributes[A.GEN_AI_AGENT_NAME], handoff.attributes[A.ACTION_TARGET]) == ("Triage", "WeatherAgent")

    assert tool.attributes[A.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert tool.attributes[A.GEN_AI_TOOL_NAME] == "get_weather"
    assert tool.attributes[A.GEN_AI_TOOL_TYPE] == "function"
    assert tool.attributes[A.GEN_AI_TOOL_CALL_ID] == "call_weather_1"  # the model's call id, which the SDK span lacks
    assert tool.attributes[A.GEN_AI_AGENT_NAME] == "WeatherAgent"
    assert tool.attributes[A.POLICY_EFFECT] == "allow"
    assert len(tool.attributes[A.ACTION_ARGUMENTS_DIGEST]) == 64
    (request,) = enforcer.requests
    assert (request.agent_id, request.tool, dict(request.arguments)) == ("travel-desk", "get_weather", {"city": "Paris"})
    assert request.task_id == format(workflow.context.trace_id, "032x")

    chat = [span for span in spans.get_finished_spans() if span.name == "chat scripted-model-1"]
    assert all(span.kind == SpanKind.CLIENT for span in chat)
    assert all(span.attributes[A.GEN_AI_USAGE_INPUT_TOKENS] == 11 for span in chat)
    assert FAULTS.total == 0


def test_a_denied_tool_does_not_run_and_the_model_reads_the_denial(spans):
    governed(spans, RecordingEnforcer("deny"))
    triage, weather_model = weather.build()

    result = Runner.run_sync(triage, "Weather in Paris?", run_config=RUN)

    assert result.final_output == "It is sunny in Paris."  # the script does not care; the model saw the denial:
    assert weather.WEATHER_CALLS == []
    outputs = [item for item in weather_model.inputs[-1] if isinstance(item, dict) and item.get("type") == "function_call_output"]
    assert outputs[-1]["call_id"] == "call_weather_1"
    assert outputs[-1]["output"].startswith("govtrace denied 'get_weather': weather lookups are switched off")
    tool = named(spans, "execute_tool get_weather")
    assert tool.attributes[A.POLICY_EFFECT] == "deny"


def test_the_run_joins_the_callers_task_and_its_delegation(spans):
    enforcer = RecordingEnforcer()
    governance = governed(spans, enforcer)
    triage, _ = weather.build()

    with governance.telemetry.task("customer request", acting_for="carol@example.com"):
        Runner.run_sync(triage, "Weather in Paris?", run_config=RUN)

    task = named(spans, "invoke_agent travel-desk")
    workflow = named(spans, "invoke_workflow weather-workflow")
    assert workflow.parent.span_id == task.context.span_id
    assert named(spans, "invoke_agent WeatherAgent").attributes[A.DELEGATION_ACTING_FOR] == "carol@example.com"
    assert named(spans, "execute_tool get_weather").attributes[A.DELEGATION_ACTING_FOR] == "carol@example.com"
    assert enforcer.requests[0].acting_for == "carol@example.com"


def test_a_faulty_enforcer_never_changes_the_run(spans):
    class Broken:
        def run(self, call, request, execute):
            raise RuntimeError("policy engine bug")

    governed(spans, Broken())
    triage, _ = weather.build()

    result = Runner.run_sync(triage, "Weather in Paris?", run_config=RUN)

    assert result.final_output == "It is sunny in Paris."
    assert weather.WEATHER_CALLS == ["Paris"]
    assert FAULTS.count("enforcer") == 1
    assert A.POLICY_EFFECT not in named(spans, "execute_tool get_weather").attributes


def test_uninstrument_stops_spans_and_enforcement(spans):
    enforcer = RecordingEnforcer("deny")
    governed(spans, enforcer)
    uninstrument()
    triage, _ = weather.build()

    Runner.run_sync(triage, "Weather in Paris?", run_config=RUN)

    assert weather.WEATHER_CALLS == ["Paris"]
    assert enforcer.requests == []
    assert spans.get_finished_spans() == ()


def test_an_mcp_tool_of_an_agent_is_one_governed_span_whose_call_joins_the_server(spans, tmp_path):
    enforcer = RecordingEnforcer()
    governance = instrument(agent_id="travel-desk", tracer_provider=spans.provider,
                            frameworks=["openai_agents", "mcp"], enforcer=enforcer)
    if trace.get_tracer_provider() is not spans.provider:  # the MCP SDK's own spans go to the global provider
        trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(spans))
    server_spans = tmp_path / "server-spans.jsonl"

    async def main():
        server = MCPServerStdio(
            params={"command": sys.executable, "args": [str(AGENTS / "mcp_weather_server.py")],
                    "env": {**os.environ, "SPANS_FILE": str(server_spans)}},
            cache_tools_list=True,
        )
        async with server:
            model = weather.ScriptedModel([[weather.call("get_weather", {"city": "Paris"}, "call_mcp_1")],
                                           [weather.say("Sunny.")]])
            agent = Agent(name="McpAgent", instructions="Use the weather server.", mcp_servers=[server], model=model)
            with governance.telemetry.task("customer request", acting_for="zoe@example.com"):
                return await Runner.run(agent, "Weather in Paris?", run_config=RUN)

    assert asyncio.run(main()).final_output == "Sunny."

    assert len(enforcer.requests) == 1  # decided once, by the Agents SDK tool, not again by the MCP call
    tool = named(spans, "execute_tool get_weather")
    send = named(spans, "MCP send tools/call get_weather")
    assert tool.attributes[A.GEN_AI_TOOL_CALL_ID] == "call_mcp_1"
    assert tool.attributes[A.POLICY_EFFECT] == "allow"
    assert send.parent.span_id == tool.context.span_id
    server = [json.loads(line) for line in server_spans.read_text().splitlines()]
    (served,) = [span for span in server if span["name"] == "tools/call get_weather"]
    assert served["context"]["trace_id"] == f"0x{tool.context.trace_id:032x}"
    assert served["parent_id"] == f"0x{send.context.span_id:016x}"
    assert served["attributes"][A.DELEGATION_DELEGATING_AGENT] == "travel-desk"
    assert served["attributes"][A.DELEGATION_ACTING_FOR] == "zoe@example.com"
    assert served["attributes"][A.DELEGATION_DEPTH] == 1
