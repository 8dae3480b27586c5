"""A scripted fleet of instrumented agents doing realistic governed work, for the demo.

Six agents (an orchestrator, procurement, finance, support, HR, IT) emit real OTel spans through
``AgentTelemetry``: delegation from the orchestrator to sub-agents, all four escalation tiers,
approvals granted, denied and expired (one decided later, in its own trace), data reads and writes
of several classifications, model calls with tokens and costs, a failing tool.

Every decision is made by the real policy enforcement point with the example fleet policy
(``govtrace/instrumentation/policy/examples/fleet.yaml``); the script only says what each human
approver answers. One escalation is parked and approved later, in a trace of its own, as
asynchronous approval workflows do.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.trace import Link, SpanKind

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.enforcement import Denial, ToolRequest
from govtrace.instrumentation.policy import (
    EXAMPLE_FLEET_POLICY,
    ApprovalRequest,
    CallbackApprovalHandler,
    PolicyEnforcementPoint,
    load_policy,
)
from govtrace.instrumentation.telemetry import AgentTelemetry, current_delegation

FLEET = {
    "ops-orchestrator": ("Operations orchestrator", "platform-team@acme.example"),
    "procurement-agent": ("Procurement agent", "procurement-lead@acme.example"),
    "finance-agent": ("Finance agent", "cfo-office@acme.example"),
    "support-agent": ("Support agent", "support-lead@acme.example"),
    "hr-agent": ("HR agent", "hr-director@acme.example"),
    "it-agent": ("IT agent", "it-ops@acme.example"),
}
FOCUS_AGENT = "finance-agent"
APPROVERS = {
    "approved": ("dana@acme.example", "finance-controller"),
    "denied": ("dana@acme.example", "finance-controller"),
}


class ToolFailed(RuntimeError):
    """A tool's own failure, passed through the enforcement point untouched."""


@dataclass
class Step:
    tool: str
    arguments: dict[str, Any]
    resource: str | None = None
    operation: str | None = None
    classification: str | None = None
    records: int | None = None
    amount: float | None = None
    reversible: bool | None = None
    approval: str | None = (
        None  # what the human approver answers if asked: approved | denied | (None: no answer)
    )
    cost: float = 0.0
    fails: bool = False


class Fleet:
    def __init__(self, endpoint: str, exporter_factory: Callable[[], Any] | None = None, seed: int = 7):
        self.random = random.Random(seed)
        self.agents = {
            agent_id: AgentTelemetry(
                agent_id,
                name=name,
                owner=owner,
                environment="demo",
                credential=f"key-{agent_id}",
                endpoint=endpoint,
                exporter=exporter_factory() if exporter_factory else None,
            )
            for agent_id, (name, owner) in FLEET.items()
        }
        self.policy = load_policy(EXAMPLE_FLEET_POLICY)
        self.peps = {
            agent_id: PolicyEnforcementPoint(
                self.policy, agent_id=agent_id, approval_handler=CallbackApprovalHandler(self._answer)
            )
            for agent_id in FLEET
        }
        self._intent: str | None = None
        self.late_approvals: list[tuple[str, str, Any]] = []
        self.trace_ids: dict[str, str] = {}

    # --- the scenario -------------------------------------------------------------------------
    def run_once(self) -> dict[str, str]:
        """One round of fleet work; returns interesting trace ids by label."""
        self._month_end_close()
        self._support_queue()
        self._hr_requests()
        self._it_operations()
        self._resolve_late_approvals()
        return dict(self.trace_ids)

    def _month_end_close(self) -> None:
        orchestrator = self.agents["ops-orchestrator"]
        with orchestrator.task(
            "month-end close", acting_for="alice@acme.example", conversation_id=f"conv-{uuid.uuid4().hex[:8]}"
        ) as root:
            self.trace_ids["month_end_close"] = format(root.get_span_context().trace_id, "032x")
            self._model_call(orchestrator, input_tokens=1200, output_tokens=300, cost=0.021)
            self._run(
                orchestrator,
                Step("delegate", {"to": "procurement-agent"}, "kb://delegations", "read"),
                then=self._procurement_work,
            )
            self._run(
                orchestrator,
                Step("delegate", {"to": "finance-agent"}, "kb://delegations", "read"),
                then=self._finance_work,
            )

    def _procurement_work(self) -> None:
        agent = self.agents["procurement-agent"]
        with agent.task(
            "restock laptops",
            delegated_scopes=[
                "tool:search_vendors",
                "tool:create_purchase_order",
                "resource:erp://vendors*",
                "resource:erp://purchase_orders*",
                "operation:read",
                "operation:write",
            ],
        ):
            self._model_call(agent, 800, 150, 0.012)
            self._run(
                agent,
                Step(
                    "search_vendors", {"item": "laptop"}, "erp://vendors", "read", "internal", 40, cost=0.001
                ),
            )
            self._run(
                agent,
                Step(
                    "create_purchase_order",
                    {"vendor": "v-118", "amount": 4800},
                    "erp://purchase_orders",
                    "write",
                    "confidential",
                    1,
                    amount=4800.0,
                    reversible=True,
                    approval="approved",
                    cost=0.002,
                ),
            )
            self._run(
                agent,
                Step(
                    "create_purchase_order",
                    {"vendor": "v-404", "amount": 250_000},
                    "erp://purchase_orders",
                    "write",
                    "confidential",
                    1,
                    amount=250_000.0,
                    reversible=False,
                    cost=0.0,
                ),
            )

    def _finance_work(self) -> None:
        agent = self.agents["finance-agent"]
        with agent.task(
            "pay approved invoices",
            delegated_scopes=[
                "tool:list_invoices",
                "tool:pay_invoice",
                "resource:erp://invoices*",
                "resource:bank://payments*",
                "operation:read",
                "operation:write",
            ],
        ):
            self._model_call(agent, 2000, 400, 0.034)
            self._run(
                agent,
                Step(
                    "list_invoices",
                    {"status": "approved"},
                    "erp://invoices",
                    "read",
                    "confidential",
                    120,
                    cost=0.002,
                ),
            )
            self._run(
                agent,
                Step(
                    "pay_invoice",
                    {"invoice": "INV-2291", "amount": 180},
                    "bank://payments",
                    "write",
                    "confidential",
                    1,
                    amount=180.0,
                    reversible=True,
                    cost=0.003,
                ),
            )
            self._run(
                agent,
                Step(
                    "pay_invoice",
                    {"invoice": "INV-2292", "amount": 200, "batch": 50_000},
                    "bank://payments",
                    "write",
                    "restricted",
                    50_000,
                    amount=200.0,
                    reversible=False,
                    approval="denied",
                    cost=0.004,
                ),
            )
            self._run(
                agent,
                Step(
                    "pay_invoice",
                    {"invoice": "INV-2293", "amount": 9_500},
                    "bank://payments",
                    "write",
                    "confidential",
                    1,
                    amount=9_500.0,
                    reversible=False,
                    approval=None,
                    cost=0.003,
                ),
            )
            self._run(
                agent,
                Step(
                    "wire_transfer",
                    {"to": "offshore-acct", "amount": 1200},
                    "bank://wires",
                    "send",
                    "restricted",
                    1,
                    amount=1200.0,
                    reversible=False,
                    approval=None,  # not delegated to it: denied before anyone is asked
                    cost=0.003,
                ),
            )
            self._run(
                agent,
                Step(
                    "export_ledger", {"format": "csv"}, "erp://general_ledger", "read", "restricted", 900_000
                ),
            )

    def _support_queue(self) -> None:
        agent = self.agents["support-agent"]
        with agent.task("resolve ticket", acting_for="customer-8812") as root:
            self.trace_ids["support_ticket"] = format(root.get_span_context().trace_id, "032x")
            self._model_call(agent, 900, 220, 0.009)
            self._run(
                agent,
                Step(
                    "lookup_customer", {"customer": "8812"}, "crm://customers", "read", "pii", 1, cost=0.001
                ),
            )
            self._run(
                agent,
                Step(
                    "issue_refund",
                    {"order": "A-77", "amount": 35},
                    "bank://refunds",
                    "write",
                    "confidential",
                    1,
                    amount=35.0,
                    reversible=True,
                    cost=0.002,
                ),
            )
            self._run(
                agent,
                Step(
                    "send_email",
                    {"to": "customer-8812"},
                    "mail://outbound",
                    "send",
                    "pii",
                    1,
                    cost=0.001,
                    fails=True,
                ),
            )

    def _hr_requests(self) -> None:
        agent = self.agents["hr-agent"]
        with agent.task("payroll change", acting_for="bob@acme.example"):
            self._model_call(agent, 700, 120, 0.007)
            self._run(
                agent,
                Step(
                    "read_employee_record",
                    {"employee": "E-1042"},
                    "hris://employees",
                    "read",
                    "pii",
                    1,
                    cost=0.001,
                ),
            )
            self._run(
                agent,
                Step(
                    "update_salary",
                    {"employee": "E-1042", "delta": 3000},
                    "hris://payroll",
                    "write",
                    "restricted",
                    1,
                    amount=3000.0,
                    reversible=True,
                    approval="later",
                    cost=0.002,
                ),
            )

    def _it_operations(self) -> None:
        agent = self.agents["it-agent"]
        with agent.task("access review", acting_for="carol@acme.example"):
            self._model_call(agent, 500, 80, 0.004)
            self._run(
                agent,
                Step(
                    "list_accounts",
                    {"system": "okta"},
                    "iam://accounts",
                    "read",
                    "internal",
                    3_400,
                    cost=0.001,
                ),
            )
            self._run(
                agent,
                Step(
                    "disable_account",
                    {"account": "u-991"},
                    "iam://accounts",
                    "write",
                    "internal",
                    1,
                    reversible=True,
                    cost=0.001,
                ),
            )
            for _ in range(12):  # the policy allows 10 key rotations a minute
                self._run(agent, Step("rotate_key", {"key": "svc"}, "kms://keys", "write", "restricted", 1))
            self._run(
                agent,
                Step(
                    "delete_backups",
                    {"older_than_days": 1},
                    "s3://backups",
                    "delete",
                    "restricted",
                    12_000,
                    reversible=False,
                ),
            )

    # --- helpers --------------------------------------------------------------------------------
    def _model_call(self, agent: AgentTelemetry, input_tokens: int, output_tokens: int, cost: float) -> None:
        with agent.tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as span:
            span.set_attributes(
                {
                    A.GEN_AI_OPERATION_NAME: A.OP_CHAT,
                    A.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                    A.GEN_AI_PROVIDER_NAME: "openai",
                    A.GEN_AI_AGENT_ID: agent.agent_id,
                    A.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
                    A.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
                    A.COST_AMOUNT: cost,
                    A.COST_CURRENCY: "USD",
                    A.COST_SOURCE: "reported",
                }
            )

    def _run(self, agent: AgentTelemetry, step: Step, then: Callable[[], None] | None = None) -> Any:
        """One governed tool call: the enforcement point decides before anything runs."""
        with agent.tool_call(step.tool, arguments=step.arguments) as call:
            if step.resource:
                call.record_data(
                    resource=step.resource,
                    operation=step.operation or "read",
                    classification=step.classification,
                    record_count=step.records,
                )
            call.record_action(target=step.resource, amount=step.amount, reversible=step.reversible)
            delegation = current_delegation()
            request = ToolRequest(
                agent_id=agent.agent_id,
                tool=step.tool,
                arguments=step.arguments,
                resource=step.resource,
                operation=step.operation,
                classification=step.classification,
                record_count=step.records,
                amount=step.amount,
                reversible=step.reversible,
                estimated_cost=step.cost or None,
                task_id=format(call.span.get_span_context().trace_id, "032x"),
                acting_for=delegation["acting_for"],
                delegating_agent=delegation["delegating_agent"],
                delegation_depth=delegation["depth"],
                delegated_scopes=tuple(delegation["scopes"]),
            )
            if step.approval == "later":
                return self._park(agent, call, request)
            self._intent = step.approval
            try:
                return self.peps[agent.agent_id].run(call, request, lambda: self._execute(call, step, then))
            except ToolFailed:
                return None  # the span recorded the failure; the agent carries on

    def _execute(self, call: Any, step: Step, then: Callable[[], None] | None) -> str:
        if step.cost:
            call.record_cost(step.cost)
        if then is not None:
            then()
        if step.fails:
            raise ToolFailed(f"{step.tool}: mail relay did not answer")
        return "ok"

    def _answer(self, request: ApprovalRequest) -> Any:
        """The scripted human approver."""
        if self._intent is None:
            return None  # nobody answers: the deadline passes and the call is auto-denied
        approver, role = APPROVERS[self._intent]
        decided_at = request.requested_at + 42.0
        if self._intent == "approved":
            return request.approve(approver, role, decided_at=decided_at)
        return request.deny(approver, role, decided_at=decided_at, comment="too many records for one payment")

    def _park(self, agent: AgentTelemetry, call: Any, request: ToolRequest) -> Denial:
        """Asynchronous approval: record the decision and the pending escalation, run nothing now."""
        decision = self.policy.decide(request)
        if decision.effect != "escalate":
            raise ValueError(f"only escalated calls are parked; {request.tool} was {decision.effect}")
        call.record_policy(
            effect=decision.effect,
            policy_id=decision.policy_id,
            rule_id=decision.rule_id,
            version=decision.version,
            tier=decision.tier,
            reasons=decision.reasons,
            decision_id=decision.decision_id,
            boundary=decision.boundary,
        )
        escalation_id = f"esc-{uuid.uuid4().hex[:12]}"
        deadline = datetime.now(UTC) + timedelta(hours=4)
        call.record_escalation(
            escalation_id=escalation_id,
            tier=decision.tier,
            routed_to=decision.routed_to or "role:approvers",
            deadline=deadline.isoformat(),
            sla_seconds=3600,
        )
        call.span.add_event(A.EVENT_ACTION_BLOCKED, {"reason": "parked until an approver decides"})
        self.late_approvals.append((escalation_id, agent.agent_id, call.span.get_span_context()))
        return Denial(
            request.tool,
            "escalate",
            "awaiting asynchronous approval",
            decision.decision_id,
            escalation_id,
            "pending",
        )

    def _resolve_late_approvals(self) -> None:
        """A human approves later: the decision arrives in its own trace, linked to the request."""
        for escalation_id, agent_id, span_context in self.late_approvals:
            agent = self.agents[agent_id]
            with agent.tracer.start_as_current_span(
                "govtrace.approval",
                links=[Link(span_context)],
                context=None,
            ) as span:
                self.trace_ids.setdefault("late_approval", format(span.get_span_context().trace_id, "032x"))
                span.set_attributes(
                    {
                        A.GEN_AI_OPERATION_NAME: A.OP_APPROVAL,
                        A.GEN_AI_AGENT_ID: agent_id,
                        A.OVERSIGHT_ESCALATION_ID: escalation_id,
                        A.OVERSIGHT_OUTCOME: "approved",
                        A.OVERSIGHT_APPROVER_ID: "erin@acme.example",
                        A.OVERSIGHT_APPROVER_ROLE: "hr-business-partner",
                        A.OVERSIGHT_DECIDED_AT: (datetime.now(UTC) + timedelta(minutes=20)).isoformat(),
                    }
                )
        self.late_approvals.clear()

    def flush(self) -> None:
        for agent in self.agents.values():
            agent.flush()

    def shutdown(self) -> None:
        for agent in self.agents.values():
            agent.shutdown()


def trickle(fleet: Fleet, stop: Callable[[], bool], every_seconds: float = 5.0) -> None:
    """Keep the fleet working at a gentle pace until ``stop()``."""
    while not stop():
        fleet.run_once()
        deadline = time.monotonic() + every_seconds
        while time.monotonic() < deadline and not stop():
            time.sleep(0.2)
