"""Optional second engine: scopes and tier rules written in Cedar, evaluated by ``cedarpy``.

Enabled by a top-level ``cedar`` field in the YAML policy (``{file: fleet.cedar}`` or
``{policies: "..."}``). The YAML file keeps everything Cedar does not express: agents, rate limits,
envelopes, oversight routes, delegation depth and ``may_delegate_to``. ``cedarpy`` is imported only
when a policy uses Cedar, so the instrumentation stays light.

Conventions (see docs/policies.md, "Cedar"):
- request: principal ``Agent::"<agent id>"``, action ``Action::"call"`` (the agent makes the call) or
  ``Action::"delegate"`` (the agent hands the call to a sub-agent), resource ``Tool::"<tool>"``;
  context ``tool`` and, when the request carries them, ``resource``, ``operation``,
  ``classification``, ``amount_cents`` (Long), ``record_count`` (Long), ``reversible`` (Bool),
  ``regulatory_scope`` (Set<String>), ``acting_for``, ``delegating_agent``, ``delegation_depth``;
- policies without a ``@tier`` annotation are **scope** policies: default deny, forbid wins;
- ``permit`` policies annotated ``@tier("1".."4")`` are **tier rules**: each one satisfied contributes
  its tier (the maximum wins, together with the YAML rules);
- ``@id("...")`` names a policy (recorded as ``govtrace.policy.rule_id``), ``@reason("...")`` explains it;
- an evaluation error in any policy is an engine fault (resolved by the fail mode), never a silent skip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CALL = "call"
DELEGATE = "delegate"


class CedarError(RuntimeError):
    """Cedar could not evaluate a request (an error inside a policy): an engine fault."""


@dataclass(frozen=True)
class CedarRef:
    id: str
    effect: str
    tier: int | None
    reason: str | None


class CedarRules:
    def __init__(self, text: str, *, source: str = "<cedar>"):
        try:
            import cedarpy
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ValueError("the policy uses Cedar, which needs the optional package 'cedarpy' "
                             "(pip install cedarpy)") from exc
        self._cedarpy = cedarpy
        self.source = source
        try:
            parsed = json.loads(cedarpy.policies_to_json_str(text))
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"invalid Cedar policies: {exc}") from exc
        static = parsed.get("staticPolicies") or {}
        if parsed.get("templates"):
            raise ValueError("Cedar templates are not supported in govtrace policies")
        self.refs: dict[str, CedarRef] = {}
        scope_policies: dict[str, Any] = {}
        tier_policies: dict[str, Any] = {}
        seen_ids: set[str] = set()
        for pid, body in static.items():
            notes = body.get("annotations") or {}
            name = notes.get("id") or pid
            if name in seen_ids:
                raise ValueError(f"duplicate Cedar policy @id({name!r})")
            seen_ids.add(name)
            tier = None
            if "tier" in notes:
                try:
                    tier = int(notes["tier"])
                except (TypeError, ValueError):
                    tier = None
                if tier not in (1, 2, 3, 4):
                    raise ValueError(f"Cedar policy {name!r}: @tier must be \"1\" to \"4\", got {notes['tier']!r}")
                if body.get("effect") != "permit":
                    raise ValueError(f"Cedar policy {name!r}: a @tier rule must be a permit policy")
                tier_policies[pid] = body
            else:
                scope_policies[pid] = body
            self.refs[pid] = CedarRef(name, body.get("effect", "permit"), tier, notes.get("reason"))
        self.scope_count = len(scope_policies)
        self.tier_count = len(tier_policies)
        self._scope = self._policy_set(scope_policies)
        self._tiers = self._policy_set(tier_policies) if tier_policies else None

    def _policy_set(self, policies: dict[str, Any]) -> Any:
        doc = json.dumps({"staticPolicies": policies, "templates": {}, "templateLinks": []})
        return self._cedarpy.PolicySet.from_json_str(doc)

    def _authorize(self, policies: Any, principal: str, action: str, request: Any) -> Any:
        result = self._cedarpy.is_authorized(
            {
                "principal": {"type": "Agent", "id": principal},
                "action": {"type": "Action", "id": action},
                "resource": {"type": "Tool", "id": request.tool},
                "context": context_of(request),
            },
            policies,
            [],
        )
        errors = list(result.diagnostics.errors)
        if errors:
            raise CedarError(f"Cedar evaluation error in {self.source}: {'; '.join(map(str, errors))}")
        return result

    def refusal(self, agent_id: str, action: str, request: Any) -> tuple[str, str] | None:
        """``(rule_id, reason)`` when the scope policies do not allow ``action`` by ``agent_id``."""
        result = self._authorize(self._scope, agent_id, action, request)
        if result.allowed:
            return None
        forbids = [self.refs[p] for p in result.diagnostics.reasons if p in self.refs]
        verb = "call" if action == CALL else "delegate"
        if forbids:
            ref = forbids[0]
            why = f" ({ref.reason})" if ref.reason else ""
            return f"cedar:{ref.id}", f"Cedar policy {ref.id!r} forbids agent {agent_id!r} to {verb} tool {request.tool!r}{why}"
        return "cedar:default-deny", f"no Cedar policy permits agent {agent_id!r} to {verb} tool {request.tool!r}"

    def tiers(self, agent_id: str, request: Any) -> list[tuple[int, str, str | None]]:
        """``(tier, rule id, reason)`` of every Cedar tier rule satisfied by the call."""
        if self._tiers is None:
            return []
        result = self._authorize(self._tiers, agent_id, CALL, request)
        out = []
        for pid in result.diagnostics.reasons:
            ref = self.refs.get(pid)
            if ref is not None and ref.tier is not None:
                out.append((ref.tier, ref.id, ref.reason))
        return out


def context_of(request: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {"tool": request.tool}
    if request.resource is not None:
        ctx["resource"] = request.resource
    if request.operation is not None:
        ctx["operation"] = request.operation
    if request.classification is not None:
        ctx["classification"] = request.classification
    if request.amount is not None:
        ctx["amount_cents"] = int(round(float(request.amount) * 100))
    if request.record_count is not None:
        ctx["record_count"] = int(request.record_count)
    if request.reversible is not None:
        ctx["reversible"] = bool(request.reversible)
    if request.regulatory_scope:
        ctx["regulatory_scope"] = list(request.regulatory_scope)
    if request.acting_for:
        ctx["acting_for"] = request.acting_for
    if request.delegating_agent:
        ctx["delegating_agent"] = request.delegating_agent
    ctx["delegation_depth"] = int(request.delegation_depth or 0)
    return ctx
