"""A weather agent on LangChain 1.x ``create_agent`` and on LangGraph ``create_react_agent``, with a
scripted chat model (no network) that asks for tool calls and then answers."""

from __future__ import annotations

import warnings

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

WEATHER_CALLS: list[str] = []


class ScriptedChatModel(GenericFakeChatModel):
    """Replays scripted AIMessages; remembers the messages it was given."""

    seen: list = []

    def bind_tools(self, tools, **kwargs):
        return self

    def _get_ls_params(self, stop=None, **kwargs):
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_model_name"] = "scripted-model-1"
        params["ls_provider"] = "scripted"
        return params

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


@tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    WEATHER_CALLS.append(city)
    return f"sunny in {city}"


@tool
async def get_forecast(city: str) -> str:
    """Get tomorrow's forecast for a city."""
    WEATHER_CALLS.append(city)
    return f"rain tomorrow in {city}"


@tool
def read_sensor(city: str) -> str:
    """Read the weather sensor of a city."""
    raise SENSOR_ERROR


SENSOR_ERROR = ValueError("sensor offline")


def tool_call(name: str, city: str, call_id: str) -> dict:
    return {"name": name, "args": {"city": city}, "id": call_id, "type": "tool_call"}


def model(*calls: dict, answer: str = "It is sunny.") -> ScriptedChatModel:
    return ScriptedChatModel(messages=iter([
        AIMessage(content="", tool_calls=list(calls),
                  usage_metadata={"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}),
        AIMessage(content=answer, usage_metadata={"input_tokens": 20, "output_tokens": 5, "total_tokens": 25}),
    ]))


def weather_agent(*calls: dict, tools=(get_weather, get_forecast, read_sensor)):
    """LangChain 1.x ``create_agent``."""
    chat = model(*calls or (tool_call("get_weather", "Paris", "call_123"),))
    return create_agent(chat, tools=list(tools), system_prompt="Answer weather questions.", name="WeatherAgent"), chat


def weather_graph(*calls: dict):
    """LangGraph ``create_react_agent`` (deprecated in favour of create_agent, still widely used)."""
    from langgraph.prebuilt import create_react_agent

    chat = model(*calls or (tool_call("get_weather", "Paris", "call_123"),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(chat, tools=[get_weather], name="WeatherGraph"), chat
