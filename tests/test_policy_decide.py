"""The pure decision path: scopes, delegation, four tiers over five dimensions (no span, no state)."""

from __future__ import annotations

import textwrap

import pytest

from govtrace.instrumentation.enforcement import ToolRequest
from govtrace.instrumentation.policy import decide, load_policy_text, parse_scope_strings

POLICY = load_policy_text(textwrap.dedent(
    """\
    id: decide-test
    oversight:
      review: {routed_to: role:reviewer, reversal_window_seconds: 600}
      approval: {routed_to: role:approver, timeout_seconds: 60, sla_seconds: 30}
      halt: {routed_to: role:oncall}
    rules:
      - {id: amount-2, tier: 2, when: {amount: {gt: 100}}}
      - {id: amount-3, tier: 3, when: {amount: {gt: 1000}}}
      - {id: amount-4, tier: 4, when: {amount: {gt: 100000}}}
      - {id: confidential, tier: 2, when: {classification: [confidential]}}
      - {id: pii, tier: 3, when: {classification: [pii]}, reason: personal data}
      - {id: irreversible, tier: 3, when: {reversible: false}}
      - {id: records-2, tier: 2, when: {record_count: {gte: 1000}}}
      - {id: records-3, tier: 3, when: {record_count: {gte: 10000}}}
      - {id: gdpr, tier: 2, when: {regulatory_scope: [gdpr]}}
      - {id: sox, tier: 3, when: {regulatory_scope: [sox]}, routed_to: role:controller}
      - {id: wipe, tier: 4, tools: [db.delete], resources: ["db://prod/*"]}
    agents:
      buyer:
        scopes:
          tools: [catalog.search, order.*, db.delete]
          resources: ["erp://orders/*", "erp://catalog/*", "db://*"]
          operations: [read, write, delete]
        may_delegate_to: [helper]
      helper:
        scopes:
          tools: [catalog.search, order.create, mail.send]
          resources: ["erp://*", "mail://*"]
          operations: [read, write, send]
        may_delegate_to: [helper2]
      helper2:
        scopes: {tools: [catalog.search], resources: ["erp://*"], operations: [read]}
      loner:
        scopes: {tools: [catalog.search], resources: ["erp://*"], operations: [read]}
      planner:
        scopes: {tools: [plan.make]}
        delegable: {tools: [order.create], resources: ["erp://orders/*"], operations: [write]}
        may_delegate_to: [helper]
    """))


def req(**kw) -> ToolRequest:
    kw.setdefault("agent_id", "buyer")
    kw.setdefault("tool", "order.create")
    kw.setdefault("resource", "erp://orders/1")
    kw.setdefault("operation", "write")
    return ToolRequest(**kw)


def test_a_call_no_rule_matches_is_tier_one_allowed_by_the_default_rule():
    d = decide(POLICY, req())
    assert (d.effect, d.tier, d.rule_id, d.boundary, d.reasons) == ("allow", 1, "default", None, ())
    assert (d.policy_id, d.version) == ("decide-test", POLICY.version)
    assert len(d.decision_id) == 32


@pytest.mark.parametrize(
    ("dimension", "facts", "tier", "rule"),
    [
        ("amount", {"amount": 150.0}, 2, "amount-2"),
        ("amount", {"amount": 5000.0}, 3, "amount-3"),
        ("amount", {"amount": 250000.0}, 4, "amount-4"),
        ("classification", {"classification": "confidential"}, 2, "confidential"),
        ("classification", {"classification": "pii"}, 3, "pii"),
        ("reversibility", {"reversible": False}, 3, "irreversible"),
        ("record count", {"record_count": 1000}, 2, "records-2"),
        ("record count", {"record_count": 20000}, 3, "records-3"),
        ("regulatory scope", {"regulatory_scope": ("gdpr",)}, 2, "gdpr"),
        ("regulatory scope", {"regulatory_scope": ("hipaa", "sox")}, 3, "sox"),
    ],
)
def test_each_dimension_alone_raises_the_tier(dimension, facts, tier, rule):
    d = decide(POLICY, req(**facts))
    assert (d.tier, d.rule_id) == (tier, rule), dimension
    assert d.effect == ("allow" if tier <= 2 else "escalate")


def test_values_below_every_threshold_stay_tier_one():
    d = decide(POLICY, req(amount=100.0, record_count=999, classification="internal", reversible=True,
                          regulatory_scope=("pci",)))
    assert (d.tier, d.effect, d.rule_id) == (1, "allow", "default")


def test_the_tier_is_the_maximum_over_dimensions_so_a_200_dollar_call_on_50000_records_is_not_tier_one():
    d = decide(POLICY, req(amount=200.0, record_count=50_000))
    assert (d.tier, d.effect, d.rule_id, d.boundary) == (3, "escalate", "records-3", "tier")
    assert d.reasons == (
        "records-3: tier 3 because record_count 50000 >= 10000",
        "amount-2: tier 2 because amount 200 > 100",
        "records-2: tier 2 because record_count 50000 >= 1000",
    )


def test_tier_two_carries_the_review_route_and_reversal_window():
    d = decide(POLICY, req(amount=150.0))
    assert (d.routed_to, d.reversal_window_seconds, d.approval_timeout_seconds) == ("role:reviewer", 600.0, None)


def test_tier_three_carries_the_approval_route_timeout_and_sla_and_a_rule_can_reroute():
    d = decide(POLICY, req(amount=5000.0))
    assert (d.routed_to, d.approval_timeout_seconds, d.approval_sla_seconds) == ("role:approver", 60.0, 30.0)
    assert decide(POLICY, req(regulatory_scope=("sox",))).routed_to == "role:controller"


def test_tier_four_routes_to_the_halt_destination():
    d = decide(POLICY, req(amount=250000.0))
    assert (d.tier, d.effect, d.routed_to) == (4, "escalate", "role:oncall")


def test_a_rule_that_names_a_tool_and_resource_applies_only_to_them():
    on_prod = decide(POLICY, req(tool="db.delete", resource="db://prod/customers", operation="delete"))
    on_dev = decide(POLICY, req(tool="db.delete", resource="db://dev/customers", operation="delete"))
    assert (on_prod.tier, on_prod.rule_id) == (4, "wipe")
    assert (on_dev.tier, on_dev.rule_id) == (1, "default")


def test_a_missing_classification_compares_as_unknown():
    policy = load_policy_text(
        "id: u\nrules:\n  - {id: unclassified, tier: 2, when: {classification: [unknown]}}\n"
        "agents:\n  a: {scopes: {tools: [t]}}\n")
    assert decide(policy, ToolRequest(agent_id="a", tool="t")).rule_id == "unclassified"
    assert decide(policy, ToolRequest(agent_id="a", tool="t", classification="public")).rule_id == "default"


@pytest.mark.parametrize(
    ("facts", "rule_id", "reason"),
    [
        ({"tool": "payment.execute"}, "agents.buyer.scopes.tools",
         "tool 'payment.execute' is outside the scopes of agent 'buyer'"),
        ({"resource": "hr://salaries/1"}, "agents.buyer.scopes.resources",
         "resource 'hr://salaries/1' is outside the scopes of agent 'buyer'"),
        ({"operation": "send"}, "agents.buyer.scopes.operations",
         "operation 'send' is outside the scopes of agent 'buyer'"),
        ({"agent_id": "stranger"}, "agents", "agent 'stranger' has no entry in policy 'decide-test'"),
    ],
)
def test_anything_outside_the_agents_scopes_is_denied_at_the_scope_boundary(facts, rule_id, reason):
    d = decide(POLICY, req(**facts))
    assert (d.effect, d.boundary, d.rule_id, d.reasons, d.tier) == ("deny", "scope", rule_id, (reason,), 1)


def test_scope_is_checked_before_tiers_so_an_out_of_scope_large_payment_is_denied_not_escalated():
    d = decide(POLICY, req(tool="payment.execute", amount=250000.0))
    assert (d.effect, d.boundary) == ("deny", "scope")


def test_a_sub_agent_inside_its_delegation_is_allowed():
    d = decide(POLICY, req(agent_id="helper", tool="order.create", resource="erp://orders/9",
                           delegating_agent="buyer", delegation_depth=1,
                           delegated_scopes=("tool:order.create", "resource:erp://orders/*")))
    assert (d.effect, d.tier) == ("allow", 1)


def test_a_sub_agent_exceeding_what_was_delegated_is_denied_at_the_delegation_boundary():
    d = decide(POLICY, req(agent_id="helper", tool="catalog.search", resource="erp://catalog/x", operation="read",
                           delegating_agent="buyer", delegation_depth=1, delegated_scopes=("tool:order.create",)))
    assert (d.effect, d.boundary, d.rule_id) == ("deny", "delegation", "delegation.scopes")
    assert d.reasons == ("tool 'catalog.search' is outside the scopes 'buyer' delegated to 'helper'",)


def test_delegation_never_grants_more_than_the_delegating_agent_holds():
    # helper holds mail.send and buyer delegates "*", but buyer itself does not hold mail.send.
    d = decide(POLICY, req(agent_id="helper", tool="mail.send", resource="mail://x", operation="send",
                           delegating_agent="buyer", delegation_depth=1, delegated_scopes=("*",)))
    assert (d.effect, d.boundary, d.rule_id) == ("deny", "delegation", "agents.buyer.scopes.tools")
    assert d.reasons == ("tool 'mail.send' is outside what delegating agent 'buyer' holds",)


def test_delegation_never_grants_more_than_the_sub_agent_holds_itself():
    d = decide(POLICY, req(agent_id="helper", tool="db.delete", resource="db://dev/x", operation="delete",
                           delegating_agent="buyer", delegation_depth=1, delegated_scopes=("*",)))
    assert (d.effect, d.boundary) == ("deny", "scope")


@pytest.mark.parametrize(
    ("facts", "rule_id", "reason"),
    [
        ({"delegating_agent": "buyer", "delegated_scopes": ()}, "delegation.scopes",
         "agent 'buyer' delegated no scopes to 'helper'"),
        ({"delegating_agent": "loner", "delegated_scopes": ("*",)}, "agents.loner.may_delegate_to",
         "agent 'loner' may not delegate to 'helper'"),
        ({"delegating_agent": "ghost", "delegated_scopes": ("*",)}, "delegation",
         "delegating agent 'ghost' has no entry in policy 'decide-test'"),
        ({"delegating_agent": "buyer", "delegated_scopes": ("*",), "delegation_depth": 4}, "delegation.max_depth",
         "delegation depth 4 exceeds the policy maximum 3"),
        ({"delegation_depth": 2}, "delegation", "delegation depth 2 without a delegating agent"),
    ],
)
def test_a_delegation_that_is_not_valid_is_denied(facts, rule_id, reason):
    d = decide(POLICY, req(agent_id="helper", tool="order.create", resource="erp://orders/1", **facts))
    assert (d.effect, d.boundary, d.rule_id, d.reasons) == ("deny", "delegation", rule_id, (reason,))


def test_delegated_scopes_parse_by_prefix_and_leave_unmentioned_dimensions_unrestricted():
    scope = parse_scope_strings(("tool:order.*", "resource:erp://orders/*", "op:write", "catalog.search"))
    assert scope.tools.patterns == ("order.*", "catalog.search")
    assert scope.violation("order.create", "erp://orders/1", "write") is None
    assert scope.violation("order.create", "erp://orders/1", "delete") == ("operations", "delete")
    only_tools = parse_scope_strings(("order.create",))
    assert only_tools.violation("order.create", "anything://at/all", "delete") is None


def test_glob_star_matches_across_slashes_and_matching_is_case_sensitive():
    d = decide(POLICY, req(resource="erp://orders/2026/11/po-1"))
    assert d.effect == "allow"
    assert decide(POLICY, req(tool="Order.create")).boundary == "scope"


def test_decide_is_pure_and_repeatable():
    a, b = decide(POLICY, req(amount=5000.0)), decide(POLICY, req(amount=5000.0))
    assert a.decision_id != b.decision_id
    assert (a.effect, a.tier, a.rule_id, a.reasons) == (b.effect, b.tier, b.rule_id, b.reasons)
    assert POLICY.decide(req(amount=5000.0)).tier == 3


FLEET_STEPS = [
    # agent, tool, resource, operation, classification, records, amount, reversible -> tier, effect, rule
    ("procurement-agent", "search_vendors", "erp://vendors", "read", "internal", 40, None, None,
     1, "allow", "default"),
    ("procurement-agent", "create_purchase_order", "erp://purchase_orders", "write", "confidential", 1, 4800.0, True,
     3, "escalate", "amount-over-1000"),
    ("procurement-agent", "create_purchase_order", "erp://purchase_orders", "write", "confidential", 1, 250_000.0,
     False, 4, "escalate", "amount-over-100k-halts"),
    ("finance-agent", "list_invoices", "erp://invoices", "read", "confidential", 120, None, None, 1, "allow", "default"),
    ("finance-agent", "pay_invoice", "bank://payments", "write", "confidential", 1, 180.0, True,
     2, "allow", "small-reversible-payment"),
    ("finance-agent", "pay_invoice", "bank://payments", "write", "restricted", 50_000, 200.0, False,
     3, "escalate", "bulk-records"),
    ("finance-agent", "pay_invoice", "bank://payments", "write", "confidential", 1, 9_500.0, False,
     3, "escalate", "amount-over-1000"),
    ("finance-agent", "wire_transfer", "bank://wires", "send", "restricted", 1, 1200.0, False,
     3, "escalate", "amount-over-1000"),
    ("finance-agent", "export_ledger", "erp://general_ledger", "read", "restricted", 900_000, None, None,
     1, "deny", "agents.finance-agent.scopes.tools"),
    ("support-agent", "lookup_customer", "crm://customers", "read", "pii", 1, None, None, 1, "allow", "default"),
    ("support-agent", "issue_refund", "bank://refunds", "write", "confidential", 1, 35.0, True,
     2, "allow", "small-reversible-payment"),
    ("support-agent", "send_email", "mail://outbound", "send", "pii", 1, None, None, 1, "allow", "default"),
    ("hr-agent", "read_employee_record", "hris://employees", "read", "pii", 1, None, None,
     2, "allow", "read-pii-logged"),
    ("hr-agent", "update_salary", "hris://payroll", "write", "restricted", 1, 3000.0, True,
     3, "escalate", "pii-write-needs-approval"),
    ("it-agent", "list_accounts", "iam://accounts", "read", "internal", 3_400, None, None, 1, "allow", "default"),
    ("it-agent", "disable_account", "iam://accounts", "write", "internal", 1, None, True, 2, "allow", "reversible-admin"),
    ("it-agent", "delete_backups", "s3://backups", "delete", "restricted", 12_000, None, False,
     4, "escalate", "irreversible-delete"),
    ("it-agent", "rotate_key", "kms://keys", "write", "restricted", 1, None, None, 2, "allow", "restricted-data"),
    ("ops-orchestrator", "delegate", None, None, None, None, None, None, 1, "allow", "default"),
]


@pytest.mark.parametrize("step", FLEET_STEPS, ids=[f"{s[0]}:{s[1]}:{s[8]}" for s in FLEET_STEPS])
def test_the_example_fleet_decides_the_demo_fleets_calls_over_all_dimensions(step):
    from govtrace.instrumentation.policy import EXAMPLE_FLEET_POLICY, load_policy

    agent, tool, resource, operation, classification, records, amount, reversible, tier, effect, rule = step
    d = load_policy(EXAMPLE_FLEET_POLICY).decide(ToolRequest(
        agent_id=agent, tool=tool, resource=resource, operation=operation, classification=classification,
        record_count=records, amount=amount, reversible=reversible))
    assert (d.tier, d.effect, d.rule_id) == (tier, effect, rule)


def test_the_example_fleet_routes_each_tier_as_the_docs_describe():
    from govtrace.instrumentation.policy import EXAMPLE_FLEET_POLICY, load_policy

    fleet = load_policy(EXAMPLE_FLEET_POLICY)
    pay = {"agent_id": "finance-agent", "tool": "pay_invoice", "resource": "bank://payments", "operation": "write"}
    tier2 = fleet.decide(ToolRequest(**pay, amount=180.0, reversible=True))
    tier3 = fleet.decide(ToolRequest(**pay, amount=200.0, record_count=50_000))
    tier4 = fleet.decide(ToolRequest(**pay, amount=250_000.0))
    assert (tier2.routed_to, tier2.reversal_window_seconds) == ("role:ops-reviewer", 3600.0)
    assert (tier3.routed_to, tier3.approval_timeout_seconds) == ("role:finance-controller", 1800.0)
    assert tier3.reasons == ("bulk-records: tier 3 (mass data access) because record_count 50000 >= 10000",
                             "small-reversible-payment: tier 2 (every payment is reviewed) because amount 200 > 0",
                             "many-records: tier 2 because record_count 50000 >= 5000")
    assert tier4.routed_to == "role:security-oncall"


def test_in_the_example_fleet_the_orchestrator_hands_down_what_it_may_not_use_itself():
    from govtrace.instrumentation.policy import EXAMPLE_FLEET_POLICY, load_policy

    fleet = load_policy(EXAMPLE_FLEET_POLICY)
    search = {"tool": "search_vendors", "resource": "erp://vendors", "operation": "read"}
    delegated = {"delegating_agent": "ops-orchestrator", "delegation_depth": 1, "acting_for": "alice@acme.example"}
    itself = fleet.decide(ToolRequest(agent_id="ops-orchestrator", **search))
    handed_down = fleet.decide(ToolRequest(agent_id="procurement-agent", **search, **delegated,
                                           delegated_scopes=("tool:search_vendors", "resource:erp://vendors*")))
    wire = fleet.decide(ToolRequest(agent_id="finance-agent", tool="wire_transfer", resource="bank://wires",
                                    operation="send", amount=10.0, **delegated, delegated_scopes=("*",)))
    assert (itself.effect, itself.boundary) == ("deny", "scope")
    assert (handed_down.effect, handed_down.tier) == ("allow", 1)
    assert (wire.effect, wire.boundary, wire.reasons) == (
        "deny", "delegation", ("tool 'wire_transfer' is outside what delegating agent 'ops-orchestrator' holds",))


def test_a_delegator_may_hand_down_delegable_authority_it_cannot_use_itself():
    on_its_own = decide(POLICY, req(agent_id="planner"))
    handed_down = decide(POLICY, req(agent_id="helper", delegating_agent="planner", delegation_depth=1,
                                     delegated_scopes=("tool:order.create",)))
    beyond = decide(POLICY, req(agent_id="helper", tool="order.create", resource="erp://catalog/x",
                                delegating_agent="planner", delegation_depth=1, delegated_scopes=("*",)))
    assert (on_its_own.effect, on_its_own.boundary) == ("deny", "scope")
    assert handed_down.effect == "allow"
    assert (beyond.effect, beyond.boundary, beyond.rule_id) == (
        "deny", "delegation", "agents.planner.delegable.resources")
