"""The decision chain graph: agents as boxes, policy decisions as colours, approvals joined to what they decided."""

from __future__ import annotations

import re

import pandas as pd

from govtrace.dashboard.chain_graph import EFFECT_COLOURS, chain_dot

STEPS = pd.DataFrame([
    {"step": "task", "span_id": "t1", "parent_span_id": None, "agent_id": "orchestrator",
     "name": "invoke_agent Orchestrator", "acting_for": "alice@acme.example", "relation": "task"},
    {"step": "tool call", "span_id": "c1", "parent_span_id": "t1", "agent_id": "orchestrator", "tool_name": "delegate",
     "policy_effect": "allow", "policy_tier": 1, "policy_rule_id": "delegation-allowed", "outcome": "ok",
     "relation": "task"},
    {"step": "task", "span_id": "t2", "parent_span_id": "c1", "agent_id": "finance", "name": "invoke_agent Finance",
     "relation": "task"},
    {"step": "tool call", "span_id": "c2", "parent_span_id": "t2", "agent_id": "finance", "tool_name": "wire_transfer",
     "policy_effect": "escalate", "policy_tier": 3, "escalation_id": "esc-1", "outcome": "awaiting approval",
     "relation": "task"},
    {"step": "tool call", "span_id": "c3", "parent_span_id": "t2", "agent_id": "finance", "tool_name": "export_ledger",
     "policy_effect": "deny", "policy_tier": 1, "outcome": "denied by policy", "relation": "task"},
    {"step": "tool call", "span_id": "c4", "parent_span_id": "t2", "agent_id": "finance", "tool_name": "shadow_tool",
     "outcome": "ok", "relation": "task"},
    {"step": "tool call", "span_id": "c5", "parent_span_id": "t2", "agent_id": "finance", "tool_name": "pay_invoice",
     "policy_effect": "escalate", "policy_tier": 3, "escalation_id": "esc-2", "approval": "denied",
     "approver_id": "dana@acme.example", "outcome": "not executed (denied)", "relation": "task"},
    {"step": "approval", "span_id": "a1", "parent_span_id": None, "agent_id": "finance", "escalation_id": "esc-1",
     "approval": "approved", "approver_id": "erin@acme.example", "relation": "approval"},
])


def node(dot: str, span_id: str) -> str:
    return re.search(rf'^\s*"{span_id}" \[(.*)\];$', dot, re.MULTILINE).group(1)


def test_each_agent_is_a_box_holding_its_own_steps():
    dot = chain_dot(STEPS)
    clusters = re.findall(r'subgraph cluster_\d+ \{\n\s+label="([^"]+)"', dot)
    assert clusters == ["orchestrator", "finance"]
    finance = dot.split('label="finance"')[1]
    assert all(f'"{span}" [' in finance for span in ("t2", "c2", "c3", "c4", "c5", "c5~decision", "a1"))


def test_tool_calls_are_coloured_by_their_policy_decision():
    dot = chain_dot(STEPS)
    for span_id, effect in (("c1", "allow"), ("c2", "escalate"), ("c3", "deny")):
        fill, border = EFFECT_COLOURS[effect]
        assert f'fillcolor="{fill}", color="{border}"' in node(dot, span_id)
    unchecked = node(dot, "c4")
    assert "no policy check recorded" in unchecked and "dashed" in unchecked


def test_a_later_approval_is_joined_to_the_request_it_decided():
    dot = chain_dot(STEPS)
    assert re.search(r'"a1" -> "c2" \[style=dashed, [^]]*label="approved"', dot)
    assert "approved later" in node(dot, "c2")
    assert "(recorded later, in another trace)" in node(dot, "a1")


def test_a_decision_recorded_on_the_request_itself_is_drawn_as_its_own_approval():
    dot = chain_dot(STEPS)
    decision = node(dot, "c5~decision")
    assert "shape=hexagon" in decision and "human approval\\ndenied\\nby dana@acme.example" in decision
    assert re.search(r'"c5" -> "c5~decision" \[style=dashed', dot)
    assert "c2~decision" not in dot  # pending on its span, decided by the separate approval a1


def test_delegation_crosses_from_the_delegating_call_to_the_sub_agents_task():
    assert '"c1" -> "t2";' in chain_dot(STEPS)


def test_quotes_in_the_data_cannot_break_the_graph():
    steps = STEPS.copy()
    steps.loc[1, "tool_name"] = 'say "hi"'
    assert 'say \\"hi\\"' in node(chain_dot(steps), "c1")
