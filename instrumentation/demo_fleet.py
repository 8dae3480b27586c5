"""A scripted fleet of instrumented agents doing realistic governed work, for the demo.

Six agents (an orchestrator, procurement, finance, support, HR, IT) emit real OTel spans through
``AgentTelemetry``: delegation from the orchestrator to sub-agents, all four escalation tiers,
approvals granted, denied and expired (one decided later, in its own trace), data reads and writes
of several classifications, model calls with tokens and costs, a failing tool.

Decisions are made by the policy engine when it is installed (``govtrace.instrumentation.policy``)
with the example fleet policy; otherwise the scripted decisions below stand in.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.telemetry import AgentTelemetry
from opentelemetry.trace import Link, SpanKind

FLEET = {
    "ops-orchestrator": ("Operations orchestrator", "platform-team@acme.example"),
    "procurement-agent": ("Procurement agent", "procurement-lead@acme.example"),
    "finance-agent": ("Finance agent", "cfo-office@acme.example"),
    "support-agent": ("Support agent", "support-lead@acme.example"),
    "hr-agent": ("HR agent", "hr-director@acme.example"),
    "it-agent": ("IT agent", "it-ops@acme.example"),
}
POLICY_ID = "acme-fleet"
POLICY_VERSION = "demo-scripted"
FOCUS_AGENT = "finance-agent"


@dataclass
class Step:
    tool: str
    arguments: dict[str, Any]
    tier: int
    effect: str
    rule: str
    resource: str | None = None
    operation: str | None = None
    classification: str | None = None
    records: int | None = None
    amount: float | None = None
    reversible: bool | None = None
    approval: str | None = None  # approved | denied | expired | late_approved
    cost: float = 0.0
    fails: bool = False
    boundary: str | None = None


class Fleet:
    def __init__(self, endpoint: str, exporter_factory: Callable[[], Any] | None = None, seed: int = 7):
        self.random = random.Random(seed)
        self.agents = {
            agent_id: AgentTelemetry(agent_id, name=name, owner=owner, environment="demo",
                                     credential=f"key-{agent_id}", endpoint=endpoint,
                                     exporter=exporter_factory() if exporter_factory else None)
            for agent_id, (name, owner) in FLEET.items()
        }
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
        with orchestrator.task("month-end close", acting_for="alice@acme.example",
                               conversation_id=f"conv-{uuid.uuid4().hex[:8]}") as root:
            self.trace_ids["month_end_close"] = format(root.get_span_context().trace_id, "032x")
            self._model_call(orchestrator, input_tokens=1200, output_tokens=300, cost=0.021)
            with orchestrator.tool_call("delegate", arguments={"to": "procurement-agent"}) as call:
                self._decide(call, Step("delegate", {}, 1, "allow", "delegation-allowed"))
                self._procurement_work()
            with orchestrator.tool_call("delegate", arguments={"to": "finance-agent"}) as call:
                self._decide(call, Step("delegate", {}, 1, "allow", "delegation-allowed"))
                self._finance_work()

    def _procurement_work(self) -> None:
        agent = self.agents["procurement-agent"]
        with agent.task("restock laptops", delegated_scopes=["vendors:read", "purchase_orders:write"]):
            self._model_call(agent, 800, 150, 0.012)
            self._run(agent, Step("search_vendors", {"item": "laptop"}, 1, "allow", "read-internal",
                                  "erp://vendors", "read", "internal", 40, cost=0.001))
            self._run(agent, Step("create_purchase_order", {"vendor": "v-118", "amount": 4800}, 3, "escalate",
                                  "amount-over-1000", "erp://purchase_orders", "write", "confidential", 1,
                                  amount=4800.0, reversible=True, approval="approved", cost=0.002))
            self._run(agent, Step("create_purchase_order", {"vendor": "v-404", "amount": 250_000}, 4, "escalate",
                                  "amount-over-100k-halts", "erp://purchase_orders", "write", "confidential", 1,
                                  amount=250_000.0, reversible=False, cost=0.0))

    def _finance_work(self) -> None:
        agent = self.agents["finance-agent"]
        with agent.task("pay approved invoices", delegated_scopes=["invoices:read", "payments:write"]):
            self._model_call(agent, 2000, 400, 0.034)
            self._run(agent, Step("list_invoices", {"status": "approved"}, 1, "allow", "read-confidential",
                                  "erp://invoices", "read", "confidential", 120, cost=0.002))
            self._run(agent, Step("pay_invoice", {"invoice": "INV-2291", "amount": 180}, 2, "allow",
                                  "small-reversible-payment", "bank://payments", "write", "confidential", 1,
                                  amount=180.0, reversible=True, cost=0.003))
            self._run(agent, Step("pay_invoice", {"invoice": "INV-2292", "amount": 200, "batch": 50_000}, 3,
                                  "escalate", "bulk-records", "bank://payments", "write", "restricted", 50_000,
                                  amount=200.0, reversible=False, approval="denied", cost=0.004))
            self._run(agent, Step("pay_invoice", {"invoice": "INV-2293", "amount": 9_500}, 3, "escalate",
                                  "amount-over-1000", "bank://payments", "write", "confidential", 1,
                                  amount=9_500.0, reversible=False, approval="expired", cost=0.003))
            self._run(agent, Step("wire_transfer", {"to": "offshore-acct", "amount": 1200}, 3, "escalate",
                                  "amount-over-1000", "bank://wires", "send", "restricted", 1,
                                  amount=1200.0, reversible=False, approval="late_approved", cost=0.003))
            self._run(agent, Step("export_ledger", {"format": "csv"}, 1, "deny", "scope-not-granted",
                                  "erp://general_ledger", "read", "restricted", 900_000, boundary="scope"))

    def _support_queue(self) -> None:
        agent = self.agents["support-agent"]
        with agent.task("resolve ticket", acting_for="customer-8812") as root:
            self.trace_ids["support_ticket"] = format(root.get_span_context().trace_id, "032x")
            self._model_call(agent, 900, 220, 0.009)
            self._run(agent, Step("lookup_customer", {"customer": "8812"}, 1, "allow", "read-pii",
                                  "crm://customers", "read", "pii", 1, cost=0.001))
            self._run(agent, Step("issue_refund", {"order": "A-77", "amount": 35}, 2, "allow",
                                  "small-reversible-payment", "bank://refunds", "write", "confidential", 1,
                                  amount=35.0, reversible=True, cost=0.002))
            self._run(agent, Step("send_email", {"to": "customer-8812"}, 1, "allow", "notify-customer",
                                  "mail://outbound", "send", "pii", 1, cost=0.001, fails=True))

    def _hr_requests(self) -> None:
        agent = self.agents["hr-agent"]
        with agent.task("payroll change", acting_for="bob@acme.example"):
            self._model_call(agent, 700, 120, 0.007)
            self._run(agent, Step("read_employee_record", {"employee": "E-1042"}, 2, "allow", "read-pii-logged",
                                  "hris://employees", "read", "pii", 1, cost=0.001))
            self._run(agent, Step("update_salary", {"employee": "E-1042", "delta": 3000}, 3, "escalate",
                                  "pii-write-needs-approval", "hris://payroll", "write", "restricted", 1,
                                  amount=3000.0, reversible=True, approval="approved", cost=0.002))

    def _it_operations(self) -> None:
        agent = self.agents["it-agent"]
        with agent.task("access review", acting_for="carol@acme.example"):
            self._model_call(agent, 500, 80, 0.004)
            self._run(agent, Step("list_accounts", {"system": "okta"}, 1, "allow", "read-internal",
                                  "iam://accounts", "read", "internal", 3_400, cost=0.001))
            self._run(agent, Step("disable_account", {"account": "u-991"}, 2, "allow", "reversible-admin",
                                  "iam://accounts", "write", "internal", 1, reversible=True, cost=0.001))
            self._run(agent, Step("delete_backups", {"older_than_days": 1}, 4, "deny", "irreversible-delete",
                                  "s3://backups", "delete", "restricted", 12_000, reversible=False))
            for _ in range(3):
                self._run(agent, Step("rotate_key", {"key": "svc"}, 1, "deny", "rate-limit-10-per-min",
                                      "kms://keys", "write", "restricted", 1, boundary="rate_limit"))

    # --- helpers --------------------------------------------------------------------------------
    def _model_call(self, agent: AgentTelemetry, input_tokens: int, output_tokens: int, cost: float) -> None:
        with agent.tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as span:
            span.set_attributes({
                A.GEN_AI_OPERATION_NAME: A.OP_CHAT, A.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                A.GEN_AI_PROVIDER_NAME: "openai", A.GEN_AI_AGENT_ID: agent.agent_id,
                A.GEN_AI_USAGE_INPUT_TOKENS: input_tokens, A.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
                A.COST_AMOUNT: cost, A.COST_CURRENCY: "USD", A.COST_SOURCE: "reported",
            })

    def _run(self, agent: AgentTelemetry, step: Step) -> None:
        with agent.tool_call(step.tool, arguments=step.arguments) as call:
            if step.resource:
                call.record_data(resource=step.resource, operation=step.operation or "read",
                                 classification=step.classification, record_count=step.records)
            call.record_action(target=step.resource, amount=step.amount, reversible=step.reversible)
            self._decide(call, step)
            executes = step.effect == "allow" or step.approval == "approved"
            if step.effect == "escalate":
                escalation_id = f"esc-{uuid.uuid4().hex[:12]}"
                deadline = datetime.now(UTC) + timedelta(minutes=15)
                call.record_escalation(escalation_id=escalation_id, tier=step.tier, routed_to="finance-approvers",
                                       deadline=deadline.isoformat(), sla_seconds=900)
                if step.tier == 4:
                    call.span.add_event(A.EVENT_ACTION_BLOCKED, {"reason": "tier 4: halted and escalated"})
                elif step.approval == "late_approved":
                    self.late_approvals.append((escalation_id, agent.agent_id, call.span.get_span_context()))
                elif step.approval:
                    outcome = "approved" if step.approval == "approved" else step.approval
                    approver = (None, None) if outcome == "expired" else ("dana@acme.example", "finance-controller")
                    call.record_approval(outcome=outcome if outcome != "expired" else "auto_denied",
                                         approver_id=approver[0], approver_role=approver[1],
                                         decided_at=(datetime.now(UTC) + timedelta(seconds=42)).isoformat())
            if step.tier == 2 and executes:
                call.span.add_event(A.EVENT_OVERSIGHT_REVIEW, {A.OVERSIGHT_REVERSAL_WINDOW_SECONDS: 3600})
            if executes:
                call.span.add_event(A.EVENT_ACTION_EXECUTED)
                if step.cost:
                    call.record_cost(step.cost)
                if step.fails:
                    call.fail("SMTPTimeout", "mail relay did not answer")

    def _decide(self, call: Any, step: Step) -> None:
        call.record_policy(effect=step.effect, policy_id=POLICY_ID, rule_id=step.rule, version=POLICY_VERSION,
                           tier=step.tier, reasons=[step.rule], boundary=step.boundary or (
                               "tier" if step.effect == "escalate" else None))

    def _resolve_late_approvals(self) -> None:
        """A human approves later: the decision arrives in its own trace, linked to the request."""
        for escalation_id, agent_id, span_context in self.late_approvals:
            agent = self.agents[agent_id]
            with agent.tracer.start_as_current_span(
                "govtrace.approval", links=[Link(span_context)], context=None,
            ) as span:
                self.trace_ids.setdefault("late_approval", format(span.get_span_context().trace_id, "032x"))
                span.set_attributes({
                    A.GEN_AI_OPERATION_NAME: A.OP_APPROVAL, A.GEN_AI_AGENT_ID: agent_id,
                    A.OVERSIGHT_ESCALATION_ID: escalation_id, A.OVERSIGHT_OUTCOME: "approved",
                    A.OVERSIGHT_APPROVER_ID: "erin@acme.example", A.OVERSIGHT_APPROVER_ROLE: "treasury",
                    A.OVERSIGHT_DECIDED_AT: (datetime.now(UTC) + timedelta(minutes=20)).isoformat(),
                })
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
