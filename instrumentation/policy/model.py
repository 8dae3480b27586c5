"""The in-memory form of a policy file: immutable, pre-compiled, cheap to evaluate.

Nothing here reads files or spans. ``loader`` builds these objects from YAML and ``engine`` evaluates
them; keeping them frozen means one ``PolicySet`` can be shared by every enforcement point of a
process without locks.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

TIER_AUTONOMOUS = 1
TIER_SUPERVISED = 2
TIER_APPROVAL = 3
TIER_HALT = 4
TIER_NAMES = {1: "autonomous", 2: "supervised", 3: "approval required", 4: "halt and escalate"}

# Values of govtrace.policy.boundary.
BOUNDARY_SCOPE = "scope"
BOUNDARY_TIER = "tier"
BOUNDARY_RATE_LIMIT = "rate_limit"
BOUNDARY_ENVELOPE = "envelope"
BOUNDARY_DELEGATION = "delegation"

FAIL_CLOSED = "closed"
FAIL_OPEN = "open"
MODES = ("enforce", "log_only")

UNKNOWN = "unknown"  # what a dimension compares as when the request does not carry it


class Matcher:
    """A set of glob patterns (``fnmatch`` syntax, case-sensitive) compiled into one regex.

    ``*`` matches any run of characters, ``/`` and ``:`` included; ``?`` one character; ``[abc]`` a set.
    An empty matcher matches nothing: least privilege.
    """

    __slots__ = ("patterns", "_regex")

    def __init__(self, patterns: Iterable[str] = ()):
        self.patterns: tuple[str, ...] = tuple(patterns)
        if self.patterns:
            self._regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in self.patterns))
        else:
            self._regex = None

    def __call__(self, value: str | None) -> bool:
        if value is None or self._regex is None:
            return False
        return self._regex.match(value) is not None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"Matcher({list(self.patterns)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Matcher) and other.patterns == self.patterns

    def __hash__(self) -> int:
        return hash(self.patterns)


@dataclass(frozen=True)
class Scope:
    """Least-privilege scope: what tools, resources and operations an agent may use.

    A request's tool must match ``tools``; its resource (when it names one) must match ``resources``;
    its operation (when it names one) must be in ``operations``. Anything else is outside.
    """

    tools: Matcher = field(default_factory=Matcher)
    resources: Matcher = field(default_factory=Matcher)
    operations: frozenset[str] = frozenset()
    # For delegated scopes only: a dimension the delegation does not mention is not restricted by it.
    restricts_tools: bool = True
    restricts_resources: bool = True
    restricts_operations: bool = True

    def violation(self, tool: str, resource: str | None, operation: str | None) -> tuple[str, str] | None:
        """``(dimension, value)`` of the first thing outside this scope, or None when inside."""
        if self.restricts_tools and not self.tools(tool):
            return "tools", tool
        if resource is not None and self.restricts_resources and not self.resources(resource):
            return "resources", resource
        if operation is not None and self.restricts_operations and operation not in self.operations:
            return "operations", operation
        return None

    def as_strings(self) -> list[str]:
        out = [f"tool:{p}" for p in self.tools.patterns]
        out += [f"resource:{p}" for p in self.resources.patterns]
        out += [f"operation:{o}" for o in sorted(self.operations)]
        return out


_SCOPE_PREFIXES = {"tool": "tools", "tools": "tools", "resource": "resources", "resources": "resources",
                   "operation": "operations", "operations": "operations", "op": "operations"}


@lru_cache(maxsize=1024)
def parse_scope_strings(scopes: tuple[str, ...]) -> Scope:
    """Delegated scopes as strings: ``tool:<glob>``, ``resource:<glob>``, ``operation:<name>``.

    A string without one of these prefixes is a tool glob. A dimension the list does not mention is
    left unrestricted by the delegation (it stays bounded by both agents' own scopes).
    """
    parts: dict[str, list[str]] = {"tools": [], "resources": [], "operations": []}
    for raw in scopes:
        text = str(raw).strip()
        if not text:
            continue
        prefix, sep, rest = text.partition(":")
        dim = _SCOPE_PREFIXES.get(prefix.strip().lower()) if sep else None
        if dim is None:
            parts["tools"].append(text)
        else:
            parts[dim].append(rest.strip())
    return Scope(
        tools=Matcher(parts["tools"]),
        resources=Matcher(parts["resources"]),
        operations=frozenset(parts["operations"]),
        restricts_tools=bool(parts["tools"]),
        restricts_resources=bool(parts["resources"]),
        restricts_operations=bool(parts["operations"]),
    )


@dataclass(frozen=True)
class Range:
    """Numeric comparison: every bound given must hold."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return ((self.gt is None or value > self.gt) and (self.gte is None or value >= self.gte)
                and (self.lt is None or value < self.lt) and (self.lte is None or value <= self.lte))

    def explain(self, name: str, value: float | None) -> str | None:
        """A human reason when ``value`` is inside the range, else None."""
        if value is None:
            return None
        held = []
        if self.gt is not None:
            if not value > self.gt:
                return None
            held.append(f"> {self.gt:g}")
        if self.gte is not None:
            if not value >= self.gte:
                return None
            held.append(f">= {self.gte:g}")
        if self.lt is not None:
            if not value < self.lt:
                return None
            held.append(f"< {self.lt:g}")
        if self.lte is not None:
            if not value <= self.lte:
                return None
            held.append(f"<= {self.lte:g}")
        return f"{name} {value:g} {' and '.join(held)}"


@dataclass(frozen=True)
class Condition:
    """The ``when`` of a tier rule. Every dimension given must hold (AND); none given = always."""

    amount: Range | None = None
    record_count: Range | None = None
    classification: frozenset[str] | None = None
    reversible: bool | str | None = None  # true | false | "unknown"
    regulatory_scope: frozenset[str] | None = None
    operation: frozenset[str] | None = None

    def matches(self, request: Any) -> bool:
        """Whether every dimension given holds for ``request`` (no allocation: the hot path)."""
        if self.amount is not None and not self.amount.holds(request.amount):
            return False
        if self.record_count is not None and not self.record_count.holds(request.record_count):
            return False
        if self.classification is not None and (request.classification or UNKNOWN) not in self.classification:
            return False
        if self.reversible is not None:
            value = UNKNOWN if request.reversible is None else bool(request.reversible)
            if value != self.reversible:
                return False
        if self.regulatory_scope is not None:
            scope = request.regulatory_scope
            if not scope or self.regulatory_scope.isdisjoint(scope):
                return False
        if self.operation is not None and (request.operation or UNKNOWN) not in self.operation:
            return False
        return True

    def explain(self, request: Any) -> list[str] | None:
        """The reasons this condition holds for ``request``, or None when it does not."""
        if not self.matches(request):
            return None
        why: list[str] = []
        if self.amount is not None:
            why.append(self.amount.explain("amount", request.amount) or "amount")
        if self.record_count is not None:
            why.append(self.record_count.explain("record_count", request.record_count) or "record_count")
        if self.classification is not None:
            why.append(f"classification {request.classification or UNKNOWN}")
        if self.reversible is not None:
            value = UNKNOWN if request.reversible is None else bool(request.reversible)
            why.append("irreversible" if value is False else f"reversible {value}")
        if self.regulatory_scope is not None:
            why.append("regulatory scope " + ",".join(sorted(self.regulatory_scope.intersection(request.regulatory_scope))))
        if self.operation is not None:
            why.append(f"operation {request.operation or UNKNOWN}")
        return why


@dataclass(frozen=True)
class TierRule:
    """One tier rule: when it applies to the call and its condition holds, the call is at least ``tier``."""

    id: str
    tier: int
    when: Condition = field(default_factory=Condition)
    tools: Matcher | None = None  # None = any tool
    resources: Matcher | None = None  # None = any resource (or none)
    agents: Matcher | None = None  # None = every agent (only on top-level rules)
    reason: str | None = None
    routed_to: str | None = None
    line: int | None = None

    def matches(self, request: Any) -> bool:
        if self.tools is not None and not self.tools(request.tool):
            return False
        if self.resources is not None and not self.resources(request.resource):
            return False
        return self.when.matches(request)

    def explain(self, request: Any) -> list[str] | None:
        return self.when.explain(request) if self.matches(request) else None


@dataclass(frozen=True)
class RateLimit:
    """At most ``calls`` admitted calls per sliding ``per_seconds`` window, per agent instance."""

    id: str
    calls: int
    per_seconds: float
    tools: Matcher | None = None  # None = every tool of the agent

    def applies(self, tool: str) -> bool:
        return self.tools is None or self.tools(tool)


@dataclass(frozen=True)
class Envelope:
    """Cost ceilings in the policy currency. None = no ceiling for that period."""

    per_task: float | None = None
    per_hour: float | None = None
    per_day: float | None = None

    def limits(self) -> list[tuple[str, float]]:
        return [(p, v) for p, v in (("task", self.per_task), ("hour", self.per_hour), ("day", self.per_day))
                if v is not None]


@dataclass(frozen=True)
class Oversight:
    """Where escalations go and how long humans have."""

    review_routed_to: str | None = None  # tier 2
    reversal_window_seconds: float = 3600.0
    approval_routed_to: str | None = None  # tier 3
    approval_timeout_seconds: float = 900.0
    approval_sla_seconds: float | None = None
    halt_routed_to: str | None = None  # tier 4 and envelope breaches


@dataclass(frozen=True)
class AgentPolicy:
    agent_id: str
    scopes: Scope
    rules: tuple[TierRule, ...] = ()  # top-level rules that apply to this agent, then its own
    rate_limits: tuple[RateLimit, ...] = ()
    envelope: Envelope = field(default_factory=Envelope)
    oversight: Oversight = field(default_factory=Oversight)
    may_delegate_to: Matcher = field(default_factory=Matcher)
    # Authority held only to hand down: the agent may delegate calls inside it but not make them itself.
    delegable: Scope | None = None
    description: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class PolicySet:
    """A loaded policy file. ``version`` is the short sha256 of the file bytes."""

    policy_id: str
    version: str
    digest: str  # full sha256 hex of the source bytes
    agents: Mapping[str, AgentPolicy]
    source: str = "<string>"
    description: str | None = None
    currency: str = "USD"
    fail_mode: str = FAIL_CLOSED
    default_tier: int = TIER_AUTONOMOUS
    max_delegation_depth: int = 3
    oversight: Oversight = field(default_factory=Oversight)
    cedar: Any = None  # CedarRules when the policy delegates scopes and extra tier rules to Cedar

    def decide(self, request: Any, *, agent_id: str | None = None) -> Decision:
        """Pure decision for ``request`` (no span, no rate or envelope state)."""
        from govtrace.instrumentation.policy.engine import decide

        return decide(self, request, agent_id=agent_id)


@dataclass(slots=True)
class Decision:
    """The outcome of evaluating one request: what govtrace records as govtrace.policy.*.

    Not frozen only because frozen dataclasses are slow to build on the hot path; treat as read-only.
    """

    decision_id: str
    effect: str  # allow | deny | escalate
    tier: int
    policy_id: str
    version: str
    rule_id: str | None
    reasons: tuple[str, ...]
    boundary: str | None
    agent_id: str
    tool: str
    routed_to: str | None = None
    approval_timeout_seconds: float | None = None
    approval_sla_seconds: float | None = None
    reversal_window_seconds: float | None = None
    escalation_id: str | None = None  # set when the deny refers to an earlier escalation (halts)
    halted: bool = False  # deny because the task or agent is halted (tier 4 or envelope breach)
    fault: bool = False  # produced by the fail mode after an engine fault

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "effect": self.effect,
            "tier": self.tier,
            "policy_id": self.policy_id,
            "version": self.version,
            "rule_id": self.rule_id,
            "reasons": list(self.reasons),
            "boundary": self.boundary,
            "agent_id": self.agent_id,
            "tool": self.tool,
        }


def as_tuple(values: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(values) if values else ()
