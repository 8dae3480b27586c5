"""The policy enforcement point: decide, record, oversee, then run the tool or return a Denial.

``PolicyEnforcementPoint`` implements the ``Enforcer`` protocol of ``govtrace.instrumentation.
enforcement``. For one call ``run(call, request, execute)``:

1. decide (scope, delegation, halts, envelopes, rate limits, tier) and record the decision on
   ``call.span`` (``ToolCall.record_policy``);
2. oversight: tier 2 runs and emits a review event with its reversal window; tier 3 asks the approval
   handler and waits until the deadline; tier 4 never runs, escalates and halts the task;
3. run ``execute`` (its exceptions pass through untouched) or return a ``Denial``;
4. account the step's cost (reported on the span by the tool, else ``request.estimated_cost``)
   against the agent's envelopes; a breach is recorded on this span and halts later calls.

In ``log_only`` mode every decision is recorded with mode ``log_only`` and the call always runs
(no approval is asked). Faults inside the engine are counted in ``ENGINE_FAULTS`` and resolved by
the fail mode: ``closed`` (default) denies with reason "policy engine fault", ``open`` runs the call.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import baggage

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.enforcement import Denial, ToolRequest
from govtrace.instrumentation.policy.engine import evaluate, new_id
from govtrace.instrumentation.policy.faults import ENGINE_FAULTS
from govtrace.instrumentation.policy.limits import Breach, Usage, iso
from govtrace.instrumentation.policy.loader import load_policy
from govtrace.instrumentation.policy.model import (
    FAIL_CLOSED,
    FAIL_OPEN,
    MODES,
    TIER_APPROVAL,
    TIER_HALT,
    TIER_SUPERVISED,
    Decision,
    PolicySet,
)
from govtrace.instrumentation.policy.oversight import (
    ApprovalDecision,
    ApprovalRequest,
    OversightNotice,
)
from govtrace.instrumentation.telemetry import (
    BAGGAGE_DELEGATING_AGENT,
    ToolCall,
    arguments_digest,
    current_delegation,
)

T = TypeVar("T")
logger = logging.getLogger("govtrace.policy")

SYSTEM_APPROVER = "govtrace-pep"  # approver id recorded when no human decided (expired, auto-denied)
SYSTEM_ROLE = "system"
ENGINE_FAULT_REASON = "policy engine fault"


class PolicyUnavailable(RuntimeError):
    """The policy file given to the enforcement point could not be loaded."""


class _AfterDecision(Exception):
    """A fault after the decision was made (recording, oversight): the decision still binds."""

    def __init__(self, decision: Decision, error: Exception):
        super().__init__(str(error))
        self.decision = decision
        self.error = error


class _Go:
    """A call cleared to run, and what must happen after it ran."""

    __slots__ = ("decision", "request", "task_id", "usage", "executed_event", "escalation_id", "log_only")

    def __init__(self, decision: Decision, request: ToolRequest, task_id: str | None, usage: Usage | None,
                 *, executed_event: bool, escalation_id: str | None = None, log_only: bool = False):
        self.decision = decision
        self.request = request
        self.task_id = task_id
        self.usage = usage
        self.executed_event = executed_event
        self.escalation_id = escalation_id
        self.log_only = log_only


class PolicyEnforcementPoint:
    """Enforces a ``PolicySet`` for one agent instance (rate limits, envelopes and halts are per instance).

    ``agent_id`` None means "the agent named in each request" (state is then kept per agent id).
    ``clock`` returns epoch seconds and drives rate windows, envelope periods and approval deadlines.
    """

    def __init__(
        self,
        policy_set: PolicySet | str | Path,
        *,
        agent_id: str | None = None,
        approval_handler: Any = None,
        mode: str = "enforce",
        clock: Callable[[], float] = time.time,
        fail_mode: str | None = None,
        share_arguments_with_approver: bool = False,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if fail_mode not in (None, FAIL_CLOSED, FAIL_OPEN):
            raise ValueError(f"fail_mode must be 'closed' or 'open', got {fail_mode!r}")
        self.agent_id = agent_id
        self.approval_handler = approval_handler
        self.mode = mode
        self.clock = clock
        self.share_arguments_with_approver = share_arguments_with_approver
        self.load_error: Exception | None = None
        self.policy: PolicySet | None
        if isinstance(policy_set, PolicySet):
            self.policy = policy_set
        else:
            try:
                self.policy = load_policy(policy_set)
            except Exception as exc:  # a bad policy file must not stop the host agent
                self.policy = None
                self.load_error = exc
                ENGINE_FAULTS.record("policy_load", exc)
        self.fail_mode = fail_mode or (self.policy.fail_mode if self.policy else FAIL_CLOSED)
        self._usage: dict[str, Usage] = {}

    # --- public ------------------------------------------------------------------------------------
    def decide(self, request: ToolRequest, *, task_id: str | None = None) -> Decision:
        """The decision ``run`` would make now, including rate limits, envelopes and halts.

        Records nothing and consumes nothing. Raises ``PolicyUnavailable`` when the policy file could
        not be loaded.
        """
        policy = self._policy()
        agent_id = self.agent_id or request.agent_id
        request = self._with_context_delegation(request, agent_id)
        return evaluate(policy, request, agent_id=agent_id, usage=self._usage_for(policy, agent_id),
                        task_id=task_id or request.task_id, now=self.clock())

    def run(self, call: ToolCall, request: ToolRequest, execute: Callable[[], T]) -> T | Denial:
        try:
            go = self._before(call, request)
        except _AfterDecision as fault:
            ENGINE_FAULTS.record("decide", fault.error)
            go = self._resolve_fault(call, request, fault.error, fault.decision)
        except Exception as exc:
            ENGINE_FAULTS.record("policy_load" if isinstance(exc, PolicyUnavailable) else "decide", exc)
            go = self._resolve_fault(call, request, exc, None)
        if isinstance(go, Denial):
            return go
        try:
            result = execute()
        except BaseException as exc:
            self._after(call, go, exc)
            raise
        self._after(call, go, None)
        return result

    def status(self, task_id: str | None = None) -> dict[str, Any]:
        """Spend so far and the policy in force, for the agent(s) this point enforces."""
        now = self.clock()
        return {
            "policy_id": self.policy.policy_id if self.policy else None,
            "version": self.policy.version if self.policy else None,
            "mode": self.mode,
            "fail_mode": self.fail_mode,
            "load_error": str(self.load_error) if self.load_error else None,
            "spent": {agent: usage.spent(now, task_id) for agent, usage in self._usage.items()},
        }

    def resume_task(self, task_id: str, agent_id: str | None = None) -> bool:
        """Lift a tier-4 halt or a per-task envelope halt (an operator's decision, outside the agent)."""
        agents = [agent_id or self.agent_id] if (agent_id or self.agent_id) else list(self._usage)
        return any(self._usage[a].resume_task(task_id) for a in agents if a in self._usage)

    # --- before the tool runs ----------------------------------------------------------------------
    def _policy(self) -> PolicySet:
        if self.policy is None:
            raise PolicyUnavailable(f"policy file could not be loaded: {self.load_error}")
        return self.policy

    def _usage_for(self, policy: PolicySet, agent_id: str) -> Usage | None:
        usage = self._usage.get(agent_id)
        if usage is None:
            agent = policy.agents.get(agent_id)
            if agent is None:
                return None
            usage = self._usage.setdefault(agent_id, Usage(agent, policy.currency))
        return usage

    def _with_context_delegation(self, request: ToolRequest, agent_id: str) -> ToolRequest:
        """Fill the delegation from the OTel baggage when the request carries none.

        Only ever adds restrictions: a delegated call is bounded by the delegation and by what the
        delegating agent holds, on top of the agent's own scopes.
        """
        if request.delegating_agent is not None or baggage.get_baggage(BAGGAGE_DELEGATING_AGENT) is None:
            return request
        ctx = current_delegation()
        delegator = ctx["delegating_agent"]
        if not delegator or ctx["current_agent"] not in (None, agent_id):
            return request
        return dataclasses.replace(
            request,
            delegating_agent=delegator,
            delegation_depth=request.delegation_depth or ctx["depth"] or 1,
            acting_for=request.acting_for or ctx["acting_for"],
            delegated_scopes=tuple(request.delegated_scopes) or tuple(ctx["scopes"]),
        )

    def _before(self, call: ToolCall, request: ToolRequest) -> _Go | Denial:
        policy = self._policy()
        agent_id = self.agent_id or request.agent_id
        request = self._with_context_delegation(request, agent_id)
        now = self.clock()
        usage = self._usage_for(policy, agent_id)
        task_id = request.task_id or (_trace_id(call) if usage is not None and usage.needs_task_id() else None)
        decision = evaluate(policy, request, agent_id=agent_id, usage=usage, task_id=task_id, now=now, admit=True)
        try:
            return self._enforce(call, decision, request, task_id, usage, now)
        except Exception as exc:
            raise _AfterDecision(decision, exc) from exc

    def _enforce(self, call: ToolCall, decision: Decision, request: ToolRequest, task_id: str | None,
                 usage: Usage | None, now: float) -> _Go | Denial:
        self._record(call, decision)
        tool = request.tool

        if self.mode == "log_only":
            return _Go(decision, request, task_id, usage, executed_event=decision.tier > 1 or not decision.allowed,
                       log_only=True)
        if decision.effect == "deny":
            denial = Denial(tool, "deny", decision.reason, decision.decision_id, decision.escalation_id,
                            "halted" if decision.halted else "denied")
            _blocked(call, decision, denial)
            return denial
        if decision.tier >= TIER_HALT:
            return self._halt(call, decision, request, task_id, usage, now)
        escalation_id = None
        if decision.tier == TIER_APPROVAL:
            answer = self._ask(call, decision, request, now)
            if isinstance(answer, Denial):
                return answer
            escalation_id = answer
        return _Go(decision, request, task_id, usage, executed_event=decision.tier > 1, escalation_id=escalation_id)

    def _record(self, call: ToolCall, decision: Decision) -> None:
        call.record_policy(
            effect=decision.effect,
            policy_id=decision.policy_id,
            rule_id=decision.rule_id,
            version=decision.version,
            tier=decision.tier,
            reasons=decision.reasons,
            mode=self.mode,
            decision_id=decision.decision_id,
            boundary=decision.boundary,
        )

    def _halt(self, call: ToolCall, decision: Decision, request: ToolRequest, task_id: str | None,
              usage: Usage | None, now: float) -> Denial:
        escalation_id = new_id()
        call.record_escalation(escalation_id=escalation_id, tier=decision.tier, routed_to=decision.routed_to)
        task_id = task_id or _trace_id(call)
        if usage is not None and task_id is not None:
            usage.halt_task(task_id, escalation_id)
        self._notify(OversightNotice(
            kind="halt", escalation_id=escalation_id, agent_id=decision.agent_id, tool=decision.tool,
            decision_id=decision.decision_id, policy_id=decision.policy_id, policy_version=decision.version,
            tier=decision.tier, reasons=decision.reasons, routed_to=decision.routed_to, created_at=now,
            arguments_digest=_digest(call, request), details={"task_id": task_id},
        ))
        routed = f" to {decision.routed_to}" if decision.routed_to else ""
        denial = Denial(decision.tool, "escalate",
                        f"tier 4 (halt and escalate): {decision.reason}; escalated{routed}, task halted",
                        decision.decision_id, escalation_id, "halted")
        _blocked(call, decision, denial)
        return denial

    def _ask(self, call: ToolCall, decision: Decision, request: ToolRequest, now: float) -> str | Denial:
        """Tier 3: ask for approval; the escalation id when approved, else the Denial."""
        escalation_id = new_id()
        timeout = decision.approval_timeout_seconds or 0.0
        deadline = now + timeout
        digest = _digest(call, request)
        call.record_escalation(escalation_id=escalation_id, tier=decision.tier, routed_to=decision.routed_to,
                               deadline=iso(deadline), sla_seconds=decision.approval_sla_seconds)
        if call.arguments_digest is None and digest is not None:
            call.span.set_attribute(A.OVERSIGHT_ARGUMENTS_DIGEST, digest)
        ask = ApprovalRequest(
            escalation_id=escalation_id, decision_id=decision.decision_id, agent_id=decision.agent_id,
            tool=decision.tool, arguments_digest=digest, policy_id=decision.policy_id,
            policy_version=decision.version, tier=decision.tier, reasons=decision.reasons,
            routed_to=decision.routed_to, requested_at=now, deadline=deadline,
            sla_seconds=decision.approval_sla_seconds, acting_for=request.acting_for,
            delegating_agent=request.delegating_agent, delegation_depth=request.delegation_depth,
            resource=request.resource, operation=request.operation, amount=request.amount,
            currency=request.currency,
            arguments=dict(request.arguments) if self.share_arguments_with_approver else None,
        )
        answer: Any = None
        handler = self.approval_handler
        if handler is None:
            outcome, reason, who = "auto_denied", "no approval handler configured", None
        else:
            try:
                answer = handler.request_approval(ask)
            except Exception as exc:
                ENGINE_FAULTS.record("approval_handler", exc)
                answer = exc
            outcome, reason, who = self._judge(ask, answer)
        decided = self.clock()
        if who is not None:
            approver_id, role = who.approver_id, who.approver_role
            decided_at = who.decided_at if who.decided_at is not None else decided
        else:
            approver_id, role, decided_at = SYSTEM_APPROVER, SYSTEM_ROLE, decided
        call.record_approval(outcome=outcome, approver_id=approver_id, approver_role=role, decided_at=iso(decided_at))
        if reason:
            call.span.set_attribute(A.OVERSIGHT_REASON, reason)
        if outcome == "approved":
            return escalation_id
        text = {
            "denied": f"approval denied by {approver_id}",
            "expired": "no approval by the deadline: auto-denied",
            "auto_denied": "approval rejected: auto-denied",
        }[outcome]
        denial = Denial(decision.tool, "escalate", f"{text} ({reason})" if reason else text,
                        decision.decision_id, escalation_id, outcome)
        _blocked(call, decision, denial)
        return denial

    def _judge(self, ask: ApprovalRequest, answer: Any) -> tuple[str, str | None, ApprovalDecision | None]:
        """``(outcome, reason, the human answer when it counts)`` for a handler's answer."""
        now = self.clock()
        if isinstance(answer, Exception):
            return "auto_denied", f"approval handler fault: {type(answer).__name__}: {answer}", None
        if answer is None:
            return "expired", f"no answer by the deadline {iso(ask.deadline)}", None
        if not isinstance(answer, ApprovalDecision):
            ENGINE_FAULTS.record("approval_handler", TypeError(f"handler returned {type(answer).__name__}"))
            return "auto_denied", f"approval handler returned {type(answer).__name__}, not an ApprovalDecision", None
        by = f" (answer by {answer.approver_id or 'nobody'})"
        if answer.escalation_id != ask.escalation_id:
            return "auto_denied", f"answer is for escalation {answer.escalation_id!r}, not {ask.escalation_id!r}{by}", None
        if answer.arguments_digest != ask.arguments_digest:
            return ("auto_denied", f"arguments digest mismatch: answer approves {answer.arguments_digest}, "
                    f"the call is {ask.arguments_digest}{by}", None)
        if answer.policy_version != ask.policy_version:
            return ("auto_denied", f"policy version mismatch: answer is for {answer.policy_version!r}, "
                    f"the policy in force is {ask.policy_version!r}{by}", None)
        decided_at = answer.decided_at if answer.decided_at is not None else now
        if decided_at > ask.deadline or now > ask.deadline:
            return "expired", f"answer arrived after the deadline {iso(ask.deadline)}{by}", None
        if not answer.approver_id:
            return "auto_denied", "answer names no approver", None
        if answer.approved:
            return "approved", answer.comment, answer
        return "denied", answer.comment, answer

    def _resolve_fault(self, call: ToolCall, request: ToolRequest, exc: Exception,
                       decided: Decision | None) -> _Go | Denial:
        """Fail mode after a fault before the tool ran: closed denies, open (or log_only) runs.

        Fail-open never overrides a decision already made: a call decided deny, tier 3 or tier 4
        before the fault stays denied (a tier-3 call never runs without a valid approval).
        """
        run_anyway = self.mode == "log_only" or (
            self.fail_mode == FAIL_OPEN and (decided is None or (decided.allowed and decided.tier < TIER_APPROVAL)))
        policy = self.policy
        decision = Decision(
            decision_id=new_id(), effect="allow" if run_anyway else "deny", tier=1,
            policy_id=policy.policy_id if policy else "unavailable", version=policy.version if policy else "unknown",
            rule_id="engine-fault",
            reasons=(f"{ENGINE_FAULT_REASON}: {type(exc).__name__}: {exc}",
                     f"fail-{'open' if run_anyway else 'closed'}"),
            boundary=None, agent_id=self.agent_id or request.agent_id, tool=request.tool, fault=True,
        )
        try:
            self._record(call, decision)
        except Exception as again:
            ENGINE_FAULTS.record("decide", again)
        if run_anyway:
            return _Go(decision, request, None, None, executed_event=True, log_only=self.mode == "log_only")
        denial = Denial(request.tool, "deny", f"{ENGINE_FAULT_REASON} (fail-closed): {type(exc).__name__}",
                        decision.decision_id, None, "denied")
        try:
            _blocked(call, decision, denial)
        except Exception as again:
            ENGINE_FAULTS.record("decide", again)
        return denial

    # --- after the tool ran ------------------------------------------------------------------------
    def _after(self, call: ToolCall, go: _Go, error: BaseException | None) -> None:
        """Bookkeeping after the tool ran; each step is guarded so one fault never skips the others."""
        decision = go.decision
        if go.executed_event:
            try:
                facts: dict[str, Any] = {A.POLICY_DECISION_ID: decision.decision_id, A.POLICY_MODE: self.mode}
                if go.escalation_id:
                    facts[A.OVERSIGHT_ESCALATION_ID] = go.escalation_id
                if error is not None:
                    facts[A.ERROR_TYPE] = type(error).__qualname__
                call.span.add_event(A.EVENT_ACTION_EXECUTED, facts)
            except Exception as exc:
                ENGINE_FAULTS.record("after", exc)
        if decision.tier == TIER_SUPERVISED and decision.allowed and not go.log_only:
            try:
                self._review(call, go)
            except Exception as exc:
                ENGINE_FAULTS.record("after", exc)
        if go.usage is not None:
            try:
                self._account(call, go)
            except Exception as exc:
                ENGINE_FAULTS.record("after", exc)

    def _review(self, call: ToolCall, go: _Go) -> None:
        decision = go.decision
        now = self.clock()
        window = decision.reversal_window_seconds or 0.0
        review_id = new_id()
        facts: dict[str, Any] = {
            A.OVERSIGHT_ESCALATION_ID: review_id,
            A.OVERSIGHT_TIER: decision.tier,
            A.OVERSIGHT_REVERSAL_WINDOW_SECONDS: float(window),
            A.OVERSIGHT_DEADLINE: iso(now + window),
            A.POLICY_DECISION_ID: decision.decision_id,
        }
        if decision.routed_to:
            facts[A.OVERSIGHT_ROUTED_TO] = decision.routed_to
        digest = _digest(call, go.request)
        if digest:
            facts[A.OVERSIGHT_ARGUMENTS_DIGEST] = digest
        call.span.set_attributes(facts)
        call.span.add_event(A.EVENT_OVERSIGHT_REVIEW, facts)
        self._notify(OversightNotice(
            kind="review", escalation_id=review_id, agent_id=decision.agent_id, tool=decision.tool,
            decision_id=decision.decision_id, policy_id=decision.policy_id, policy_version=decision.version,
            tier=decision.tier, reasons=decision.reasons, routed_to=decision.routed_to, created_at=now,
            arguments_digest=digest, reversible_until=now + window,
        ))

    def _account(self, call: ToolCall, go: _Go) -> None:
        request, usage = go.request, go.usage
        assert usage is not None
        if request.estimated_cost is None and not usage.has_envelope:
            return
        amount = None
        attributes = getattr(call.span, "attributes", None)
        if attributes is not None:
            amount = attributes.get(A.COST_AMOUNT)
        if amount is None and request.estimated_cost is not None:
            amount = float(request.estimated_cost)
            call.record_cost(amount, request.currency, source="estimated")
        if not amount or amount <= 0:
            return
        now = self.clock()
        for breach in usage.account(float(amount), go.task_id, now, new_id):
            self._breached(call, go, breach, now)

    def _breached(self, call: ToolCall, go: _Go, breach: Breach, now: float) -> None:
        decision = go.decision
        policy = self.policy
        currency = policy.currency if policy else "USD"
        reason = breach.reason(currency)
        facts: dict[str, Any] = {
            A.POLICY_BOUNDARY: "envelope",
            A.POLICY_DECISION_ID: decision.decision_id,
            A.POLICY_ID: decision.policy_id,
            A.POLICY_VERSION: decision.version,
            A.POLICY_MODE: self.mode,
            A.POLICY_REASONS: [reason],
            A.COST_ENVELOPE_PERIOD: breach.period,
            A.COST_ENVELOPE_LIMIT: breach.limit,
            A.COST_ENVELOPE_SPENT: breach.spent,
            A.COST_CURRENCY: currency,
            A.OVERSIGHT_ESCALATION_ID: breach.escalation_id,
        }
        routed = go.usage.agent.oversight.halt_routed_to if go.usage else None
        if routed:
            facts[A.OVERSIGHT_ROUTED_TO] = routed
        call.span.set_attributes({A.COST_ENVELOPE_PERIOD: breach.period, A.COST_ENVELOPE_LIMIT: breach.limit,
                                  A.COST_ENVELOPE_SPENT: breach.spent})
        call.span.add_event(A.EVENT_ENVELOPE_BREACH, facts)
        logger.warning("govtrace: agent %s %s (escalation %s, mode %s)", decision.agent_id, reason,
                       breach.escalation_id, self.mode)
        self._notify(OversightNotice(
            kind="envelope_breach", escalation_id=breach.escalation_id, agent_id=decision.agent_id,
            tool=decision.tool, decision_id=decision.decision_id, policy_id=decision.policy_id,
            policy_version=decision.version, tier=None, reasons=(reason,), routed_to=routed, created_at=now,
            details={"period": breach.period, "limit": breach.limit, "spent": breach.spent, "key": breach.key,
                     "until": breach.until, "currency": currency},
        ))

    def _notify(self, notice: OversightNotice) -> None:
        notify = getattr(self.approval_handler, "notify", None)
        if notify is None:
            return
        try:
            notify(notice)
        except Exception as exc:
            ENGINE_FAULTS.record("notify", exc)


def _blocked(call: ToolCall, decision: Decision, denial: Denial) -> None:
    facts: dict[str, Any] = {
        A.POLICY_DECISION_ID: decision.decision_id,
        A.POLICY_EFFECT: denial.effect,
        A.POLICY_REASONS: [denial.reason],
    }
    if decision.boundary:
        facts[A.POLICY_BOUNDARY] = decision.boundary
    if denial.escalation_id:
        facts[A.OVERSIGHT_ESCALATION_ID] = denial.escalation_id
    if denial.outcome in A.OVERSIGHT_OUTCOMES:
        facts[A.OVERSIGHT_OUTCOME] = denial.outcome
    call.span.add_event(A.EVENT_ACTION_BLOCKED, facts)


def _digest(call: ToolCall, request: ToolRequest) -> str | None:
    if call.arguments_digest is not None:
        return call.arguments_digest
    args = request.arguments
    if args is None:
        return None
    return arguments_digest(dict(args) if isinstance(args, Mapping) else args)


def _trace_id(call: ToolCall) -> str | None:
    ctx = call.span.get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.trace_id else None
