"""The contract between instrumented tool calls and the policy enforcement point.

Framework instrumentors (MCP, OpenAI Agents SDK, LangChain) and the ``@governed_tool`` decorator
describe each call as a ``ToolRequest`` and hand it, with the call's span and a thunk that runs the
tool, to an ``Enforcer``. The enforcer decides before the tool runs, records the decision on the
span, waits for approval when needed, and either runs the thunk or returns a ``Denial``.

``Unenforced`` is the default when no policy is configured: it runs the tool and says so on the
span, so that readiness answers can report "no policy check recorded" rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from govtrace.instrumentation.telemetry import ToolCall

T = TypeVar("T")


@dataclass(frozen=True)
class ToolRequest:
    """Everything a policy may look at, known before the tool runs."""

    agent_id: str
    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    resource: str | None = None
    operation: str | None = None  # read | write | delete | send | execute
    classification: str | None = None  # public | internal | confidential | restricted | pii
    record_count: int | None = None
    amount: float | None = None  # money the action moves
    currency: str = "USD"
    reversible: bool | None = None
    regulatory_scope: Sequence[str] = ()
    estimated_cost: float | None = None  # what running the step is expected to cost
    task_id: str | None = None  # the trace / task this call belongs to, for per-task envelopes
    acting_for: str | None = None
    delegating_agent: str | None = None
    delegation_depth: int = 0
    delegated_scopes: Sequence[str] = ()


@dataclass(frozen=True)
class Denial:
    """What the agent receives instead of a tool result when a call may not run."""

    tool: str
    effect: str  # deny | escalate
    reason: str
    decision_id: str
    escalation_id: str | None = None
    outcome: str | None = None  # denied | expired | auto_denied | halted

    def __str__(self) -> str:
        ref = f" (escalation {self.escalation_id})" if self.escalation_id else ""
        return f"govtrace denied '{self.tool}': {self.reason}{ref} [decision {self.decision_id}]"

    def as_tool_result(self) -> dict[str, Any]:
        return {
            "error": "denied_by_policy",
            "tool": self.tool,
            "effect": self.effect,
            "reason": self.reason,
            "decision_id": self.decision_id,
            "escalation_id": self.escalation_id,
            "outcome": self.outcome,
        }


class Enforcer(Protocol):
    def run(self, call: ToolCall, request: ToolRequest, execute: Callable[[], T]) -> T | Denial:
        """Decide, record on ``call.span``, then run ``execute`` or return a Denial.

        Must never raise because of its own faults; the host's exceptions from ``execute`` pass
        through untouched.
        """


class Unenforced:
    """No policy configured: the call runs, and the span says no check was made."""

    def run(self, call: ToolCall, request: ToolRequest, execute: Callable[[], T]) -> T | Denial:
        return execute()
