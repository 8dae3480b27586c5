"""Policy engine and enforcement point: scopes, four oversight tiers, rate limits, cost envelopes,
delegation and human approval, recorded on the tool call's span.

    from govtrace.instrumentation.policy import PolicyEnforcementPoint, load_policy

    policy = load_policy("policies/fleet.yaml")
    pep = PolicyEnforcementPoint(policy, agent_id="procurement", approval_handler=handler)
    with telemetry.tool_call("purchase_order.create", arguments=args) as call:
        result = pep.run(call, ToolRequest(agent_id="procurement", tool="purchase_order.create", ...),
                         lambda: create_po(**args))

The file format is documented in ``docs/policies.md``.
"""

from __future__ import annotations

from pathlib import Path

from govtrace.instrumentation.policy.engine import decide
from govtrace.instrumentation.policy.faults import ENGINE_FAULTS, FaultCounter
from govtrace.instrumentation.policy.loader import (
    PolicyLoadError,
    load_policy,
    load_policy_bytes,
    load_policy_text,
    policy_version,
)
from govtrace.instrumentation.policy.model import (
    FAIL_CLOSED,
    FAIL_OPEN,
    TIER_APPROVAL,
    TIER_AUTONOMOUS,
    TIER_HALT,
    TIER_SUPERVISED,
    AgentPolicy,
    Decision,
    PolicySet,
    Scope,
    parse_scope_strings,
)
from govtrace.instrumentation.policy.oversight import (
    ApprovalDecision,
    ApprovalHandler,
    ApprovalRequest,
    CallbackApprovalHandler,
    FileQueueApprovalHandler,
    OversightNotice,
)
from govtrace.instrumentation.policy.pep import PolicyEnforcementPoint, PolicyUnavailable

EXAMPLE_FLEET_POLICY = Path(__file__).parent / "examples" / "fleet.yaml"

__all__ = [
    "ENGINE_FAULTS",
    "EXAMPLE_FLEET_POLICY",
    "FAIL_CLOSED",
    "FAIL_OPEN",
    "TIER_APPROVAL",
    "TIER_AUTONOMOUS",
    "TIER_HALT",
    "TIER_SUPERVISED",
    "AgentPolicy",
    "ApprovalDecision",
    "ApprovalHandler",
    "ApprovalRequest",
    "CallbackApprovalHandler",
    "Decision",
    "FaultCounter",
    "FileQueueApprovalHandler",
    "OversightNotice",
    "PolicyEnforcementPoint",
    "PolicyLoadError",
    "PolicySet",
    "PolicyUnavailable",
    "Scope",
    "decide",
    "load_policy",
    "load_policy_bytes",
    "load_policy_text",
    "parse_scope_strings",
    "policy_version",
]
