"""The optional Cedar engine: scopes and tier rules in Cedar, everything else in the YAML file."""

from __future__ import annotations

import hashlib

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.enforcement import Denial, ToolRequest
from govtrace.instrumentation.policy import (
    ENGINE_FAULTS,
    EXAMPLE_FLEET_POLICY,
    PolicyEnforcementPoint,
    PolicyLoadError,
    load_policy,
    load_policy_text,
)
from govtrace.instrumentation.telemetry import AgentTelemetry

pytest.importorskip("cedarpy")  # the optional engine's package; the tests skip without it

EXAMPLES = EXAMPLE_FLEET_POLICY.parent
POLICY = load_policy(EXAMPLES / "cedar-demo.yaml")


def support(**kw) -> ToolRequest:
    kw.setdefault("tool", "order.lookup")
    kw.setdefault("resource", "shop://orders/1")
    return ToolRequest(agent_id="support", **kw)


def test_the_version_hashes_the_yaml_and_the_cedar_file_together():
    yaml_bytes = (EXAMPLES / "cedar-demo.yaml").read_bytes()
    cedar_bytes = (EXAMPLES / "cedar-demo.cedar").read_bytes()
    assert POLICY.digest == hashlib.sha256(yaml_bytes + b"\0cedar\0" + cedar_bytes).hexdigest()
    assert POLICY.version == POLICY.digest[:12]


def test_a_call_a_cedar_scope_policy_permits_is_tier_one():
    d = POLICY.decide(support())
    assert (d.effect, d.tier, d.rule_id) == ("allow", 1, "default")


def test_a_call_no_cedar_policy_permits_is_denied_at_the_scope_boundary():
    d = POLICY.decide(support(tool="payment.execute"))
    assert (d.effect, d.boundary, d.rule_id, d.reasons) == (
        "deny", "scope", "cedar:default-deny",
        ("no Cedar policy permits agent 'support' to call tool 'payment.execute'",))


def test_a_cedar_forbid_wins_and_its_reason_is_recorded():
    d = POLICY.decide(support(record_count=500_000))
    assert (d.effect, d.boundary, d.rule_id) == ("deny", "scope", "cedar:no-bulk-export")
    assert d.reasons == ("Cedar policy 'no-bulk-export' forbids agent 'support' to call tool 'order.lookup' "
                         "(bulk export of customer data is never allowed)",)


def test_cedar_tier_rules_and_yaml_tier_rules_combine_by_maximum():
    pii = POLICY.decide(support(classification="pii"))
    refund = POLICY.decide(support(tool="refund.issue", amount=80.0, classification="pii"))
    irreversible = POLICY.decide(support(classification="pii", reversible=False))
    assert (pii.tier, pii.rule_id, pii.reasons) == (2, "customer-pii", ("customer-pii: tier 2 (Cedar)",))
    assert (refund.tier, refund.effect, refund.rule_id, refund.routed_to) == (3, "escalate", "refund-over-50",
                                                                              "role:support-lead")
    assert refund.reasons == ("refund-over-50: tier 3 (refunds above 50 need a team lead) (Cedar)",
                              "customer-pii: tier 2 (Cedar)")
    assert (irreversible.tier, irreversible.rule_id) == (3, "irreversible")


def test_a_cedar_delegator_hands_down_delegate_authority_but_never_more():
    base = {"delegating_agent": "orchestrator", "delegation_depth": 1, "delegated_scopes": ("*",)}
    handed = POLICY.decide(support(**base))
    beyond = POLICY.decide(support(tool="refund.issue", amount=10.0, **base))
    itself = POLICY.decide(ToolRequest(agent_id="orchestrator", tool="order.lookup"))
    assert handed.effect == "allow"
    assert (beyond.effect, beyond.boundary, beyond.rule_id) == ("deny", "delegation", "cedar:default-deny")
    assert beyond.reasons[0].startswith("tool 'refund.issue' is outside what delegating agent 'orchestrator' holds")
    assert (itself.effect, itself.boundary) == ("deny", "scope")


def test_the_enforcement_point_records_cedar_decisions_on_the_span():
    exporter = InMemorySpanExporter()
    telemetry = AgentTelemetry("support", processor=SimpleSpanProcessor(exporter))
    pep = PolicyEnforcementPoint(POLICY, agent_id="support")
    with telemetry.tool_call("payment.execute", arguments={"x": 1}) as call:
        result = pep.run(call, support(tool="payment.execute"), lambda: "paid")
    span = exporter.get_finished_spans()[-1]
    assert isinstance(result, Denial)
    assert (span.attributes[A.POLICY_RULE_ID], span.attributes[A.POLICY_BOUNDARY],
            span.attributes[A.POLICY_VERSION]) == ("cedar:default-deny", "scope", POLICY.version)


def test_a_cedar_policy_that_errors_is_an_engine_fault_resolved_by_the_fail_mode():
    ENGINE_FAULTS.reset()
    policy = load_policy_text(
        "id: c\ncedar:\n  policies: |\n"
        "    permit(principal, action, resource) when { context.amount_cents > 5 };\n"
        "agents:\n  a: {}\n")
    exporter = InMemorySpanExporter()
    telemetry = AgentTelemetry("a", processor=SimpleSpanProcessor(exporter))
    pep = PolicyEnforcementPoint(policy, agent_id="a")
    with telemetry.tool_call("t") as call:
        result = pep.run(call, ToolRequest(agent_id="a", tool="t"), lambda: "ran")  # no amount: Cedar errors
    assert isinstance(result, Denial) and result.reason == "policy engine fault (fail-closed): CedarError"
    assert ENGINE_FAULTS.count("decide") == 1
    ENGINE_FAULTS.reset()


@pytest.mark.parametrize(
    ("cedar", "agents", "message"),
    [
        ("  policies: 'permit(principal, action'\n", "  a: {}\n", "invalid Cedar policies"),
        ("  policies: '@tier(\"9\") permit(principal, action, resource);'\n", "  a: {}\n", "@tier must be"),
        ("  policies: '@tier(\"2\") forbid(principal, action, resource);'\n", "  a: {}\n", "must be a permit"),
        ("  policies: 'permit(principal, action, resource);'\n", "  a: {scopes: {tools: [x]}}\n",
         "scopes are decided by the Cedar policies"),
        ("  file: absent.cedar\n", "  a: {}\n", "cannot read Cedar file"),
    ],
)
def test_cedar_problems_are_load_errors_naming_the_field(cedar, agents, message, tmp_path):
    with pytest.raises(PolicyLoadError, match=message) as err:
        load_policy_text(f"id: c\ncedar:\n{cedar}agents:\n{agents}", base_dir=tmp_path)
    assert err.value.field.startswith(("cedar", "agents.a."))
