"""Evaluate one request against a ``PolicySet``: scopes, delegation, usage state, tiers.

Order (the first that fails decides, so security boundaries are recorded as such):
1. identity: the agent has an entry in the policy;
2. scope: tool, resource and operation inside the agent's own scopes;
3. delegation: inside what was delegated and inside what the delegating agent holds;
4. usage state (enforcement points only): halted task, envelope breach, rate limit; with ``admit``
   a call that passes takes its rate-limit slot here, whatever its tier;
5. tiers: every tier rule that applies and holds contributes its tier; the call's tier is the
   maximum (never lower than ``default_tier``). 1-2 allow, 3-4 escalate.

``decide`` is pure: no span, no clock, no state. The enforcement point passes its ``Usage``.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from govtrace.instrumentation.policy.limits import Usage
from govtrace.instrumentation.policy.model import (
    BOUNDARY_DELEGATION,
    BOUNDARY_SCOPE,
    BOUNDARY_TIER,
    TIER_APPROVAL,
    TIER_HALT,
    TIER_NAMES,
    TIER_SUPERVISED,
    AgentPolicy,
    Decision,
    PolicySet,
    parse_scope_strings,
)

_PREFIX = os.urandom(10).hex()
_COUNTER = itertools.count(1)


def new_id() -> str:
    """A unique 32-hex id (random per process + counter): cheaper than uuid4 on the hot path."""
    return f"{_PREFIX}{next(_COUNTER):012x}"


def decide(policy: PolicySet, request: Any, *, agent_id: str | None = None) -> Decision:
    """Pure decision for ``request``: scope, delegation and tier; no rate or envelope state."""
    return evaluate(policy, request, agent_id=agent_id)


def evaluate(
    policy: PolicySet,
    request: Any,
    *,
    agent_id: str | None = None,
    usage: Usage | None = None,
    task_id: str | None = None,
    now: float = 0.0,
    decision_id: str | None = None,
    admit: bool = False,
) -> Decision:
    agent_id = agent_id or request.agent_id
    did = decision_id or new_id()
    tool = request.tool

    agent = policy.agents.get(agent_id)
    if agent is None:
        return _deny(policy, did, agent_id, tool, BOUNDARY_SCOPE, "agents",
                     f"agent {agent_id!r} has no entry in policy {policy.policy_id!r}")
    if request.agent_id and request.agent_id != agent_id:
        return _deny(policy, did, agent_id, tool, BOUNDARY_SCOPE, "agents",
                     f"request names agent {request.agent_id!r} but the enforcement point is {agent_id!r}")

    cedar = policy.cedar
    if cedar is None:
        outside = agent.scopes.violation(tool, request.resource, request.operation)
        if outside is not None:
            dim, value = outside
            return _deny(policy, did, agent_id, tool, BOUNDARY_SCOPE, f"agents.{agent_id}.scopes.{dim}",
                         f"{_singular(dim)} {value!r} is outside the scopes of agent {agent_id!r}")
    else:
        refused = cedar.refusal(agent_id, "call", request)
        if refused is not None:
            return _deny(policy, did, agent_id, tool, BOUNDARY_SCOPE, refused[0], refused[1])

    if request.delegating_agent or request.delegation_depth:
        refused = _check_delegation(policy, agent, request)
        if refused is not None:
            return _deny(policy, did, agent_id, tool, BOUNDARY_DELEGATION, refused[0], refused[1])

    if usage is not None:
        block = usage.check(tool, task_id, now, admit=admit)
        if block is not None:
            return _deny(policy, did, agent_id, tool, block.boundary, block.rule_id, block.reason,
                         escalation_id=block.escalation_id, halted=block.halted)

    tier = policy.default_tier
    rule_id = "default"
    routed_to = None
    reasons: list[tuple[int, str]] = []
    for rule in agent.rules:
        if not rule.matches(request):
            continue
        why = rule.when.explain(request) or ()
        text = f"{rule.id}: tier {rule.tier}"
        if rule.reason:
            text += f" ({rule.reason})"
        if why:
            text += f" because {', '.join(why)}"
        reasons.append((rule.tier, text))
        if rule.tier > tier:
            tier, rule_id, routed_to = rule.tier, rule.id, rule.routed_to
    if cedar is not None:
        for cedar_tier, cedar_id, cedar_reason in cedar.tiers(agent_id, request):
            text = f"{cedar_id}: tier {cedar_tier}" + (f" ({cedar_reason})" if cedar_reason else "") + " (Cedar)"
            reasons.append((cedar_tier, text))
            if cedar_tier > tier:
                tier, rule_id, routed_to = cedar_tier, cedar_id, None
    if not reasons:
        # rule_id "default" says it all; an empty tuple keeps the hot path light (no reasons attribute).
        reason_texts: tuple[str, ...] = () if tier == 1 else (f"default tier {tier} ({TIER_NAMES[tier]})",)
    else:
        reasons.sort(key=lambda item: -item[0])
        reason_texts = tuple(text for _, text in reasons)

    ov = agent.oversight
    if tier >= TIER_APPROVAL:
        if tier == TIER_HALT:
            routed = routed_to or ov.halt_routed_to
            return Decision(did, "escalate", tier, policy.policy_id, policy.version, rule_id, reason_texts,
                            BOUNDARY_TIER, agent_id, tool, routed_to=routed)
        return Decision(did, "escalate", tier, policy.policy_id, policy.version, rule_id, reason_texts,
                        BOUNDARY_TIER, agent_id, tool, routed_to=routed_to or ov.approval_routed_to,
                        approval_timeout_seconds=ov.approval_timeout_seconds,
                        approval_sla_seconds=ov.approval_sla_seconds or ov.approval_timeout_seconds)
    if tier == TIER_SUPERVISED:
        return Decision(did, "allow", tier, policy.policy_id, policy.version, rule_id, reason_texts, None,
                        agent_id, tool, routed_to=routed_to or ov.review_routed_to,
                        reversal_window_seconds=ov.reversal_window_seconds)
    return Decision(did, "allow", tier, policy.policy_id, policy.version, rule_id, reason_texts, None, agent_id, tool)


def _deny(policy: PolicySet, did: str, agent_id: str, tool: str, boundary: str, rule_id: str, reason: str, *,
          escalation_id: str | None = None, halted: bool = False) -> Decision:
    return Decision(did, "deny", 1, policy.policy_id, policy.version, rule_id, (reason,), boundary, agent_id, tool,
                    escalation_id=escalation_id, halted=halted)


def _check_delegation(policy: PolicySet, agent: AgentPolicy, request: Any) -> tuple[str, str] | None:
    """``(rule_id, reason)`` when the delegation does not cover the call, else None."""
    delegator_id = request.delegating_agent
    depth = request.delegation_depth or (1 if delegator_id else 0)
    if not delegator_id:
        return "delegation", f"delegation depth {depth} without a delegating agent"
    if depth > policy.max_delegation_depth:
        return ("delegation.max_depth",
                f"delegation depth {depth} exceeds the policy maximum {policy.max_delegation_depth}")
    delegator = policy.agents.get(delegator_id)
    if delegator is None:
        return "delegation", f"delegating agent {delegator_id!r} has no entry in policy {policy.policy_id!r}"
    if not delegator.may_delegate_to(agent.agent_id):
        return (f"agents.{delegator_id}.may_delegate_to",
                f"agent {delegator_id!r} may not delegate to {agent.agent_id!r}")
    if not request.delegated_scopes:
        return "delegation.scopes", f"agent {delegator_id!r} delegated no scopes to {agent.agent_id!r}"
    delegated = parse_scope_strings(tuple(request.delegated_scopes))
    outside = delegated.violation(request.tool, request.resource, request.operation)
    if outside is not None:
        dim, value = outside
        return ("delegation.scopes",
                f"{_singular(dim)} {value!r} is outside the scopes {delegator_id!r} delegated to {agent.agent_id!r}")
    if policy.cedar is not None:
        # The delegator holds the call if Cedar lets it make the call itself or hand it down.
        if policy.cedar.refusal(delegator_id, "call", request) is None:
            return None
        refused = policy.cedar.refusal(delegator_id, "delegate", request)
        if refused is None:
            return None
        return refused[0], (f"tool {request.tool!r} is outside what delegating agent {delegator_id!r} holds "
                            f"(Cedar: {refused[1]})")
    outside = delegator.scopes.violation(request.tool, request.resource, request.operation)
    section = "scopes"
    if outside is not None and delegator.delegable is not None:
        handed = delegator.delegable.violation(request.tool, request.resource, request.operation)
        if handed is None:
            outside = None  # held by the delegator to hand down (``delegable``)
        elif outside[0] == "tools" and handed[0] != "tools":
            outside, section = handed, "delegable"  # the tool is delegable: name what is not
    if outside is not None:
        dim, value = outside
        return (f"agents.{delegator_id}.{section}.{dim}",
                f"{_singular(dim)} {value!r} is outside what delegating agent {delegator_id!r} holds")
    return None


def _singular(dim: str) -> str:
    return {"tools": "tool", "resources": "resource", "operations": "operation"}[dim]


