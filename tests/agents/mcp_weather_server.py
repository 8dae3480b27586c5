"""A weather agent served over MCP stdio, instrumented with govtrace, writing its spans to $SPANS_FILE.

Its enforcer allows everything and names, in the rule id, the delegation it saw in the request, so
the test can read from the spans what the server-side policy was asked.
"""

import json
import os

from mcp.server.mcpserver import MCPServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from govtrace.instrumentation import governed_tool, instrument
from govtrace.instrumentation.telemetry import current_delegation


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str):
        self.path = path

    def export(self, spans):
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                out.write(span.to_json(indent=None) + "\n")
        return SpanExportResult.SUCCESS


class DelegationAwarePolicy:
    def run(self, call, request, execute):
        call.record_policy(
            effect="allow",
            policy_id="server-policy",
            rule_id=f"for-{request.acting_for}-via-{request.delegating_agent}-depth-{request.delegation_depth}",
        )
        return execute()


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ["SPANS_FILE"])))
governance = instrument(agent_id="weather-server", name="Weather server", tracer_provider=provider,
                        frameworks=["mcp"], enforcer=DelegationAwarePolicy())

app = MCPServer("weather")


@app.tool()
@governed_tool(resource="weather-api", operation="read", classification="public")
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"sunny in {city}"


@governed_tool(resource="forecast-db", operation="read")
def lookup_forecast(city: str) -> str:
    return f"rain tomorrow in {city}"


@app.tool()
def forecast(city: str) -> str:
    """The server agent works on the request itself: a task of its own and a governed lookup."""
    with governance.telemetry.task("forecast"):
        return lookup_forecast(city)


@app.tool()
def whoami() -> str:
    """The delegation context the server-side handler runs in."""
    return json.dumps(current_delegation(), sort_keys=True)


@app.tool()
def broken_tool() -> str:
    """Always fails."""
    raise ValueError("sensor offline")


if __name__ == "__main__":
    app.run()
