"""A triage agent that hands off to a weather agent with one function tool, on a scripted model.

No network: ``ScriptedModel`` returns the next scripted output on each call and remembers the input
it was given (so a test can read what the model saw, e.g. a tool's output or a denial).
"""

from __future__ import annotations

import json

from agents import Agent, function_tool
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.tracing import generation_span
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

WEATHER_CALLS: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    WEATHER_CALLS.append(city)
    return f"sunny in {city}"


def say(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        type="message", id="msg_1", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def call(name: str, arguments: dict, call_id: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        type="function_call", id=f"fc_{call_id}", call_id=call_id, name=name,
        arguments=json.dumps(arguments), status="completed",
    )


class ScriptedModel(Model):
    def __init__(self, outputs: list[list]):
        self.outputs = list(outputs)
        self.inputs: list = []

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                           tracing, **kwargs):
        self.inputs.append(input)
        output = self.outputs.pop(0)
        with generation_span(model="scripted-model-1") as span:
            span.span_data.usage = {"input_tokens": 11, "output_tokens": 7}
        return ModelResponse(output=output, usage=Usage(requests=1, input_tokens=11, output_tokens=7,
                                                        total_tokens=18), response_id=None)

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError


def build() -> tuple[Agent, ScriptedModel]:
    """Triage hands off to WeatherAgent, which calls get_weather once and answers."""
    weather_model = ScriptedModel([[call("get_weather", {"city": "Paris"}, "call_weather_1")],
                                   [say("It is sunny in Paris.")]])
    weather = Agent(name="WeatherAgent", instructions="Answer weather questions.", tools=[get_weather],
                    model=weather_model)
    triage = Agent(name="Triage", instructions="Route the question.", handoffs=[weather],
                   model=ScriptedModel([[call("transfer_to_weatheragent", {}, "call_handoff_1")]]))
    return triage, weather_model
