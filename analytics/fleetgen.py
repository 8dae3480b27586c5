"""A realistic multi-agent fleet, generated straight into a DuckDB file with the ``spans`` schema.

A benchmark fixture, not ingest: rows are built column-wise (numpy, then Arrow) and appended in large
batches, with the canonical ``record`` JSON of every span, so that 10 million spans take minutes.
The fleet: orchestrators that delegate to specialists (finance, procurement, support, HR, IT, sales,
legal, data), each with its own tools, resources, data classifications and model; policy decisions
(allow, deny with scope and rate-limit boundaries, escalations of tier 3 and 4); approvals decided on
the span, auto-denied at the deadline, or arriving later in their own trace with a link back; model
calls with tokens, most with a reported cost, some without (priced from the table); failing tools;
and what real instrumentation does: sub-agent traces that lost their parent context (joined only by
the conversation id), model calls recorded twice by a second instrumentation, spans whose parent
never arrived, tasks with no agent identity, and two agents missing from the registry.

``python -m govtrace.analytics.fleetgen --db fleet.duckdb --spans 10000000``
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from govtrace.analytics.costs import Envelope, load_prices
from govtrace.analytics.registry import AgentEntry, Registry
from govtrace.collector.schema import SPAN_COLUMNS, migrate

# (tool, resource, operation, classification, moves money)
ROLES: dict[str, list[tuple[str, str, str, str, bool]]] = {
    "finance": [("list_invoices", "erp://invoices", "read", "confidential", False),
                ("pay_invoice", "bank://payments", "write", "confidential", True),
                ("wire_transfer", "bank://wires", "send", "restricted", True),
                ("reconcile_ledger", "erp://ledger", "read", "confidential", False),
                ("generate_report", "erp://reports", "write", "internal", False)],
    "procurement": [("search_vendors", "erp://vendors", "read", "internal", False),
                    ("create_purchase_order", "erp://purchase_orders", "write", "confidential", True),
                    ("cancel_purchase_order", "erp://purchase_orders", "write", "confidential", False),
                    ("check_stock", "erp://inventory", "read", "internal", False)],
    "support": [("lookup_customer", "crm://customers", "read", "pii", False),
                ("issue_refund", "bank://refunds", "write", "confidential", True),
                ("send_email", "mail://outbound", "send", "pii", False),
                ("update_ticket", "crm://tickets", "write", "internal", False)],
    "hr": [("read_employee_record", "hris://employees", "read", "pii", False),
           ("update_salary", "hris://payroll", "write", "restricted", True),
           ("schedule_interview", "hris://calendar", "write", "internal", False)],
    "it": [("list_accounts", "iam://accounts", "read", "internal", False),
           ("disable_account", "iam://accounts", "write", "internal", False),
           ("rotate_key", "kms://keys", "write", "restricted", False),
           ("delete_backups", "s3://backups", "delete", "restricted", False)],
    "sales": [("search_crm", "crm://accounts", "read", "confidential", False),
              ("update_opportunity", "crm://opportunities", "write", "internal", False),
              ("send_quote", "mail://outbound", "send", "confidential", True)],
    "legal": [("search_contracts", "dms://contracts", "read", "confidential", False),
              ("redline_contract", "dms://contracts", "write", "confidential", False)],
    "data": [("run_query", "dwh://warehouse", "read", "confidential", False),
             ("export_dataset", "dwh://exports", "write", "restricted", False)],
}
MODELS = ["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "claude-3-5-haiku-20241022", "gpt-4.1-mini", "gpt-4o",
          "claude-sonnet-4-20250514", "gemini-2.0-flash"]
APPROVERS = [(f"approver{i:02d}@acme.example", role) for i, role in
             enumerate(["finance-controller", "treasury", "procurement-manager", "hr-partner", "security-oncall",
                        "team-lead"] * 2)]
KIND_NAMES = ["root_orchestrator", "chat_orchestrator", "delegate", "root", "chat", "tool", "chat_final"]
ROOT_O, CHAT_O, DELEGATE, ROOT, CHAT, TOOL, CHAT_END = range(7)
# Typed columns this generator adds when the store's schema lacks them: proposed for the collector
# (docs/analytics.md, "Proposed schema"), used by the decision chain when present.
PROPOSED_COLUMNS = {"link_trace_ids": "VARCHAR[]", "trace_key": "UBIGINT"}
_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")


@dataclass(frozen=True)
class FleetSpec:
    spans: int = 10_000_000
    agents: int = 40
    days: int = 30
    end: str = "2026-11-01"  # exclusive, UTC midnight
    seed: int = 42
    proposed_columns: bool = True  # add the proposed typed link_trace_ids and trace_key (docs/analytics.md)

    @property
    def end_time(self) -> datetime:
        return datetime.fromisoformat(self.end).replace(tzinfo=UTC)

    @property
    def start_time(self) -> datetime:
        return self.end_time - timedelta(days=self.days)


@dataclass(frozen=True)
class FleetAgent:
    id: str
    role: str
    model: str
    weight: float
    registered: bool = True

    @property
    def orchestrator(self) -> bool:
        return self.role == "orchestrator"


def build_fleet(spec: FleetSpec) -> list[FleetAgent]:
    rng = np.random.default_rng(spec.seed)
    roles = sorted(ROLES)
    orchestrators = max(1, spec.agents // 10)
    agents = [FleetAgent(f"ops-orchestrator-{i + 1:02d}", "orchestrator", "gpt-4o", 1.0) for i in range(orchestrators)]
    for i in range(spec.agents - orchestrators):
        role = roles[i % len(roles)]
        agents.append(FleetAgent(f"{role}-agent-{i // len(roles) + 1:02d}", role, MODELS[int(rng.integers(len(MODELS)))],
                                 float(rng.lognormal(0, 0.5)), registered=i not in (5, 11)))
    return agents


def fleet_registry(spec: FleetSpec) -> Registry:
    """The registry of the generated fleet: two specialists are missing (shadow agents)."""
    agents = {}
    for agent in build_fleet(spec):
        if not agent.registered:
            continue
        tools = ("delegate",) if agent.orchestrator else tuple(t[0] for t in ROLES[agent.role])
        resources = () if agent.orchestrator else tuple(sorted({t[1] for t in ROLES[agent.role]}))
        operations = () if agent.orchestrator else tuple(sorted({t[2] for t in ROLES[agent.role]}))
        envelope = Envelope(per_task=0.40 if agent.orchestrator else 0.08, per_hour=40.0, per_day=600.0)
        agents[agent.id] = AgentEntry(id=agent.id, name=agent.id.replace("-", " ").title(),
                                      owner=f"{agent.role}-lead@acme.example", sponsor="coo@acme.example",
                                      purpose=f"{agent.role} work", risk_tier="high", status="active",
                                      last_review=date.fromisoformat(spec.end) - timedelta(days=40),
                                      tools=tools, resources=resources, operations=operations, envelope=envelope)
    return Registry(agents, f"fleetgen-{spec.seed}", "<fleetgen>")


def generate(path: str | Path, spec: FleetSpec, *, progress: bool = False) -> dict[str, Any]:
    """Write ``spec.spans`` spans (about) into a new DuckDB file; returns figures."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: generate into a new file")
    started = time.perf_counter()
    con = duckdb.connect(str(path), config={"memory_limit": "3GB"})
    migrate(con)
    existing = {c[0] for c in SPAN_COLUMNS}
    for column, sql_type in PROPOSED_COLUMNS.items():
        if spec.proposed_columns and column not in existing:
            con.execute(f"ALTER TABLE spans ADD COLUMN {column} {sql_type}")
    con.execute("CREATE TABLE fleetgen (spec VARCHAR, generated_at TIMESTAMP)")
    con.execute("INSERT INTO fleetgen VALUES (?, now())", [json.dumps(asdict(spec))])
    columns = [row[1] for row in con.execute("PRAGMA table_info('spans')").fetchall()]
    generator = _Generator(spec)
    con.register("_resources", pa.table({"idx": list(range(len(generator.resource_json))),
                                         "json": generator.resource_json}))
    bar = _progress(spec.spans) if progress else None
    chunks = max(1, spec.days)
    chunk_ns = (spec.days * 86_400 * 10**9) // chunks
    tables: queue.Queue = queue.Queue(maxsize=1)

    def produce() -> None:  # the next day is generated while DuckDB appends the last one
        written = 0
        try:
            for chunk in range(chunks):
                low = generator.t0 + chunk * chunk_ns
                table = generator.chunk(low, low + chunk_ns, target=spec.spans * (chunk + 1) // chunks - written,
                                        first_seq=written, final=chunk == chunks - 1)
                written += table.num_rows
                tables.put(table)
        except BaseException as exc:  # noqa: BLE001 - handed to the writing thread
            tables.put(exc)
        tables.put(None)

    threading.Thread(target=produce, daemon=True).start()
    written = 0
    # One transaction for the whole file, so that no commit rewrites a partial row group; DuckDB
    # builds each record's JSON on all its threads, several times faster than Python would.
    con.execute("BEGIN")
    while (table := tables.get()) is not None:
        if isinstance(table, BaseException):
            raise table
        select = ", ".join(_RECORD_SQL if name == "record" else f"b.{name}" if name in table.column_names
                           else f"NULL AS {name}" for name in columns)
        con.register("_day", table)
        con.execute(f"INSERT INTO spans SELECT {select} FROM _day b JOIN _resources r ON r.idx = b.resource_idx")
        con.unregister("_day")
        written += table.num_rows
        if bar is not None:
            bar.update(table.num_rows)
    con.execute("COMMIT")
    con.execute("CHECKPOINT")
    con.close()
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - started
    return {"db": str(path), "spans": written, "agents": spec.agents, "days": spec.days,
            "generate_seconds": round(seconds, 1), "spans_per_second": int(written / seconds),
            "db_megabytes": round(path.stat().st_size / 2**20)}


class _Generator:
    """Column-wise generation of tasks: one chunk of time at a time, in start-time order."""

    def __init__(self, spec: FleetSpec):
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed + 1)
        self.agents = build_fleet(spec)
        self.t0 = int(spec.start_time.timestamp()) * 10**9
        self.pending: dict[str, np.ndarray] | None = None  # late approvals, written when they happen
        self.orch = np.array([i for i, a in enumerate(self.agents) if a.orchestrator])
        special = np.array([i for i, a in enumerate(self.agents) if not a.orchestrator])
        self.special = special
        weights = np.array([self.agents[i].weight for i in special])
        self.special_p = weights / weights.sum()
        self.catalog = [(role, *tool) for role in sorted(ROLES) for tool in ROLES[role]]
        role_tools = {role: [i for i, t in enumerate(self.catalog) if t[0] == role] for role in ROLES}
        width = max(len(v) for v in role_tools.values())
        self.agent_tools = np.zeros((len(self.agents), width), dtype=np.int64)
        self.agent_ntools = np.ones(len(self.agents), dtype=np.int64)
        for i, agent in enumerate(self.agents):
            if not agent.orchestrator:
                tools = role_tools[agent.role]
                self.agent_tools[i, : len(tools)] = tools
                self.agent_ntools[i] = len(tools)
        prices = load_prices()
        self.model_price = np.array([[prices.price(a.model).input_per_mtok, prices.price(a.model).output_per_mtok]
                                     for a in self.agents]) / 1e6
        self.resource_json = [_resource_json(a) for a in self.agents] + [_resource_json(None)]
        # Cost spikes: one specialist spends three times its usual tokens on two days.
        self.spike_agent = int(special[0])
        self.spike_days = {spec.days - 3, spec.days - 10}
        self.spans_per_task = 3 + 5 + 0.3 * 3

    def chunk(self, low: int, high: int, *, target: int, first_seq: int, final: bool) -> pa.Table:
        rng = self.rng
        tasks = max(1, int(target / (self.spans_per_task + 0.008)))
        starts = np.sort(low + _diurnal(rng, tasks, high - low))
        cols = self._tasks(starts)
        late = self._late_approvals(cols)
        if late is not None:
            self.pending = late if self.pending is None else {k: np.concatenate([self.pending[k], late[k]])
                                                              for k in late}
        parts = [cols]
        if self.pending is not None:
            due = np.ones(len(self.pending["start_time"]), bool) if final else self.pending["start_time"] < high
            parts.append({k: v[due] for k, v in self.pending.items()})
            self.pending = {k: v[~due] for k, v in self.pending.items()}
        merged = {k: np.concatenate([p[k] for p in parts]) for k in cols}
        order = np.argsort(merged["start_time"], kind="stable")
        merged = {k: v[order] for k, v in merged.items()}
        merged["seq"] = np.arange(first_seq, first_seq + len(order), dtype=np.int64)
        return _to_arrow(merged, self)

    def _tasks(self, starts: np.ndarray) -> dict[str, np.ndarray]:
        rng, T = self.rng, len(starts)
        spec_agent = self.special[rng.choice(len(self.special), T, p=self.special_p)]
        orch_agent = self.orch[rng.integers(0, len(self.orch), T)]
        orchestrated = rng.random(T) < 0.3
        n_tools = rng.integers(2, 9, T)
        count = np.where(orchestrated, 6, 3) + n_tools
        offsets = np.cumsum(count) - count
        S = int(count.sum())
        task = np.repeat(np.arange(T), count)
        pos = np.arange(S) - offsets[task]
        o, n = orchestrated[task], n_tools[task]
        spec_root = np.where(o, 3, 0)
        rel = pos - spec_root
        kind = np.where(pos < spec_root, pos, np.where(rel == 0, ROOT, np.where(rel == 1, CHAT,
                        np.where(rel < 2 + n, TOOL, CHAT_END))))
        parent_pos = np.select([kind == ROOT_O, kind <= DELEGATE, kind == ROOT], [-1, 0, np.where(o, 2, -1)],
                               spec_root)
        agent = np.where(kind < ROOT, orch_agent[task], spec_agent[task])
        anonymous = (rng.random(T) < 0.002)[task]
        trace_ids = _hex(rng, T, 16)
        fragmented = (orchestrated & (rng.random(T) < 0.02))[task] & (kind >= ROOT)
        trace = trace_ids[task]
        trace = np.where(fragmented, _hex(rng, T, 16)[task], trace)
        parent_pos = np.where(fragmented & (kind == ROOT), -1, parent_pos)
        span_id = _hex(rng, S, 8)
        parent = np.where(parent_pos >= 0, span_id[np.maximum(offsets[task] + parent_pos, 0)], None)
        orphan = (kind == TOOL) & (rng.random(S) < 0.003)
        parent = np.where(orphan, _hex(rng, S, 8), parent)
        step = 1_200_000_000
        start = starts[task] + pos * step + rng.integers(0, 50_000_000, S)
        task_end = starts + count * step + 300_000_000
        chat = np.isin(kind, (CHAT_O, CHAT, CHAT_END))
        dur = np.where(chat, rng.integers(300, 1100, S), rng.integers(20, 600, S)) * 1_000_000
        end = np.where(np.isin(kind, (ROOT_O, ROOT)), task_end[task], start + dur)
        end = np.where(kind == DELEGATE, task_end[task] - 10_000_000, end)

        tool_slot = rng.integers(0, 1 << 30, S) % self.agent_ntools[agent]
        tool = np.where(kind == TOOL, self.agent_tools[agent, tool_slot], -1)
        is_tool = kind == TOOL
        cat = self.catalog
        tool_name = np.where(is_tool, np.array([c[1] for c in cat] + [None], dtype=object)[tool], None)
        tool_name = np.where(kind == DELEGATE, "delegate", tool_name)
        calls = is_tool | (kind == DELEGATE)
        resource = np.where(is_tool, np.array([c[2] for c in cat] + [None], dtype=object)[tool], None)
        operation = np.where(is_tool, np.array([c[3] for c in cat] + [None], dtype=object)[tool], None)
        classification = np.where(is_tool, np.array([c[4] for c in cat] + [None], dtype=object)[tool], None)
        money = np.where(is_tool, np.array([c[5] for c in cat] + [False])[tool], False)

        r = rng.random(S)
        effect = np.where(calls, np.select([r < 0.88, r < 0.92], ["allow", "deny"], "escalate"), None)
        effect = np.where(kind == DELEGATE, "allow", effect)
        unchecked = is_tool & (rng.random(S) < 0.01)  # no policy check recorded
        effect = np.where(unchecked, None, effect)
        r2 = rng.random(S)
        tier = np.select([effect == "escalate", effect == "deny", effect == "allow"],
                         [np.where(r2 < 0.9, 3, 4), 1, np.where(r2 < 0.3, 2, 1)], 0)
        boundary = np.select([(effect == "deny") & (r2 < 0.25), (effect == "deny") & (r2 < 0.5),
                              effect == "escalate"], ["rate_limit", "scope", "tier"], None)
        rule = np.select([effect == "allow", effect == "deny", effect == "escalate"],
                         ["within-scope", np.where(boundary == "rate_limit", "rate-limit", "scope-not-granted"),
                          np.where(tier == 4, "halt-over-authority", "approval-required")], None)
        escalated = effect == "escalate"
        r3 = rng.random(S)
        decision = np.where(escalated & (tier == 3), np.select([r3 < 0.7, r3 < 0.8, r3 < 0.9],
                                                               ["approved", "denied", "auto_denied"], "late"), None)
        decision = np.where(escalated & (tier == 4), "pending", decision)
        approver_i = rng.integers(0, len(APPROVERS), S)
        human = np.isin(decision, ("approved", "denied"))
        decided_ns = start + np.where(decision == "auto_denied", 900, rng.integers(10, 600, S)) * 10**9
        failed = is_tool & (rng.random(S) < 0.02)

        day = (start - self.t0) // (86_400 * 10**9)
        spike = np.where(chat & (agent == self.spike_agent) & np.isin(day, list(self.spike_days)), 3, 1)
        tokens_in = rng.lognormal(7.2, 0.6, S).astype(np.int64) * spike
        tokens_out = rng.lognormal(5.5, 0.6, S).astype(np.int64) * spike
        price = self.model_price[agent]
        chat_cost = tokens_in * price[:, 0] + tokens_out * price[:, 1]
        tokens_in, tokens_out = np.where(chat, tokens_in, None), np.where(chat, tokens_out, None)
        reported = chat & (rng.random(S) < 0.8)
        tool_cost = is_tool & (rng.random(S) < 0.3) & ~np.isin(effect, ("deny",))
        cost = np.where(reported, np.round(chat_cost, 6), np.where(tool_cost, np.round(rng.uniform(5e-4, 5e-3, S), 6),
                                                                    np.nan))

        conversation = np.array([f"conv-{h}" for h in _hex(rng, T, 6)], dtype=object)[task]
        users = np.array([f"user{i:03d}@acme.example" for i in range(200)], dtype=object)
        acting_for = users[rng.integers(0, 200, T)][task]
        delegated = o & (kind >= ROOT)
        orch_ids = np.array([a.id for a in self.agents], dtype=object)
        cols = {
            "trace_id": trace, "span_id": span_id, "parent_span_id": parent, "kind_code": kind,
            "start_time": start, "end_time": end, "agent": np.where(anonymous, -1, agent),
            "tool_name": tool_name, "tool_call_id": np.where(calls, np.char.add("call_", _hex(rng, S, 8).astype(str)),
                                                             None).astype(object),
            "conversation_id": conversation, "model": np.where(chat, np.array([a.model for a in self.agents],
                                                                              dtype=object)[agent], None),
            "input_tokens": tokens_in, "output_tokens": tokens_out, "cost_amount": cost,
            "policy_decision_id": np.where(effect != None, _hex(rng, S, 16), None),  # noqa: E711
            "policy_effect": effect, "policy_rule_id": rule, "policy_tier": np.where(effect != None, tier, None),  # noqa: E711
            "policy_boundary": boundary,
            "escalation_id": np.where(escalated, np.char.add("esc-", _hex(rng, S, 6).astype(str)), None).astype(object),
            "escalation_outcome": np.where(np.isin(decision, ("late",)), "pending", decision),
            "escalation_sla_seconds": np.where(escalated, np.where(tier == 4, 3600.0, 900.0), np.nan),
            "approver_id": np.where(human, np.array([a[0] for a in APPROVERS], dtype=object)[approver_i], None),
            "approver_role": np.where(human, np.array([a[1] for a in APPROVERS], dtype=object)[approver_i], None),
            "decided_at": np.where(np.isin(decision, ("approved", "denied", "auto_denied")), decided_ns, -1),
            "data_resource": resource, "data_operation": operation, "data_classification": classification,
            "data_record_count": np.where(is_tool, np.maximum(1, rng.lognormal(2, 2, S)).astype(np.int64), None),
            "acting_for": acting_for,
            "delegating_agent": np.where(delegated, orch_ids[orch_agent[task]], None),
            "delegation_depth": np.where(delegated, 1, 0),
            "arguments_digest": np.where(calls, _hex(rng, S, 32), None),
            "action_amount": np.where(money, np.round(rng.lognormal(6, 1.5, S), 2), np.nan),
            "action_reversible": np.where(is_tool, operation != "delete", None),
            "failed": failed, "duplicate_of": np.full(S, -1), "links": np.full(S, None, dtype=object),
        }
        cols["decision_late"] = decision == "late"
        return _with_duplicates(rng, cols, chat)

    def _late_approvals(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        late = np.nonzero(cols["decision_late"])[0]
        if not len(late):
            return None
        rng, n = self.rng, len(late)
        start = cols["start_time"][late] + rng.integers(15 * 60, 3 * 3600, n) * 10**9
        outcome = np.where(rng.random(n) < 0.8, "approved", "denied")
        approver_i = rng.integers(0, len(APPROVERS), n)
        row = {k: np.full(n, None, dtype=object) if v.dtype == object else np.zeros(n, dtype=v.dtype)
               for k, v in cols.items()}
        row.update({
            "trace_id": _hex(rng, n, 16), "span_id": _hex(rng, n, 8), "kind_code": np.full(n, -1),
            "start_time": start, "end_time": start + 5_000_000, "agent": cols["agent"][late],
            "escalation_id": cols["escalation_id"][late], "escalation_outcome": outcome,
            "approver_id": np.array([a[0] for a in APPROVERS], dtype=object)[approver_i],
            "approver_role": np.array([a[1] for a in APPROVERS], dtype=object)[approver_i],
            "decided_at": start, "cost_amount": np.full(n, np.nan), "escalation_sla_seconds": np.full(n, np.nan),
            "action_amount": np.full(n, np.nan), "duplicate_of": np.full(n, -1), "policy_tier": np.full(n, None),
            "delegation_depth": np.zeros(n, dtype=np.int64),
            "links": _pairs(cols["trace_id"][late], cols["span_id"][late]),
        })
        return row


def _pairs(traces: np.ndarray, spans: np.ndarray) -> np.ndarray:
    out = np.empty(len(traces), dtype=object)
    for i, pair in enumerate(zip(traces, spans, strict=True)):
        out[i] = pair
    return out


def _with_duplicates(rng: np.random.Generator, cols: dict[str, np.ndarray], chat: np.ndarray) -> dict[str, np.ndarray]:
    """A second instrumentation (OpenInference) records 0.5% of the model calls again."""
    dup = np.nonzero(chat & (rng.random(len(chat)) < 0.005))[0]
    if not len(dup):
        return cols
    extra = {k: v[dup].copy() for k, v in cols.items()}
    extra["span_id"] = _hex(rng, len(dup), 8)
    extra["duplicate_of"] = dup
    extra["cost_amount"] = np.full(len(dup), np.nan)
    return {k: np.concatenate([cols[k], extra[k]]) for k in cols}


# --- Arrow and JSON ---------------------------------------------------------------------------------------

def _to_arrow(c: dict[str, np.ndarray], gen: _Generator) -> pa.Table:
    n = len(c["seq"])
    agents = gen.agents
    agent = c["agent"]
    known = agent >= 0
    ids = np.array([a.id for a in agents] + [None], dtype=object)
    names = np.array([a.id.replace("-", " ").title() for a in agents] + [None], dtype=object)
    owners = np.array([f"{a.role}-lead@acme.example" for a in agents] + [None], dtype=object)
    agent_id, agent_name, owner = ids[agent], names[agent], owners[agent]
    credential = np.where(known, np.char.add("key-", ids[agent].astype(str)), None)
    kind = c["kind_code"]
    approval = kind == -1
    is_dup = c["duplicate_of"] >= 0
    chat = np.isin(kind, (CHAT_O, CHAT, CHAT_END))
    operation = np.select([approval, chat, np.isin(kind, (TOOL, DELEGATE))],
                          ["govtrace.approval", "chat", "execute_tool"], "invoke_agent")
    name = np.where(operation == "execute_tool", np.char.add("execute_tool ", c["tool_name"].astype(str)),
                    np.where(chat, np.char.add("chat ", c["model"].astype(str)),
                             np.where(approval, "govtrace.approval",
                                      np.char.add("invoke_agent ", np.where(known, agent_name, "Legacy Batch Runner")
                                                  .astype(str)))))
    status = np.where(c["failed"], "ERROR", "UNSET")
    error_type = np.where(c["failed"], "ToolTimeout", None)
    scope = np.where(is_dup, "openinference.instrumentation.openai", "govtrace.instrumentation")
    flavor = np.where(is_dup, "openinference", "govtrace")
    decided = np.where(c["decided_at"] > 0, c["decided_at"], 0).astype("datetime64[ns]")
    decided_text = np.where(c["decided_at"] > 0, np.datetime_as_string(decided, unit="us"), None)
    decided_text = np.where(decided_text != None, np.char.add(decided_text.astype(str), "+00:00"), None)  # noqa: E711
    start, end = c["start_time"].astype(np.int64), c["end_time"].astype(np.int64)
    cost = c["cost_amount"].astype(float)
    has_cost = ~np.isnan(cost)
    policy = c["policy_effect"] != None  # noqa: E711
    links = c["links"]
    columns: dict[str, pa.Array] = {
        "seq": pa.array(c["seq"]),
        "received_at": pa.array(end + 40_000_000, pa.timestamp("ns")),
        "trace_id": _str(c["trace_id"]), "span_id": _str(c["span_id"]), "parent_span_id": _str(c["parent_span_id"]),
        "name": _str(name), "kind": _str(np.where(chat, "CLIENT", "INTERNAL")),
        "start_time": pa.array(start, pa.timestamp("ns")), "end_time": pa.array(end, pa.timestamp("ns")),
        "duration_ms": pa.array((end - start) / 1e6), "status_code": _str(status),
        "status_message": _str(np.where(c["failed"], "tool did not answer", None)), "error_type": _str(error_type),
        "scope_name": _str(scope), "flavor": _str(flavor),
        "service_name": _str(np.where(known, agent_name, "legacy-batch-runner")),
        "agent_id": _str(agent_id), "agent_name": _str(agent_name), "agent_owner": _str(owner),
        "agent_credential": _str(credential), "operation": _str(operation), "tool_name": _str(c["tool_name"]),
        "tool_call_id": _str(c["tool_call_id"]), "conversation_id": _str(c["conversation_id"]),
        "model": _str(c["model"]), "input_tokens": _int(c["input_tokens"]), "output_tokens": _int(c["output_tokens"]),
        "cost_amount": pa.array(cost, mask=~has_cost), "cost_currency": _str(np.where(has_cost, "USD", None)),
        "cost_source": _str(np.where(has_cost, "reported", None)),
        "policy_decision_id": _str(c["policy_decision_id"]), "policy_effect": _str(c["policy_effect"]),
        "policy_id": _str(np.where(policy, "acme-fleet", None)), "policy_rule_id": _str(c["policy_rule_id"]),
        "policy_version": _str(np.where(policy, np.where(start < gen.t0 + 15 * 86_400 * 10**9, "sha256:5e0c1a",
                                                         "sha256:9b2f44"), None)),
        "policy_tier": _int(c["policy_tier"], pa.int32()), "policy_mode": _str(np.where(policy, "enforce", None)),
        "policy_boundary": _str(c["policy_boundary"]), "escalation_id": _str(c["escalation_id"]),
        "escalation_outcome": _str(c["escalation_outcome"]),
        "escalation_routed_to": _str(np.where((c["escalation_id"] != None) & ~approval, "role:team-lead", None)),  # noqa: E711
        "escalation_sla_seconds": _float(c["escalation_sla_seconds"]),
        "approver_id": _str(c["approver_id"]), "approver_role": _str(c["approver_role"]),
        "decided_at": _str(decided_text), "data_resource": _str(c["data_resource"]),
        "data_operation": _str(c["data_operation"]), "data_classification": _str(c["data_classification"]),
        "data_record_count": _int(c["data_record_count"]), "acting_for": _str(c["acting_for"]),
        "delegating_agent": _str(c["delegating_agent"]),
        "delegation_depth": _int(np.where(approval, None, c["delegation_depth"]), pa.int32()),
        "arguments_digest": _str(c["arguments_digest"]), "action_target": _str(c["data_resource"]),
        "action_amount": _float(c["action_amount"]), "action_reversible": pa.array(c["action_reversible"], pa.bool_()),
        "principal": pa.nulls(n, pa.string()), "identity_mismatch": pa.nulls(n, pa.bool_()),
        "link_trace_ids": pa.array([[x[0]] if x is not None else None for x in links], pa.list_(pa.string())),
        "trace_key": pa.array([int(t[:16], 16) for t in c["trace_id"]], pa.uint64()),
    }
    kind = c["kind_code"]
    columns["events_json"] = _str(np.where((kind == TOOL) & (c["policy_effect"] == "allow") & ~c["failed"],
                                           '[{"attributes":{},"name":"govtrace.action.executed","time_ns":0}]', "[]"))
    columns["links_json"] = _str(np.array(
        [f'[{{"attributes":{{}},"span_id":"{x[1]}","trace_id":"{x[0]}"}}]' if x is not None else "[]" for x in links],
        dtype=object))
    columns["resource_idx"] = pa.array(np.where(known, c["agent"], len(gen.agents)))
    return pa.table(columns)


# (attribute key, column): the record's attributes, in key order, as the collector would store them.
_ATTRIBUTES = sorted([
    ("error.type", "error_type"), ("gen_ai.agent.id", "agent_id"), ("gen_ai.agent.name", "agent_name"),
    ("gen_ai.conversation.id", "conversation_id"), ("gen_ai.operation.name", "operation"),
    ("gen_ai.request.model", "model"), ("gen_ai.tool.call.id", "tool_call_id"), ("gen_ai.tool.name", "tool_name"),
    ("gen_ai.usage.input_tokens", "input_tokens"), ("gen_ai.usage.output_tokens", "output_tokens"),
    ("govtrace.action.amount", "action_amount"), ("govtrace.action.arguments_digest", "arguments_digest"),
    ("govtrace.action.reversible", "action_reversible"), ("govtrace.action.target", "action_target"),
    ("govtrace.cost.amount", "cost_amount"), ("govtrace.cost.currency", "cost_currency"),
    ("govtrace.cost.source", "cost_source"), ("govtrace.data.classification", "data_classification"),
    ("govtrace.data.operation", "data_operation"), ("govtrace.data.record_count", "data_record_count"),
    ("govtrace.data.resource", "data_resource"), ("govtrace.delegation.acting_for", "acting_for"),
    ("govtrace.delegation.delegating_agent", "delegating_agent"), ("govtrace.delegation.depth", "delegation_depth"),
    ("govtrace.oversight.approver.id", "approver_id"), ("govtrace.oversight.approver.role", "approver_role"),
    ("govtrace.oversight.decided_at", "decided_at"), ("govtrace.oversight.escalation_id", "escalation_id"),
    ("govtrace.oversight.outcome", "escalation_outcome"), ("govtrace.oversight.routed_to", "escalation_routed_to"),
    ("govtrace.oversight.sla_seconds", "escalation_sla_seconds"), ("govtrace.policy.boundary", "policy_boundary"),
    ("govtrace.policy.decision_id", "policy_decision_id"), ("govtrace.policy.effect", "policy_effect"),
    ("govtrace.policy.id", "policy_id"), ("govtrace.policy.mode", "policy_mode"),
    ("govtrace.policy.rule_id", "policy_rule_id"), ("govtrace.policy.tier", "policy_tier"),
    ("govtrace.policy.version", "policy_version"),
])


def _record_sql() -> str:
    """The canonical record JSON of a generated row, as a DuckDB expression over ``b`` (the batch)
    and ``r`` (its resource): keys sorted, absent attributes left out, as the collector stores it."""
    attributes = []
    for key, column in _ATTRIBUTES:
        value = (f"'\"' || b.{column} || '\"'" if column in _TEXT else
                 f"CAST(b.{column} AS VARCHAR)")
        attributes.append(f"CASE WHEN b.{column} IS NOT NULL THEN '\"{key}\":' || {value} END")
    return f"""'{{"attributes":{{' || concat_ws(',', {', '.join(attributes)}) ||
      '}},"dropped":{{"attributes":0,"events":0,"links":0}},"end_ns":' || epoch_ns(b.end_time) ||
      ',"events":' || b.events_json || ',"flags":256,"ingest":{{"principal":null,"received_ns":' ||
      epoch_ns(b.received_at) || '}},"kind":"' || b.kind || '","links":' || b.links_json || ',"name":"' || b.name ||
      '","parent_span_id":' || coalesce('"' || b.parent_span_id || '"', 'null') || ',"resource":' || r.json ||
      ',"scope":{{"attributes":{{}},"name":"' || b.scope_name || '","version":""}},"span_id":"' || b.span_id ||
      '","start_ns":' || epoch_ns(b.start_time) || ',"status":{{"code":"' || b.status_code || '","message":"' ||
      coalesce(b.status_message, '') || '"}},"trace_id":"' || b.trace_id || '","trace_state":null}}' AS record"""


_TEXT = {"error_type", "agent_id", "agent_name", "conversation_id", "operation", "model", "tool_call_id", "tool_name",
         "arguments_digest", "action_target", "cost_currency", "cost_source", "data_classification", "data_operation",
         "data_resource", "acting_for", "delegating_agent", "approver_id", "approver_role", "decided_at",
         "escalation_id", "escalation_outcome", "escalation_routed_to", "policy_boundary", "policy_decision_id",
         "policy_effect", "policy_id", "policy_mode", "policy_rule_id", "policy_version"}
_RECORD_SQL = _record_sql()


def _resource_json(agent: FleetAgent | None) -> str:
    if agent is None:
        attrs = {"service.name": "legacy-batch-runner", "telemetry.sdk.language": "python"}
    else:
        name = agent.id.replace("-", " ").title()
        attrs = {"deployment.environment.name": "production", "gen_ai.agent.id": agent.id, "gen_ai.agent.name": name,
                 "govtrace.agent.credential": f"key-{agent.id}", "govtrace.agent.owner": f"{agent.role}-lead@acme.example",
                 "service.instance.id": f"{agent.id}-0", "service.name": name, "telemetry.sdk.language": "python",
                 "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.version": "1.39.0"}
    return json.dumps(attrs, sort_keys=True, separators=(",", ":"))


def _hex(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    return _HEX[raw].view(f"S{2 * nbytes}").ravel().astype(object).astype(str).astype(object)


def _diurnal(rng: np.random.Generator, n: int, span_ns: int) -> np.ndarray:
    """Offsets within a chunk, busier in working hours (by rejection against a daily cycle)."""
    out = rng.integers(0, span_ns, int(n * 1.6))
    hour = (out // 3_600_000_000_000) % 24
    keep = rng.random(len(out)) < (0.35 + 0.65 * np.exp(-((hour - 13) / 4.0) ** 2))
    picked = out[keep][:n]
    if len(picked) < n:
        picked = np.concatenate([picked, rng.integers(0, span_ns, n - len(picked))])
    return picked


def _str(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string(), from_pandas=True)


def _int(values: np.ndarray, type_: pa.DataType | None = None) -> pa.Array:
    return pa.array(values, type_ or pa.int64(), from_pandas=True)


def _float(values: np.ndarray) -> pa.Array:
    values = np.asarray(values, dtype=float)
    return pa.array(values, pa.float64(), mask=np.isnan(values))


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="span", unit_scale=True, desc="generating fleet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m govtrace.analytics.fleetgen", description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="new DuckDB file to write")
    parser.add_argument("--spans", type=int, default=FleetSpec.spans)
    parser.add_argument("--agents", type=int, default=FleetSpec.agents)
    parser.add_argument("--days", type=int, default=FleetSpec.days)
    parser.add_argument("--end", default=FleetSpec.end, help="end date, exclusive (default %(default)s)")
    parser.add_argument("--seed", type=int, default=FleetSpec.seed)
    parser.add_argument("--no-proposed-columns", action="store_true",
                        help="leave out the proposed link_trace_ids and trace_key columns (as the schema is today)")
    args = parser.parse_args(argv)
    spec = FleetSpec(args.spans, args.agents, args.days, args.end, args.seed, not args.no_proposed_columns)
    print(json.dumps(generate(args.db, spec, progress=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
