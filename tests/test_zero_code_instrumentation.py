"""``opentelemetry-instrument python agent.py``: an unmodified agent's tool calls reach a real
``govtrace serve`` with its identity and policy decisions, and ``govtrace ask actions`` shows them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AGENT = Path(__file__).parent / "agents" / "unmodified_agent.py"

POLICY = """
id: zero-code
agents:
  billing-agent:
    scopes:
      tools: [lookup_invoice]
      resources: ["*"]
      operations: [read, write, execute]
"""


def test_an_unmodified_agent_under_opentelemetry_instrument_is_governed_and_queryable(serve_process, tmp_path):
    server = serve_process(tmp_path / "zero.duckdb")
    policy = tmp_path / "policies.yaml"
    policy.write_text(POLICY)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "OTEL_RESOURCE_ATTRIBUTES": "gen_ai.agent.id=billing-agent,govtrace.agent.owner=ap-team@acme.example",
        "OTEL_SERVICE_NAME": "billing",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{server.grpc_endpoint}",
        "GOVTRACE_POLICIES": str(policy),
    }
    run = subprocess.run([str(bin_dir / "opentelemetry-instrument"), sys.executable, str(AGENT)],
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "INV-7" in run.stdout

    ask = subprocess.run(
        [sys.executable, "-m", "govtrace.collector.cli", "ask", "actions", "--agent", "billing-agent",
         "--server", server.http_url, "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    calls = {row["tool_name"]: row for row in answer["rows"]}
    assert set(calls) == {"lookup_invoice", "pay_invoice"}
    assert calls["lookup_invoice"]["policy_effect"] == "allow"
    assert calls["pay_invoice"]["policy_effect"] == "deny", "pay_invoice is outside the agent's scopes"
    assert calls["pay_invoice"]["outcome"].startswith("blocked")
    assert len(answer["evidence_span_ids"]) == 2
