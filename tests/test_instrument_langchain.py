"""LangChain 1.x / LangGraph: real agents on a scripted chat model, instrumented by govtrace."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import StructuredTool
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from govtrace.instrumentation import FAULTS, Denial, instrument, uninstrument
from govtrace.instrumentation import attributes as A

_spec = importlib.util.spec_from_file_location("langchain_weather", Path(__file__).parent / "agents" / "langchain_weather.py")
weather = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(weather)

CONFIG = {"configurable": {"thread_id": "t1"}}
QUESTION = {"messages": [("user", "Weather in Paris?")]}


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
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    memory.provider = provider
    weather.WEATHER_CALLS.clear()
    weather.ScriptedChatModel.seen = []
    FAULTS.reset()
    yield memory
    uninstrument()


def governed(memory, enforcer, **kwargs):
    return instrument(agent_id="weather-desk", tracer_provider=memory.provider, frameworks=["langchain"],
                      enforcer=enforcer, **kwargs)


def named(memory, name):
    found = [span for span in memory.get_finished_spans() if span.name == name]
    assert len(found) == 1, sorted(span.name for span in memory.get_finished_spans())
    return found[0]


def tool_messages(result):
    return [message for message in result["messages"] if isinstance(message, ToolMessage)]


def test_a_create_agent_run_is_an_agent_span_with_model_and_governed_tool_spans(spans):
    enforcer = RecordingEnforcer()
    governed(spans, enforcer)
    agent, _ = weather.weather_agent()

    result = agent.invoke(QUESTION, config=CONFIG)

    assert result["messages"][-1].content == "It is sunny."
    assert tool_messages(result)[0].content == "sunny in Paris"
    assert sorted(span.name for span in spans.get_finished_spans()) == [
        "chat scripted-model-1",
        "chat scripted-model-1",
        "execute_tool get_weather",
        "invoke_agent WeatherAgent",
    ]
    agent_span = named(spans, "invoke_agent WeatherAgent")
    tool = named(spans, "execute_tool get_weather")
    chats = [span for span in spans.get_finished_spans() if span.name == "chat scripted-model-1"]
    assert agent_span.parent is None
    assert tool.parent.span_id == agent_span.context.span_id
    assert all(chat.parent.span_id == agent_span.context.span_id for chat in chats)

    assert agent_span.attributes[A.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert agent_span.attributes[A.GEN_AI_AGENT_NAME] == "WeatherAgent"
    assert agent_span.attributes[A.GEN_AI_AGENT_ID] == "weather-desk"
    assert agent_span.attributes[A.GEN_AI_CONVERSATION_ID] == "t1"
    assert tool.attributes[A.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert tool.attributes[A.GEN_AI_TOOL_NAME] == "get_weather"
    assert tool.attributes[A.GEN_AI_TOOL_CALL_ID] == "call_123"
    assert tool.attributes[A.GEN_AI_AGENT_NAME] == "WeatherAgent"
    assert tool.attributes[A.POLICY_EFFECT] == "allow"
    assert len(tool.attributes[A.ACTION_ARGUMENTS_DIGEST]) == 64
    assert [(c.kind, c.attributes[A.GEN_AI_REQUEST_MODEL], c.attributes[A.GEN_AI_PROVIDER_NAME]) for c in chats] == [
        (SpanKind.CLIENT, "scripted-model-1", "scripted")
    ] * 2
    assert sorted(c.attributes[A.GEN_AI_USAGE_INPUT_TOKENS] for c in chats) == [11, 20]
    (request,) = enforcer.requests
    assert (request.agent_id, request.tool, dict(request.arguments)) == ("weather-desk", "get_weather", {"city": "Paris"})
    assert request.task_id == format(agent_span.context.trace_id, "032x")
    assert FAULTS.total == 0


def test_a_langgraph_react_agent_is_traced_the_same_way(spans):
    governed(spans, RecordingEnforcer())
    graph, _ = weather.weather_graph()

    graph.invoke(QUESTION, config=CONFIG)

    assert sorted(span.name for span in spans.get_finished_spans()) == [
        "chat scripted-model-1",
        "chat scripted-model-1",
        "execute_tool get_weather",
        "invoke_agent WeatherGraph",
    ]
    tool = named(spans, "execute_tool get_weather")
    assert tool.parent.span_id == named(spans, "invoke_agent WeatherGraph").context.span_id
    assert tool.attributes[A.POLICY_EFFECT] == "allow"


def test_a_denied_tool_does_not_run_and_the_model_reads_the_denial(spans):
    governed(spans, RecordingEnforcer("deny"))
    agent, chat = weather.weather_agent()

    result = agent.invoke(QUESTION, config=CONFIG)

    assert weather.WEATHER_CALLS == []
    (message,) = tool_messages(result)
    assert message.status == "error"
    assert message.tool_call_id == "call_123"
    assert message.content.startswith("govtrace denied 'get_weather': weather lookups are switched off")
    assert chat.seen[-1][-1].content == message.content  # what the model read next
    assert named(spans, "execute_tool get_weather").attributes[A.POLICY_EFFECT] == "deny"


def test_parallel_tool_calls_are_each_governed_with_their_own_arguments(spans):
    enforcer = RecordingEnforcer()
    governed(spans, enforcer)
    agent, _ = weather.weather_agent(weather.tool_call("get_weather", "Paris", "call_p"),
                                     weather.tool_call("get_weather", "Oslo", "call_o"))

    agent.invoke(QUESTION, config=CONFIG)

    assert sorted(weather.WEATHER_CALLS) == ["Oslo", "Paris"]
    tools = [span for span in spans.get_finished_spans() if span.name == "execute_tool get_weather"]
    decided = {span.attributes[A.GEN_AI_TOOL_CALL_ID]: span.attributes[A.POLICY_EFFECT] for span in tools}
    assert decided == {"call_p": "allow", "call_o": "allow"}
    assert sorted(request.arguments["city"] for request in enforcer.requests) == ["Oslo", "Paris"]


def test_an_async_agent_with_an_async_tool_is_governed(spans):
    enforcer = RecordingEnforcer()
    governed(spans, enforcer)
    agent, _ = weather.weather_agent(weather.tool_call("get_forecast", "Lima", "call_f"))

    result = asyncio.run(agent.ainvoke(QUESTION, config=CONFIG))

    assert tool_messages(result)[0].content == "rain tomorrow in Lima"
    tool = named(spans, "execute_tool get_forecast")
    assert tool.attributes[A.POLICY_EFFECT] == "allow"
    assert tool.attributes[A.GEN_AI_TOOL_CALL_ID] == "call_f"
    assert tool.parent.span_id == named(spans, "invoke_agent WeatherAgent").context.span_id
    assert [request.tool for request in enforcer.requests] == ["get_forecast"]


def test_the_host_exception_from_a_tool_passes_through_untouched(spans):
    governed(spans, RecordingEnforcer())
    agent, _ = weather.weather_agent(weather.tool_call("read_sensor", "Paris", "call_s"))

    with pytest.raises(ValueError) as caught:
        agent.invoke(QUESTION, config=CONFIG)

    assert caught.value is weather.SENSOR_ERROR
    tool = named(spans, "execute_tool read_sensor")
    assert tool.status.status_code == StatusCode.ERROR
    assert tool.attributes[A.ERROR_TYPE] == "ValueError"
    assert named(spans, "invoke_agent WeatherAgent").attributes[A.ERROR_TYPE] == "ValueError"
    assert FAULTS.total == 0


def test_a_faulty_enforcer_never_changes_the_run(spans):
    class Broken:
        def run(self, call, request, execute):
            raise RuntimeError("policy engine bug")

    governed(spans, Broken())
    agent, _ = weather.weather_agent()

    result = agent.invoke(QUESTION, config=CONFIG)

    assert tool_messages(result)[0].content == "sunny in Paris"
    assert FAULTS.count("enforcer") == 1


def test_content_capture_records_redacted_arguments_and_results(spans):
    governed(spans, RecordingEnforcer(), capture_content=True)
    agent, _ = weather.weather_agent(weather.tool_call("get_weather", "bob@example.com", "call_e"))

    agent.invoke(QUESTION, config=CONFIG)

    tool = named(spans, "execute_tool get_weather")
    assert tool.attributes[A.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"city": "[REDACTED:email]"}'
    assert tool.attributes[A.GEN_AI_TOOL_CALL_RESULT] == "sunny in [REDACTED:email]"


def test_the_run_joins_the_callers_task_and_its_delegation(spans):
    enforcer = RecordingEnforcer()
    governance = governed(spans, enforcer)
    agent, _ = weather.weather_agent()

    with governance.telemetry.task("customer request", acting_for="dave@example.com"):
        agent.invoke(QUESTION, config=CONFIG)

    task = named(spans, "invoke_agent weather-desk")
    agent_span = named(spans, "invoke_agent WeatherAgent")
    assert agent_span.parent.span_id == task.context.span_id
    assert agent_span.attributes[A.DELEGATION_ACTING_FOR] == "dave@example.com"
    assert named(spans, "execute_tool get_weather").attributes[A.DELEGATION_ACTING_FOR] == "dave@example.com"
    assert enforcer.requests[0].acting_for == "dave@example.com"


def test_uninstrument_restores_the_tool_classes(spans):
    enforcer = RecordingEnforcer("deny")
    governed(spans, enforcer)
    weather.weather_agent()[0].invoke(QUESTION, config=CONFIG)
    assert hasattr(vars(StructuredTool)["_run"], "__wrapped__")

    uninstrument()
    spans.clear()
    result = weather.weather_agent()[0].invoke(QUESTION, config=CONFIG)

    assert not hasattr(vars(StructuredTool)["_run"], "__wrapped__")
    assert tool_messages(result)[0].content == "sunny in Paris"
    assert spans.get_finished_spans() == ()
