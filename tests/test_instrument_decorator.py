"""@governed_tool and instrument(): spans, decisions, denials, and the never-break-the-agent promises."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from govtrace.instrumentation import (
    FAULTS,
    Denial,
    describe_tool,
    governed_tool,
    instrument,
    uninstrument,
)
from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.governed import run_governed
from govtrace.instrumentation.policy import PolicyEnforcementPoint

AGENTS = Path(__file__).parent / "agents"


class RecordingEnforcer:
    """A minimal policy: records every request, allows or denies everything."""

    def __init__(self, effect: str = "allow"):
        self.effect = effect
        self.requests = []
        self.threads = []

    def run(self, call, request, execute):
        self.requests.append(request)
        self.threads.append(threading.get_ident())
        decision_id = call.record_policy(effect=self.effect, policy_id="unit-test", rule_id=f"{self.effect}-all")
        if self.effect == "deny":
            return Denial(request.tool, "deny", "outside the agent's scopes", decision_id)
        return execute()


@pytest.fixture
def exporter():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    memory.provider = provider
    FAULTS.reset()
    yield memory
    uninstrument()
    FAULTS.reset()


def governed(exporter, **kwargs):
    kwargs.setdefault("agent_id", "billing-agent")
    return instrument(frameworks=None, tracer_provider=exporter.provider, **kwargs)


def only_span(exporter, name):
    matching = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(matching) == 1, [span.name for span in exporter.get_finished_spans()]
    return matching[0]


@governed_tool(resource="invoices", operation="read", classification="confidential")
def lookup_invoice(invoice_id: str, include_lines: bool = False) -> dict:
    return {"invoice_id": invoice_id, "total": 120.0, "lines": 3 if include_lines else None}


@governed_tool(operation="send", amount=lambda args: args["amount"], target=lambda args: args["iban"], reversible=False)
def pay_supplier(iban: str, amount: float) -> str:
    pay_supplier.paid.append((iban, amount))
    return f"paid {amount}"


pay_supplier.paid = []


def test_a_governed_tool_runs_in_an_execute_tool_span_with_its_data_facts(exporter):
    governed(exporter)

    assert lookup_invoice("INV-7") == {"invoice_id": "INV-7", "total": 120.0, "lines": None}

    span = only_span(exporter, "execute_tool lookup_invoice")
    assert span.attributes[A.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert span.attributes[A.GEN_AI_TOOL_NAME] == "lookup_invoice"
    assert span.attributes[A.GEN_AI_AGENT_ID] == "billing-agent"
    assert span.attributes[A.DATA_RESOURCE] == "invoices"
    assert span.attributes[A.DATA_OPERATION] == "read"
    assert span.attributes[A.DATA_CLASSIFICATION] == "confidential"
    assert len(span.attributes[A.ACTION_ARGUMENTS_DIGEST]) == 64
    assert A.POLICY_EFFECT not in span.attributes  # no policy configured: no decision recorded
    assert A.GEN_AI_TOOL_CALL_ARGUMENTS not in span.attributes  # content capture is off by default
    assert A.GEN_AI_TOOL_CALL_RESULT not in span.attributes


def test_the_enforcer_sees_the_request_with_arguments_amount_target_and_delegation(exporter):
    enforcer = RecordingEnforcer()
    governance = governed(exporter, enforcer=enforcer)

    with governance.telemetry.task("pay run", acting_for="alice@example.com"):
        assert pay_supplier("DE89370400440532013000", amount=950.0) == "paid 950.0"

    (request,) = enforcer.requests
    assert request.agent_id == "billing-agent"
    assert request.tool == "pay_supplier"
    assert request.arguments == {"iban": "DE89370400440532013000", "amount": 950.0}
    assert (request.operation, request.amount, request.reversible) == ("send", 950.0, False)
    assert request.acting_for == "alice@example.com"
    assert request.delegation_depth == 0
    span = only_span(exporter, "execute_tool pay_supplier")
    assert request.task_id == format(span.context.trace_id, "032x")
    assert span.attributes[A.POLICY_EFFECT] == "allow"
    assert span.attributes[A.POLICY_RULE_ID] == "allow-all"
    assert span.attributes[A.ACTION_TARGET] == "DE89370400440532013000"
    assert span.attributes[A.ACTION_AMOUNT] == 950.0
    assert span.attributes[A.DELEGATION_ACTING_FOR] == "alice@example.com"
    task = only_span(exporter, "invoke_agent billing-agent")
    assert span.parent.span_id == task.context.span_id


def test_a_denied_call_returns_the_denial_and_the_function_never_runs(exporter):
    governed(exporter, enforcer=RecordingEnforcer("deny"))
    pay_supplier.paid.clear()

    result = pay_supplier("DE89370400440532013000", 10_000.0)

    assert isinstance(result, Denial)
    assert result.effect == "deny"
    assert str(result).startswith("govtrace denied 'pay_supplier': outside the agent's scopes")
    assert result.as_tool_result()["error"] == "denied_by_policy"
    assert pay_supplier.paid == []
    span = only_span(exporter, "execute_tool pay_supplier")
    assert span.attributes[A.POLICY_EFFECT] == "deny"
    assert span.attributes[A.POLICY_DECISION_ID] == result.decision_id
    assert span.status.status_code == StatusCode.UNSET


def test_the_host_exception_passes_through_untouched(exporter):
    governed(exporter, enforcer=RecordingEnforcer())
    raised = ValueError("invoice INV-9 is locked")

    @governed_tool
    def close_invoice(invoice_id: str) -> None:
        raise raised

    with pytest.raises(ValueError) as caught:
        close_invoice("INV-9")

    assert caught.value is raised
    assert "raise raised" in "".join(traceback.format_tb(caught.value.__traceback__))
    span = only_span(exporter, "execute_tool close_invoice")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == "ValueError"
    assert FAULTS.total == 0


def test_an_enforcer_that_swallows_the_host_exception_cannot_hide_it(exporter):
    class Swallowing:
        def run(self, call, request, execute):
            try:
                return execute()
            except ValueError:
                return "looks fine"

    governed(exporter, enforcer=Swallowing())

    @governed_tool
    def flaky() -> str:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        flaky()


def test_a_fault_in_the_enforcer_never_changes_the_result(exporter):
    class Broken:
        def run(self, call, request, execute):
            raise RuntimeError("policy engine bug")

    governed(exporter, enforcer=Broken())

    assert lookup_invoice("INV-1", include_lines=True)["lines"] == 3
    assert lookup_invoice("INV-2")["lines"] is None

    assert FAULTS.count("enforcer") == 2
    spans = [span for span in exporter.get_finished_spans() if span.name == "execute_tool lookup_invoice"]
    assert len(spans) == 2
    assert all(A.POLICY_EFFECT not in span.attributes for span in spans)  # "no policy check recorded"


def test_a_fault_after_the_tool_ran_keeps_its_result_and_never_runs_it_twice(exporter):
    class BrokenAfter:
        def run(self, call, request, execute):
            execute()
            execute()
            raise RuntimeError("accounting bug")

    governed(exporter, enforcer=BrokenAfter())
    pay_supplier.paid.clear()

    assert pay_supplier("DE89370400440532013000", 5.0) == "paid 5.0"
    assert pay_supplier.paid == [("DE89370400440532013000", 5.0)]
    assert FAULTS.count("enforcer") == 1


def test_a_wrapper_of_the_same_call_is_governed_once(exporter):
    enforcer = RecordingEnforcer()
    governed(exporter, enforcer=enforcer)

    result = run_governed("lookup_invoice", {"invoice_id": "INV-3"}, lambda: lookup_invoice("INV-3"))

    assert result["invoice_id"] == "INV-3"
    assert len(enforcer.requests) == 1
    assert len([s for s in exporter.get_finished_spans() if s.name == "execute_tool lookup_invoice"]) == 1


def test_a_framework_tool_named_like_a_described_tool_carries_its_facts(exporter):
    enforcer = RecordingEnforcer()
    governed(exporter, enforcer=enforcer)
    describe_tool("crm.export", resource="crm://contacts", operation="read", classification="pii", record_count=5000)

    run_governed("crm.export", {"segment": "all"}, lambda: "ok")

    (request,) = enforcer.requests
    assert (request.resource, request.classification, request.record_count) == ("crm://contacts", "pii", 5000)


def test_content_capture_is_opt_in_and_redacts_secrets_and_personal_data(exporter):
    governed(exporter, capture_content=True)

    @governed_tool
    def email_customer(to: str, body: str, api_key: str) -> str:
        return f"sent to {to}; call +44 20 7946 0958 with card 4111 1111 1111 1111"

    email_customer("jane.doe@example.com", "Your token is sk-proj-abcdefghijklmnopqrstuv", "k-123456")

    span = only_span(exporter, "execute_tool email_customer")
    assert span.attributes[A.GEN_AI_TOOL_CALL_ARGUMENTS] == (
        '{"to": "[REDACTED:email]", "body": "Your token is [REDACTED:api_key]", "api_key": "[REDACTED:secret]"}'
    )
    assert span.attributes[A.GEN_AI_TOOL_CALL_RESULT] == (
        "sent to [REDACTED:email]; call [REDACTED:phone] with card [REDACTED:card_number]"
    )


def test_an_async_tool_is_decided_off_the_event_loop_and_runs_in_the_callers_task(exporter):
    approved = threading.Event()

    class WaitsForApproval(RecordingEnforcer):
        def run(self, call, request, execute):
            assert approved.wait(5), "the approval never came: the event loop was blocked"
            return super().run(call, request, execute)

    enforcer = WaitsForApproval()
    governed(exporter, enforcer=enforcer)
    loop_threads = []

    @governed_tool(resource="ledger", operation="write")
    async def post_entry(amount: float) -> str:
        loop_threads.append(threading.get_ident())
        await asyncio.sleep(0)
        return f"posted {amount}"

    async def approver():
        await asyncio.sleep(0.01)  # runs only if the loop is free while the enforcer waits
        approved.set()

    async def main():
        return await asyncio.gather(post_entry(12.5), approver())

    result, _ = asyncio.run(main())

    assert result == "posted 12.5"
    assert enforcer.threads[0] != loop_threads[0]
    span = only_span(exporter, "execute_tool post_entry")
    assert span.attributes[A.POLICY_EFFECT] == "allow"


def test_an_async_denial_and_an_async_host_exception(exporter):
    governed(exporter, enforcer=RecordingEnforcer("deny"))
    ran = []

    @governed_tool
    async def wipe_table(table: str) -> str:
        ran.append(table)
        return "wiped"

    denial = asyncio.run(wipe_table("customers"))
    assert isinstance(denial, Denial) and ran == []

    governed(exporter, enforcer=RecordingEnforcer())
    raised = KeyError("customers")

    @governed_tool
    async def read_table(table: str) -> str:
        await asyncio.sleep(0)
        raise raised

    with pytest.raises(KeyError) as caught:
        asyncio.run(read_table("customers"))
    assert caught.value is raised
    assert only_span(exporter, "execute_tool read_table").attributes[A.ERROR_TYPE] == "KeyError"


def test_an_async_enforcer_fault_never_changes_the_result(exporter):
    class Broken:
        def run(self, call, request, execute):
            raise RuntimeError("bug")

    governed(exporter, enforcer=Broken())

    @governed_tool
    async def fetch(key: str) -> str:
        return key.upper()

    assert asyncio.run(fetch("abc")) == "ABC"
    assert FAULTS.count("enforcer") == 1


class HangingExporter(SpanExporter):
    """A collector that never answers."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def export(self, spans):
        self.calls += 1
        self.release.wait(30)
        return SpanExportResult.FAILURE

    def shutdown(self):
        self.release.set()


class FailingExporter(SpanExporter):
    def export(self, spans):
        raise ConnectionError("collector down")


@pytest.mark.parametrize("down", [HangingExporter, FailingExporter])
def test_an_exporter_that_is_down_never_blocks_a_tool_call(down):
    sink = down()
    governance = instrument(agent_id="billing-agent", frameworks=None, exporter=sink)
    try:
        started = time.monotonic()
        results = [lookup_invoice(f"INV-{n}")["invoice_id"] for n in range(200)]
        elapsed = time.monotonic() - started
    finally:
        if isinstance(sink, HangingExporter):
            sink.release.set()
        uninstrument()
        governance.telemetry.shutdown()
    assert results == [f"INV-{n}" for n in range(200)]
    assert elapsed < 2.0


def test_an_unreachable_collector_never_blocks_a_tool_call(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # bounds the exporter's retries at shutdown only
    governance = instrument(agent_id="billing-agent", frameworks=None, endpoint="http://127.0.0.1:9")
    try:
        started = time.monotonic()
        for n in range(50):
            lookup_invoice(f"INV-{n}")
        elapsed = time.monotonic() - started
    finally:
        uninstrument()
        governance.telemetry.shutdown()
    assert elapsed < 0.5


def test_instrument_builds_the_agent_identity_from_arguments_and_otel_environment(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,team.cost_center=42")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-service")
    memory = InMemorySpanExporter()
    governance = instrument(agent_id="billing-agent", name="Billing", owner="finance-team", frameworks=None,
                            exporter=memory)
    try:
        lookup_invoice("INV-1")
        governance.flush()
    finally:
        uninstrument()
    (span,) = memory.get_finished_spans()
    resource = span.resource.attributes
    assert resource[A.GEN_AI_AGENT_ID] == "billing-agent"
    assert resource[A.GEN_AI_AGENT_NAME] == "Billing"
    assert resource[A.AGENT_OWNER] == "finance-team"
    assert resource[A.SERVICE_NAME] == "billing-service"
    assert resource[A.DEPLOYMENT_ENVIRONMENT] == "prod"
    assert resource["team.cost_center"] == "42"


def test_instrument_takes_the_agent_id_from_the_environment(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "gen_ai.agent.id=env-agent")
    governance = instrument(frameworks=None, exporter=InMemorySpanExporter())
    try:
        assert governance.agent_id == "env-agent"
    finally:
        uninstrument()


def test_instrument_with_a_policy_file_enforces_it_with_the_policy_engine(exporter, tmp_path):
    policy = tmp_path / "policies.yaml"
    policy.write_text("id: unit-policy\nagents:\n  clerk:\n    scopes:\n      tools: [lookup_invoice]\n"
                      "      resources: [invoices]\n      operations: [read]\n")
    governance = governed(exporter, agent_id="clerk", policies=str(policy))
    assert isinstance(governance.enforcer, PolicyEnforcementPoint)

    assert lookup_invoice("INV-5")["invoice_id"] == "INV-5"
    denial = pay_supplier("DE89370400440532013000", 1.0)

    assert isinstance(denial, Denial)
    allowed = only_span(exporter, "execute_tool lookup_invoice")
    denied = only_span(exporter, "execute_tool pay_supplier")
    assert (allowed.attributes[A.POLICY_EFFECT], allowed.attributes[A.POLICY_ID]) == ("allow", "unit-policy")
    assert (denied.attributes[A.POLICY_EFFECT], denied.attributes[A.POLICY_BOUNDARY]) == ("deny", "scope")


def test_bad_configuration_fails_at_start_up(tmp_path):
    with pytest.raises(Exception, match="missing.yaml"):
        instrument(agent_id="a", frameworks=None, policies=str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="approval_handler"):
        instrument(agent_id="a", frameworks=None, approval_handler=object())
    with pytest.raises(ValueError, match="unknown frameworks"):
        instrument(agent_id="a", frameworks=["crewai"])


def test_zero_code_mode_reads_its_configuration_from_the_environment(tmp_path):
    policy = tmp_path / "policies.yaml"
    policy.write_text("id: env-policy\nagents:\n  env-agent:\n    scopes:\n      tools: [allowed_tool]\n")

    lines = run_env_configured_agent(GOVTRACE_POLICIES=str(policy))

    assert lines == [
        "allowed_tool: ok",
        "forbidden_tool: denied (deny)",
        'allowed_tool span: agent=env-agent effect=allow arguments={"who": "[REDACTED:email]"}',
    ]


def test_zero_code_mode_with_a_broken_policy_file_denies_every_call(tmp_path):
    lines = run_env_configured_agent(GOVTRACE_POLICIES=str(tmp_path / "missing.yaml"))

    assert lines == [
        "allowed_tool: denied (deny)",
        "forbidden_tool: denied (deny)",
        'allowed_tool span: agent=env-agent effect=deny arguments={"who": "[REDACTED:email]"}',
    ]


def run_env_configured_agent(**settings: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GOVTRACE_", "OTEL_"))}
    env.update({"GOVTRACE_AGENT_ID": "env-agent", "GOVTRACE_CAPTURE_CONTENT": "true", **settings})
    out = subprocess.run([sys.executable, str(AGENTS / "env_configured_agent.py")], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()
