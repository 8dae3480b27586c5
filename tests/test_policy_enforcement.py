"""The enforcement point on real OTel spans: decisions, tiers, oversight, limits, envelopes, faults."""

from __future__ import annotations

import logging
import textwrap

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.enforcement import Denial, ToolRequest
from govtrace.instrumentation.policy import (
    ENGINE_FAULTS,
    ApprovalDecision,
    CallbackApprovalHandler,
    PolicyEnforcementPoint,
    load_policy_text,
)
from govtrace.instrumentation.telemetry import AgentTelemetry, arguments_digest

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, the start of a UTC hour
T0_ISO = "2027-01-15T08:00:00Z"

POLICY = load_policy_text(textwrap.dedent(
    """\
    id: pep-test
    oversight:
      review: {routed_to: role:reviewer, reversal_window_seconds: 600}
      approval: {routed_to: role:approver, timeout_seconds: 60, sla_seconds: 30}
      halt: {routed_to: role:oncall}
    rules:
      - {id: amount-2, tier: 2, when: {amount: {gt: 100}}}
      - {id: amount-3, tier: 3, when: {amount: {gt: 1000}}}
      - {id: amount-4, tier: 4, when: {amount: {gt: 100000}}}
      - {id: mass-records, tier: 3, when: {record_count: {gte: 10000}}}
    agents:
      buyer:
        scopes: {tools: [order.*, catalog.search], resources: ["erp://*"], operations: [read, write]}
        may_delegate_to: [helper]
      helper:
        scopes: {tools: [order.*, catalog.search, mail.send], resources: ["erp://*"], operations: [read, write]}
      limited:
        scopes: {tools: [catalog.search, order.create]}
        rate_limits:
          - {id: three-a-minute, calls: 3, per_seconds: 60}
          - {id: one-order-a-minute, calls: 1, per_seconds: 60, tools: [order.create]}
      metered:
        scopes: {tools: [llm.call, catalog.search]}
        envelope: {per_task: 1.0, per_hour: 2.5, per_day: 10}
    """), source="pep-test.yaml")


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(autouse=True)
def _reset_faults():
    ENGINE_FAULTS.reset()
    yield
    ENGINE_FAULTS.reset()


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


@pytest.fixture
def clock():
    return Clock()


def make_telemetry(exporter, agent_id: str) -> AgentTelemetry:
    return AgentTelemetry(agent_id, processor=SimpleSpanProcessor(exporter))


class Harness:
    """One agent's telemetry and enforcement point, and a tool that records whether it ran."""

    def __init__(self, exporter, clock, agent_id="buyer", policy=POLICY, **pep_kw):
        self.exporter = exporter
        self.telemetry = make_telemetry(exporter, agent_id)
        self.pep = PolicyEnforcementPoint(policy, agent_id=agent_id, clock=clock, **pep_kw)
        self.ran: list[str] = []
        self.agent_id = agent_id

    def call(self, tool="order.create", *, arguments=None, execute=None, **facts):
        arguments = {"sku": "A-1", "qty": 1} if arguments is None else arguments
        facts.setdefault("resource", "erp://orders/1" if self.agent_id in ("buyer", "helper") else None)
        request = ToolRequest(agent_id=self.agent_id, tool=tool, arguments=arguments, **facts)

        def default_tool():
            self.ran.append(tool)
            return {"ok": tool}

        with self.telemetry.tool_call(tool, arguments=arguments) as call:
            result = self.pep.run(call, request, execute or default_tool)
        return result, self.exporter.get_finished_spans()[-1]


def policy_attrs(span) -> dict:
    return {k: v for k, v in span.attributes.items() if k.startswith("govtrace.policy.")}


def oversight_attrs(span) -> dict:
    return {k: v for k, v in span.attributes.items() if k.startswith("govtrace.oversight.")}


def events(span) -> list[str]:
    return [e.name for e in span.events]


def event(span, name):
    found = [e for e in span.events if e.name == name]
    assert len(found) == 1, events(span)
    return dict(found[0].attributes)


# --- tier 1 and the decision record ------------------------------------------------------------------
def test_a_tier_one_call_runs_and_the_span_carries_the_exact_decision(exporter, clock):
    h = Harness(exporter, clock)
    result, span = h.call()
    assert result == {"ok": "order.create"} and h.ran == ["order.create"]
    decision_id = span.attributes[A.POLICY_DECISION_ID]
    assert policy_attrs(span) == {
        A.POLICY_DECISION_ID: decision_id,
        A.POLICY_EFFECT: "allow",
        A.POLICY_ID: "pep-test",
        A.POLICY_RULE_ID: "default",
        A.POLICY_VERSION: POLICY.version,
        A.POLICY_TIER: 1,
        A.POLICY_MODE: "enforce",
    }
    assert len(decision_id) == 32
    assert events(span) == [A.EVENT_POLICY_DECISION]
    assert event(span, A.EVENT_POLICY_DECISION) == policy_attrs(span)
    assert oversight_attrs(span) == {}


def test_the_policy_version_on_the_span_is_the_short_content_hash():
    assert len(POLICY.version) == 12 and POLICY.digest.startswith(POLICY.version)


# --- scope -------------------------------------------------------------------------------------------
def test_a_call_outside_the_agents_scope_does_not_run_and_returns_a_denial(exporter, clock):
    h = Harness(exporter, clock)
    result, span = h.call("payment.execute")
    assert h.ran == []
    assert isinstance(result, Denial)
    decision_id = span.attributes[A.POLICY_DECISION_ID]
    reason = "tool 'payment.execute' is outside the scopes of agent 'buyer'"
    assert result == Denial("payment.execute", "deny", reason, decision_id, None, "denied")
    assert policy_attrs(span) == {
        A.POLICY_DECISION_ID: decision_id,
        A.POLICY_EFFECT: "deny",
        A.POLICY_ID: "pep-test",
        A.POLICY_RULE_ID: "agents.buyer.scopes.tools",
        A.POLICY_VERSION: POLICY.version,
        A.POLICY_TIER: 1,
        A.POLICY_REASONS: (reason,),
        A.POLICY_MODE: "enforce",
        A.POLICY_BOUNDARY: "scope",
    }
    assert events(span) == [A.EVENT_POLICY_DECISION, A.EVENT_ACTION_BLOCKED]
    assert event(span, A.EVENT_ACTION_BLOCKED) == {
        A.POLICY_DECISION_ID: decision_id,
        A.POLICY_EFFECT: "deny",
        A.POLICY_REASONS: (reason,),
        A.POLICY_BOUNDARY: "scope",
        A.OVERSIGHT_OUTCOME: "denied",
    }
    assert result.as_tool_result()["error"] == "denied_by_policy"


def test_a_resource_outside_scope_is_denied(exporter, clock):
    h = Harness(exporter, clock)
    result, span = h.call(resource="hr://salaries/42")
    assert isinstance(result, Denial) and h.ran == []
    assert span.attributes[A.POLICY_RULE_ID] == "agents.buyer.scopes.resources"


# --- tier 2 ------------------------------------------------------------------------------------------
def test_tier_two_runs_and_emits_a_review_event_with_its_reversal_window(exporter, clock):
    notices = []
    handler = CallbackApprovalHandler(lambda r: None, notify=notices.append)
    h = Harness(exporter, clock, approval_handler=handler)
    result, span = h.call(amount=150.0)
    assert result == {"ok": "order.create"}
    assert handler.requests == []
    decision_id = span.attributes[A.POLICY_DECISION_ID]
    assert (span.attributes[A.POLICY_EFFECT], span.attributes[A.POLICY_TIER]) == ("allow", 2)
    assert span.attributes[A.POLICY_RULE_ID] == "amount-2"
    assert span.attributes[A.POLICY_REASONS] == ("amount-2: tier 2 because amount 150 > 100",)
    review_id = span.attributes[A.OVERSIGHT_ESCALATION_ID]
    expected = {
        A.OVERSIGHT_ESCALATION_ID: review_id,
        A.OVERSIGHT_TIER: 2,
        A.OVERSIGHT_REVERSAL_WINDOW_SECONDS: 600.0,
        A.OVERSIGHT_DEADLINE: "2027-01-15T08:10:00Z",
        A.OVERSIGHT_ROUTED_TO: "role:reviewer",
        A.OVERSIGHT_ARGUMENTS_DIGEST: arguments_digest({"sku": "A-1", "qty": 1}),
    }
    assert oversight_attrs(span) == expected
    assert events(span) == [A.EVENT_POLICY_DECISION, A.EVENT_ACTION_EXECUTED, A.EVENT_OVERSIGHT_REVIEW]
    assert event(span, A.EVENT_OVERSIGHT_REVIEW) == {**expected, A.POLICY_DECISION_ID: decision_id}
    assert event(span, A.EVENT_ACTION_EXECUTED) == {A.POLICY_DECISION_ID: decision_id, A.POLICY_MODE: "enforce"}
    assert [(n.kind, n.escalation_id, n.reversible_until, n.routed_to) for n in notices] == [
        ("review", review_id, T0 + 600, "role:reviewer")]


# --- tier 3 ------------------------------------------------------------------------------------------
def approve_as(approver, role):
    return CallbackApprovalHandler(lambda request: request.approve(approver, role, comment="looks right"))


def test_tier_three_waits_for_an_approver_and_runs_when_approved(exporter, clock):
    handler = approve_as("alice@example.com", "team-lead")
    h = Harness(exporter, clock, approval_handler=handler)
    args = {"sku": "B-7", "qty": 40}
    result, span = h.call(arguments=args, amount=5000.0)
    assert result == {"ok": "order.create"}
    [request] = handler.requests
    escalation_id = span.attributes[A.OVERSIGHT_ESCALATION_ID]
    decision_id = span.attributes[A.POLICY_DECISION_ID]
    assert (request.escalation_id, request.decision_id) == (escalation_id, decision_id)
    assert (request.arguments_digest, request.policy_id, request.policy_version) == (
        arguments_digest(args), "pep-test", POLICY.version)
    assert (request.requested_at, request.deadline, request.tier, request.routed_to) == (
        T0, T0 + 60, 3, "role:approver")
    assert request.arguments is None  # arguments are shared with approvers only when asked
    assert (span.attributes[A.POLICY_EFFECT], span.attributes[A.POLICY_BOUNDARY]) == ("escalate", "tier")
    assert oversight_attrs(span) == {
        A.OVERSIGHT_ESCALATION_ID: escalation_id,
        A.OVERSIGHT_TIER: 3,
        A.OVERSIGHT_ROUTED_TO: "role:approver",
        A.OVERSIGHT_DEADLINE: "2027-01-15T08:01:00Z",
        A.OVERSIGHT_SLA_SECONDS: 30.0,
        A.OVERSIGHT_OUTCOME: "approved",
        A.OVERSIGHT_ARGUMENTS_DIGEST: arguments_digest(args),
        A.OVERSIGHT_APPROVER_ID: "alice@example.com",
        A.OVERSIGHT_APPROVER_ROLE: "team-lead",
        A.OVERSIGHT_DECIDED_AT: T0_ISO,
        A.OVERSIGHT_REASON: "looks right",
    }
    assert events(span) == [A.EVENT_POLICY_DECISION, A.EVENT_OVERSIGHT_REQUESTED, A.EVENT_OVERSIGHT_DECIDED,
                            A.EVENT_ACTION_EXECUTED]
    assert event(span, A.EVENT_OVERSIGHT_REQUESTED)[A.OVERSIGHT_OUTCOME] == "pending"
    assert event(span, A.EVENT_OVERSIGHT_DECIDED) == {
        A.OVERSIGHT_OUTCOME: "approved",
        A.OVERSIGHT_APPROVER_ID: "alice@example.com",
        A.OVERSIGHT_APPROVER_ROLE: "team-lead",
        A.OVERSIGHT_DECIDED_AT: T0_ISO,
    }
    assert event(span, A.EVENT_ACTION_EXECUTED) == {
        A.POLICY_DECISION_ID: decision_id, A.POLICY_MODE: "enforce", A.OVERSIGHT_ESCALATION_ID: escalation_id}


def test_tier_three_denied_by_the_approver_does_not_run(exporter, clock):
    handler = CallbackApprovalHandler(lambda r: r.deny("bob", "controller", comment="vendor not vetted"))
    h = Harness(exporter, clock, approval_handler=handler)
    result, span = h.call(amount=5000.0)
    assert h.ran == []
    escalation_id = span.attributes[A.OVERSIGHT_ESCALATION_ID]
    assert result == Denial("order.create", "escalate", "approval denied by bob (vendor not vetted)",
                            span.attributes[A.POLICY_DECISION_ID], escalation_id, "denied")
    assert (span.attributes[A.OVERSIGHT_OUTCOME], span.attributes[A.OVERSIGHT_APPROVER_ID],
            span.attributes[A.OVERSIGHT_APPROVER_ROLE]) == ("denied", "bob", "controller")
    assert events(span) == [A.EVENT_POLICY_DECISION, A.EVENT_OVERSIGHT_REQUESTED, A.EVENT_OVERSIGHT_DECIDED,
                            A.EVENT_ACTION_BLOCKED]
    blocked = event(span, A.EVENT_ACTION_BLOCKED)
    assert (blocked[A.OVERSIGHT_ESCALATION_ID], blocked[A.OVERSIGHT_OUTCOME], blocked[A.POLICY_EFFECT]) == (
        escalation_id, "denied", "escalate")


def test_tier_three_with_no_answer_by_the_deadline_expires_and_does_not_run(exporter, clock):
    def nobody_answers(request):
        clock.advance(61)  # the approver never came; the handler gives up at the deadline
        return None

    h = Harness(exporter, clock, approval_handler=CallbackApprovalHandler(nobody_answers))
    result, span = h.call(amount=5000.0)
    assert h.ran == []
    assert (result.effect, result.outcome) == ("escalate", "expired")
    assert result.reason == "no approval by the deadline: auto-denied (no answer by the deadline 2027-01-15T08:01:00Z)"
    assert (span.attributes[A.OVERSIGHT_OUTCOME], span.attributes[A.OVERSIGHT_APPROVER_ID],
            span.attributes[A.OVERSIGHT_APPROVER_ROLE], span.attributes[A.OVERSIGHT_DECIDED_AT]) == (
        "expired", "govtrace-pep", "system", "2027-01-15T08:01:01Z")


def test_an_approval_that_arrives_after_the_deadline_counts_as_expired(exporter, clock):
    def late(request):
        clock.advance(120)
        return request.approve("alice", "team-lead")

    h = Harness(exporter, clock, approval_handler=CallbackApprovalHandler(late))
    result, span = h.call(amount=5000.0)
    assert h.ran == [] and result.outcome == "expired"
    assert span.attributes[A.OVERSIGHT_REASON].startswith("answer arrived after the deadline 2027-01-15T08:01:00Z")


def test_an_approval_for_other_arguments_is_rejected_by_digest(exporter, clock):
    def approve_something_else(request):
        return ApprovalDecision(request.escalation_id, True, "alice", "team-lead",
                                arguments_digest({"sku": "A-1", "qty": 1000}), request.policy_version)

    h = Harness(exporter, clock, approval_handler=CallbackApprovalHandler(approve_something_else))
    result, span = h.call(amount=5000.0)
    assert h.ran == []
    assert (result.effect, result.outcome) == ("escalate", "auto_denied")
    assert "arguments digest mismatch" in result.reason
    assert span.attributes[A.OVERSIGHT_OUTCOME] == "auto_denied"
    assert span.attributes[A.OVERSIGHT_APPROVER_ID] == "govtrace-pep"
    assert span.attributes[A.OVERSIGHT_REASON].startswith("arguments digest mismatch: answer approves ")
    assert span.attributes[A.OVERSIGHT_REASON].endswith("(answer by alice)")


def test_an_approval_under_another_policy_version_is_rejected(exporter, clock):
    def stale(request):
        return ApprovalDecision(request.escalation_id, True, "alice", "team-lead", request.arguments_digest,
                                "0123456789ab")

    h = Harness(exporter, clock, approval_handler=CallbackApprovalHandler(stale))
    result, span = h.call(amount=5000.0)
    assert h.ran == [] and result.outcome == "auto_denied"
    assert span.attributes[A.OVERSIGHT_REASON] == (
        f"policy version mismatch: answer is for '0123456789ab', the policy in force is {POLICY.version!r} "
        "(answer by alice)")


def test_an_approval_for_another_escalation_or_without_an_approver_is_rejected(exporter, clock):
    h = Harness(exporter, clock, approval_handler=CallbackApprovalHandler(
        lambda r: ApprovalDecision("other", True, "alice", None, r.arguments_digest, r.policy_version)))
    result, _ = h.call(amount=5000.0)
    assert result.outcome == "auto_denied" and "answer is for escalation 'other'" in result.reason
    h2 = Harness(exporter, clock, approval_handler=CallbackApprovalHandler(lambda r: r.approve("")))
    result2, span2 = h2.call(amount=5000.0)
    assert result2.outcome == "auto_denied" and span2.attributes[A.OVERSIGHT_REASON] == "answer names no approver"
    assert h.ran == [] and h2.ran == []


def test_tier_three_without_an_approval_handler_is_auto_denied(exporter, clock):
    h = Harness(exporter, clock)
    result, span = h.call(amount=5000.0)
    assert h.ran == [] and result.outcome == "auto_denied"
    assert span.attributes[A.OVERSIGHT_REASON] == "no approval handler configured"


def test_the_approver_may_see_the_arguments_when_the_enforcement_point_shares_them(exporter, clock):
    handler = approve_as("alice", "lead")
    h = Harness(exporter, clock, approval_handler=handler, share_arguments_with_approver=True)
    h.call(arguments={"sku": "Z"}, amount=5000.0)
    assert handler.requests[0].arguments == {"sku": "Z"}


# --- tier 4 ------------------------------------------------------------------------------------------
def test_tier_four_never_runs_escalates_and_halts_the_task(exporter, clock):
    handler = approve_as("alice", "lead")
    h = Harness(exporter, clock, approval_handler=handler)
    result, span = h.call(amount=250_000.0, task_id="task-1")
    assert h.ran == [] and handler.requests == []  # nobody is asked to approve a tier-4 action
    escalation_id = span.attributes[A.OVERSIGHT_ESCALATION_ID]
    assert result == Denial(
        "order.create", "escalate",
        "tier 4 (halt and escalate): amount-4: tier 4 because amount 250000 > 100000; "
        "amount-3: tier 3 because amount 250000 > 1000; amount-2: tier 2 because amount 250000 > 100; "
        "escalated to role:oncall, task halted",
        span.attributes[A.POLICY_DECISION_ID], escalation_id, "halted")
    assert oversight_attrs(span) == {
        A.OVERSIGHT_ESCALATION_ID: escalation_id,
        A.OVERSIGHT_TIER: 4,
        A.OVERSIGHT_ROUTED_TO: "role:oncall",
        A.OVERSIGHT_OUTCOME: "pending",
        A.OVERSIGHT_ARGUMENTS_DIGEST: arguments_digest({"sku": "A-1", "qty": 1}),
    }
    assert [(n.kind, n.escalation_id, n.routed_to) for n in handler.notices] == [("halt", escalation_id, "role:oncall")]
    assert events(span) == [A.EVENT_POLICY_DECISION, A.EVENT_OVERSIGHT_REQUESTED, A.EVENT_ACTION_BLOCKED]

    follow_up, span2 = h.call(task_id="task-1")  # an ordinary tier-1 call in the halted task
    assert isinstance(follow_up, Denial) and h.ran == []
    assert (follow_up.effect, follow_up.outcome, follow_up.escalation_id) == ("deny", "halted", escalation_id)
    assert follow_up.reason == f"task task-1 is halted by tier-4 escalation {escalation_id}"
    assert (span2.attributes[A.POLICY_BOUNDARY], span2.attributes[A.POLICY_RULE_ID]) == ("tier", "halt")

    other_task, _ = h.call(task_id="task-2")
    assert other_task == {"ok": "order.create"}
    assert h.pep.resume_task("task-1") is True
    assert h.call(task_id="task-1")[0] == {"ok": "order.create"}


def test_without_a_task_id_a_tier_four_halt_covers_the_trace(exporter, clock):
    h = Harness(exporter, clock)
    with h.telemetry.task("procure"):
        first, _ = h.call(amount=250_000.0)
        second, _ = h.call()
    third, _ = h.call()  # a new trace
    assert (first.outcome, second.outcome) == ("halted", "halted")
    assert third == {"ok": "order.create"}


# --- rate limits -------------------------------------------------------------------------------------
def test_calls_beyond_the_rate_limit_are_denied_until_the_window_slides(exporter, clock):
    h = Harness(exporter, clock, agent_id="limited")
    for _ in range(3):
        assert h.call("catalog.search")[0] == {"ok": "catalog.search"}
        clock.advance(1)
    result, span = h.call("catalog.search")
    assert isinstance(result, Denial) and len(h.ran) == 3
    assert result.reason == "rate limit three-a-minute: 3 calls per 60s reached; retry in 57.0s"
    assert (result.effect, result.outcome) == ("deny", "denied")
    assert (span.attributes[A.POLICY_BOUNDARY], span.attributes[A.POLICY_RULE_ID]) == ("rate_limit", "three-a-minute")
    clock.advance(57)
    assert h.call("catalog.search")[0] == {"ok": "catalog.search"}


def test_a_rate_limit_can_name_the_tools_it_counts(exporter, clock):
    h = Harness(exporter, clock, agent_id="limited")
    assert h.call("order.create")[0] == {"ok": "order.create"}
    second, span = h.call("order.create")
    assert isinstance(second, Denial) and span.attributes[A.POLICY_RULE_ID] == "one-order-a-minute"
    assert h.call("catalog.search")[0] == {"ok": "catalog.search"}


def test_rate_limits_are_per_agent_instance(exporter, clock):
    a = Harness(exporter, clock, agent_id="limited")
    b = Harness(exporter, clock, agent_id="limited")
    assert a.call("order.create")[0] == {"ok": "order.create"}
    assert b.call("order.create")[0] == {"ok": "order.create"}


# --- cost envelopes ----------------------------------------------------------------------------------
def test_a_task_envelope_breach_lets_the_step_complete_then_halts_the_task(exporter, clock):
    handler = CallbackApprovalHandler(lambda r: None)
    h = Harness(exporter, clock, agent_id="metered", approval_handler=handler)
    first, span1 = h.call("llm.call", task_id="t1", estimated_cost=0.6)
    assert first == {"ok": "llm.call"}
    assert (span1.attributes[A.COST_AMOUNT], span1.attributes[A.COST_CURRENCY], span1.attributes[A.COST_SOURCE]) == (
        0.6, "USD", "estimated")
    assert A.EVENT_ENVELOPE_BREACH not in events(span1)

    second, span2 = h.call("llm.call", task_id="t1", estimated_cost=0.6)
    assert second == {"ok": "llm.call"}  # the breaching step completes
    breach = event(span2, A.EVENT_ENVELOPE_BREACH)
    escalation_id = breach[A.OVERSIGHT_ESCALATION_ID]
    reason = "envelope breach: per_task spend 1.20 USD exceeds limit 1.00 USD (task t1); task halted"
    assert breach == {
        A.POLICY_BOUNDARY: "envelope",
        A.POLICY_DECISION_ID: span2.attributes[A.POLICY_DECISION_ID],
        A.POLICY_ID: "pep-test",
        A.POLICY_VERSION: POLICY.version,
        A.POLICY_MODE: "enforce",
        A.POLICY_REASONS: (reason,),
        A.COST_ENVELOPE_PERIOD: "task",
        A.COST_ENVELOPE_LIMIT: 1.0,
        A.COST_ENVELOPE_SPENT: pytest.approx(1.2),
        A.COST_CURRENCY: "USD",
        A.OVERSIGHT_ESCALATION_ID: escalation_id,
        A.OVERSIGHT_ROUTED_TO: "role:oncall",
    }
    assert span2.attributes[A.COST_ENVELOPE_PERIOD] == "task"
    assert [(n.kind, n.escalation_id) for n in handler.notices] == [("envelope_breach", escalation_id)]

    third, span3 = h.call("catalog.search", task_id="t1")
    assert isinstance(third, Denial) and h.ran == ["llm.call", "llm.call"]
    assert (third.effect, third.outcome, third.escalation_id, third.reason) == ("deny", "halted", escalation_id, reason)
    assert (span3.attributes[A.POLICY_BOUNDARY], span3.attributes[A.POLICY_RULE_ID]) == (
        "envelope", "envelope.per_task")

    other_task, _ = h.call("llm.call", task_id="t2", estimated_cost=0.1)
    assert other_task == {"ok": "llm.call"}


def test_an_hour_envelope_breach_halts_the_agent_until_the_next_hour(exporter, clock):
    h = Harness(exporter, clock, agent_id="metered")
    for i in range(3):
        assert h.call("llm.call", task_id=f"t{i}", estimated_cost=0.9)[0] == {"ok": "llm.call"}
    result, span = h.call("llm.call", task_id="t9", estimated_cost=0.1)
    assert isinstance(result, Denial)
    assert result.reason == ("envelope breach: per_hour spend 2.70 USD exceeds limit 2.50 USD "
                             "(hour 2027-01-15T08Z); halted until 2027-01-15T09:00:00Z")
    assert span.attributes[A.POLICY_RULE_ID] == "envelope.per_hour"
    assert h.pep.status()["spent"]["metered"]["hour"] == pytest.approx(2.7)
    clock.advance(3600)
    assert h.call("llm.call", task_id="t10", estimated_cost=0.1)[0] == {"ok": "llm.call"}


def test_a_cost_the_tool_reports_on_the_span_counts_instead_of_the_estimate(exporter, clock):
    h = Harness(exporter, clock, agent_id="metered")
    with h.telemetry.tool_call("llm.call", arguments={}) as call:
        def tool():
            call.record_cost(1.5, "USD", source="reported")
            return "answer"
        request = ToolRequest(agent_id="metered", tool="llm.call", task_id="t", estimated_cost=0.01)
        assert h.pep.run(call, request, tool) == "answer"
    span = exporter.get_finished_spans()[-1]
    assert (span.attributes[A.COST_AMOUNT], span.attributes[A.COST_SOURCE]) == (1.5, "reported")
    assert event(span, A.EVENT_ENVELOPE_BREACH)[A.COST_ENVELOPE_SPENT] == 1.5


def test_a_step_that_raises_still_counts_its_cost(exporter, clock):
    h = Harness(exporter, clock, agent_id="metered")

    def failing():
        raise TimeoutError("model timed out")

    with pytest.raises(TimeoutError):
        h.call("llm.call", task_id="t", estimated_cost=1.2, execute=failing)
    assert h.pep.status("t")["spent"]["metered"]["task"] == pytest.approx(1.2)
    assert isinstance(h.call("llm.call", task_id="t")[0], Denial)


# --- delegation --------------------------------------------------------------------------------------
def test_a_sub_agent_exceeding_its_delegation_is_denied_and_the_chain_is_on_its_span(exporter, clock):
    buyer = make_telemetry(exporter, "buyer")
    helper = Harness(exporter, clock, agent_id="helper")
    with buyer.task("procure", acting_for="user:carol"):
        with helper.telemetry.task("draft order", delegated_scopes=["tool:order.*", "resource:erp://orders/*"]):
            allowed, span_ok = helper.call("order.create", resource="erp://orders/5")
            exceeded, span_no = helper.call("catalog.search", resource="erp://catalog/x")
    assert allowed == {"ok": "order.create"}
    assert isinstance(exceeded, Denial) and helper.ran == ["order.create"]
    assert exceeded.reason == "tool 'catalog.search' is outside the scopes 'buyer' delegated to 'helper'"
    assert (span_no.attributes[A.POLICY_BOUNDARY], span_no.attributes[A.POLICY_RULE_ID]) == (
        "delegation", "delegation.scopes")
    for span in (span_ok, span_no):
        assert (span.attributes[A.DELEGATION_ACTING_FOR], span.attributes[A.DELEGATION_DELEGATING_AGENT],
                span.attributes[A.DELEGATION_DEPTH], span.attributes[A.GEN_AI_AGENT_ID]) == (
            "user:carol", "buyer", 1, "helper")


def test_a_sub_agent_never_gets_a_tool_the_delegating_agent_lacks(exporter, clock):
    buyer = make_telemetry(exporter, "buyer")
    helper = Harness(exporter, clock, agent_id="helper")
    with buyer.task("procure", acting_for="user:carol"):
        with helper.telemetry.task("notify", delegated_scopes=["*"]):
            result, span = helper.call("mail.send", resource="erp://mail/1")
    assert isinstance(result, Denial) and helper.ran == []
    assert result.reason == "tool 'mail.send' is outside what delegating agent 'buyer' holds"
    assert span.attributes[A.POLICY_BOUNDARY] == "delegation"


def test_the_delegating_agents_own_calls_are_not_treated_as_delegated(exporter, clock):
    buyer = Harness(exporter, clock, agent_id="buyer")
    with buyer.telemetry.task("procure", acting_for="user:carol"):
        result, span = buyer.call()
    assert result == {"ok": "order.create"}
    assert span.attributes[A.DELEGATION_DEPTH] == 0 and A.DELEGATION_DELEGATING_AGENT not in span.attributes


# --- log-only mode -----------------------------------------------------------------------------------
def test_log_only_records_what_would_have_happened_and_always_runs(exporter, clock):
    handler = approve_as("alice", "lead")
    h = Harness(exporter, clock, mode="log_only", approval_handler=handler)
    denied, span1 = h.call("payment.execute")
    escalated, span2 = h.call(amount=5000.0)
    halted, span3 = h.call(amount=250_000.0)
    assert (denied, escalated, halted) == ({"ok": "payment.execute"}, {"ok": "order.create"}, {"ok": "order.create"})
    assert handler.requests == [] and handler.notices == []
    assert [(s.attributes[A.POLICY_EFFECT], s.attributes[A.POLICY_MODE], s.attributes[A.POLICY_TIER])
            for s in (span1, span2, span3)] == [("deny", "log_only", 1), ("escalate", "log_only", 3),
                                                ("escalate", "log_only", 4)]
    for span in (span1, span2, span3):
        assert events(span) == [A.EVENT_POLICY_DECISION, A.EVENT_ACTION_EXECUTED]
        assert oversight_attrs(span) == {}


def test_log_only_records_an_envelope_breach_but_never_halts(exporter, clock):
    h = Harness(exporter, clock, agent_id="metered", mode="log_only")
    h.call("llm.call", task_id="t", estimated_cost=1.5)
    result, span = h.call("llm.call", task_id="t")
    assert result == {"ok": "llm.call"}
    assert (span.attributes[A.POLICY_EFFECT], span.attributes[A.POLICY_BOUNDARY], span.attributes[A.POLICY_MODE]) == (
        "deny", "envelope", "log_only")


# --- faults ------------------------------------------------------------------------------------------
def test_an_exception_from_the_tool_passes_through_unchanged_with_the_decision_recorded(exporter, clock):
    h = Harness(exporter, clock)
    boom = ConnectionError("erp unreachable")

    def tool():
        raise boom

    with pytest.raises(ConnectionError) as raised:
        h.call(execute=tool, amount=150.0)
    assert raised.value is boom
    span = exporter.get_finished_spans()[-1]
    assert span.attributes[A.POLICY_EFFECT] == "allow"
    assert event(span, A.EVENT_ACTION_EXECUTED)[A.ERROR_TYPE] == "ConnectionError"
    assert ENGINE_FAULTS.total == 0


def test_a_fault_while_deciding_is_counted_and_fails_closed_with_a_clear_reason(exporter, clock):
    h = Harness(exporter, clock)
    result, span = h.call(amount="a lot")  # a malformed fact makes evaluation itself fail
    assert isinstance(result, Denial) and h.ran == []
    assert result.reason == "policy engine fault (fail-closed): TypeError"
    assert (result.effect, result.outcome) == ("deny", "denied")
    assert ENGINE_FAULTS.count("decide") == 1
    assert (span.attributes[A.POLICY_EFFECT], span.attributes[A.POLICY_RULE_ID]) == ("deny", "engine-fault")
    assert span.attributes[A.POLICY_REASONS][0].startswith("policy engine fault: TypeError")
    assert span.attributes[A.POLICY_REASONS][1] == "fail-closed"


def test_fail_open_runs_the_call_after_an_engine_fault_and_the_result_is_unchanged(exporter, clock):
    h = Harness(exporter, clock, fail_mode="open")
    result, span = h.call(amount="a lot")
    assert result == {"ok": "order.create"} and h.ran == ["order.create"]
    assert (span.attributes[A.POLICY_EFFECT], span.attributes[A.POLICY_REASONS][1]) == ("allow", "fail-open")
    assert ENGINE_FAULTS.count("decide") == 1


def test_fail_open_never_runs_a_call_that_was_already_decided_for_approval(exporter):
    broken_clock = lambda: float("inf")  # noqa: E731 - deadlines cannot be computed from this clock
    handler = approve_as("alice", "lead")
    h = Harness(exporter, broken_clock, fail_mode="open", approval_handler=handler)
    escalated, span = h.call(amount=5000.0)
    assert isinstance(escalated, Denial) and h.ran == [] and handler.requests == []
    assert escalated.reason == "policy engine fault (fail-closed): OverflowError"
    assert span.attributes[A.POLICY_REASONS][1] == "fail-closed"
    assert h.call()[0] == {"ok": "order.create"}  # a tier-1 call needs no deadline and runs
    assert ENGINE_FAULTS.count("decide") == 1


def test_a_policy_file_that_cannot_be_loaded_never_breaks_the_agent(exporter, clock, tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("id: broken\nagents: [\n")
    closed = Harness(exporter, clock, policy=bad)
    result, span = closed.call()
    assert isinstance(result, Denial) and result.reason == "policy engine fault (fail-closed): PolicyUnavailable"
    assert (span.attributes[A.POLICY_ID], span.attributes[A.POLICY_VERSION]) == ("unavailable", "unknown")
    assert ENGINE_FAULTS.count("policy_load") == 2  # once at load, once for the call
    opened = Harness(exporter, clock, policy=bad, fail_mode="open")
    assert opened.call()[0] == {"ok": "order.create"}


def test_an_approval_handler_that_crashes_auto_denies_and_is_counted(exporter, clock):
    def crash(request):
        raise RuntimeError("approval service down")

    h = Harness(exporter, clock, approval_handler=CallbackApprovalHandler(crash))
    result, span = h.call(amount=5000.0)
    assert h.ran == [] and result.outcome == "auto_denied"
    assert span.attributes[A.OVERSIGHT_REASON] == "approval handler fault: RuntimeError: approval service down"
    assert ENGINE_FAULTS.count("approval_handler") == 1


def test_a_notify_hook_that_crashes_does_not_change_the_result(exporter, clock):
    def crash(notice):
        raise OSError("disk full")

    h = Harness(exporter, clock, approval_handler=CallbackApprovalHandler(lambda r: None, notify=crash))
    assert h.call(amount=150.0)[0] == {"ok": "order.create"}
    assert ENGINE_FAULTS.count("notify") == 1


def test_engine_faults_are_logged_once_per_kind(exporter, clock, caplog):
    h = Harness(exporter, clock)
    with caplog.at_level(logging.DEBUG, logger="govtrace.policy"):
        h.call(amount="a lot")
        h.call(amount="still a lot")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "(decide)" in errors[0].getMessage()
    assert ENGINE_FAULTS.count("decide") == 2


def test_decide_on_the_enforcement_point_sees_limits_without_consuming_them(exporter, clock):
    h = Harness(exporter, clock, agent_id="limited")
    request = ToolRequest(agent_id="limited", tool="order.create")
    for _ in range(3):
        assert h.pep.decide(request).effect == "allow"
    h.call("order.create")
    d = h.pep.decide(request)
    assert (d.effect, d.boundary) == ("deny", "rate_limit")


def test_invalid_modes_are_refused_at_construction():
    with pytest.raises(ValueError, match="mode must be one of"):
        PolicyEnforcementPoint(POLICY, mode="audit")
    with pytest.raises(ValueError, match="fail_mode must be"):
        PolicyEnforcementPoint(POLICY, fail_mode="maybe")
