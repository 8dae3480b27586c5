"""The decision chain of one task: who delegated to whom, each tool call with its policy decision,
approvals (including those that arrived later in other traces) and outcome, in order.

A task rarely stays in one trace. Starting from the trace asked about, the chain follows, in rounds:
- escalation ids: the decision on an escalation, recorded later in its own trace;
- span links, both ways (a trace that links to this one, a trace this one links to);
- tool call ids: the callee's side of a tool call whose trace context was lost (an MCP server, a
  sub-agent behind a queue) still carries the caller's tool call id;
- conversation ids: a trace of the same conversation that ran while the task ran (their spans
  overlap in time) is a fragment of it whose context was lost at a boundary.
Related traces are searched from a day before the task to ``horizon_days`` after it.

It tolerates what real instrumentation produces: a span whose parent never arrived hangs from its
trace's root; the same operation recorded by two instrumentations is shown once; a span stored twice
is shown once. Each repair is named in ``coverage``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd

from govtrace.analytics.reader import Reader
from govtrace.analytics.readiness import count
from govtrace.analytics.views import store_columns

APPROVAL_OP = "govtrace.approval"
EXECUTED = "govtrace.action.executed"
BLOCKED = "govtrace.action.blocked"
FLAVOR_RANK = {"govtrace": 0, "otel_genai": 1, "openllmetry": 2, "openinference": 3, "mcp": 4}
MAX_ROUNDS = 3
LINKS_COLUMN = "link_trace_ids"  # proposed typed column; the JSON record is the fallback
_HEX_ID = re.compile(r"[0-9a-f]{32}")
KEY_COLUMN = "trace_key"  # proposed typed column; the trace id string is the fallback

STEP_COLUMNS = ["order", "depth", "start_time", "step", "agent_id", "name", "tool_name", "tool_call_id",
                "acting_for", "delegating_agent", "policy_effect", "policy_tier", "policy_rule_id", "escalation_id",
                "approval", "approver_id", "decided_at", "outcome", "span_id", "parent_span_id", "trace_id",
                "relation", "recorded_by"]


@dataclass
class Chain:
    trace_id: str
    steps: pd.DataFrame
    delegations: list[dict[str, Any]] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    coverage: list[str] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)  # every trace in the chain and why

    @property
    def evidence(self) -> list[str]:
        return self.steps["span_id"].tolist() if len(self.steps) else []

    def to_dict(self) -> dict[str, Any]:
        from govtrace.analytics.readiness import _records

        return {
            "trace_id": self.trace_id,
            "agents": self.agents,
            "traces": self.traces,
            "delegations": self.delegations,
            "coverage": self.coverage,
            "evidence_span_ids": self.evidence,
            "steps": _records(self.steps),
        }


def chain(reader: Reader, trace_id: str, *, horizon_days: float = 1.0) -> Chain:
    trace_id = trace_id.strip().lower()
    if not _HEX_ID.fullmatch(trace_id):
        return Chain(trace_id, pd.DataFrame(columns=STEP_COLUMNS),
                     coverage=[f"{trace_id!r} is not a trace id (32 hexadecimal digits)"])
    columns = store_columns(reader)
    seed = _rows(reader, f"SELECT *, 'task' AS relation FROM spans WHERE {_trace_match(columns, [trace_id])}")
    if not seed:
        return Chain(trace_id, pd.DataFrame(columns=STEP_COLUMNS), coverage=[f"no spans recorded for trace {trace_id}"])
    return _assemble(trace_id, _gather(reader, seed, horizon_days, columns))


# --- gathering the spans of the task ----------------------------------------------------------------

def _gather(reader: Reader, seed: list[dict], horizon_days: float, columns: frozenset[str]) -> list[dict]:
    start, end = _interval(seed)
    low, high = start - timedelta(days=1), end + timedelta(days=horizon_days)
    window = "start_time >= CAST($1 AS TIMESTAMP) AND start_time < CAST($2 AS TIMESTAMP)"
    rows = list(seed)
    searched: dict[str, set] = {"escalation": set(), "call": set(), "conversation": set(), "linked": set(),
                                "traces": set()}
    for _ in range(MAX_ROUNDS):
        keys = _keys(rows, searched)
        if not any(keys.values()):
            break
        known = {row["trace_id"] for row in rows}
        sql = _related_sql(keys, known, LINKS_COLUMN in columns)
        start, end = _interval(rows)
        params = [_ts(low), _ts(high)] + ([_ts(start), _ts(end)] if "$3" in sql else [])
        hits = _rows(reader, sql, params)  # ids only: each branch reads few columns
        for name, values in keys.items():
            searched[name] |= values
        if not hits:
            break
        why, decision_only = _classify(hits)
        # Then the rows: whole related traces, only the decision spans of an approval's own trace.
        wanted = {hit["span_id"] for hit in hits}
        # One branch per trace: a single equality reaches the scan as a filter, an IN list may not.
        found = _rows(reader, "\nUNION ALL\n".join(
            f"SELECT * FROM spans WHERE {window} AND {_trace_match(columns, [t])}" for t in sorted(why)),
            [_ts(low), _ts(high)])
        for row in found:
            if row["trace_id"] not in decision_only or row["span_id"] in wanted:
                rows.append({**row, "relation": why[row["trace_id"]]})
    return rows


def _interval(rows: list[dict]) -> tuple[Any, Any]:
    """When the task ran: its spans' time, leaving out approvals (they come later, by design)."""
    work = [r for r in rows if r["relation"] != "approval" and r["operation"] != APPROVAL_OP] or rows
    start = min(r["start_time"] for r in work)
    return start, max(max(r["end_time"] or r["start_time"], r["start_time"]) for r in work)


def _keys(rows: list[dict], searched: dict[str, set]) -> dict[str, set]:
    traces = {r["trace_id"] for r in rows}
    return {
        "escalation": {r["escalation_id"] for r in rows if r["escalation_id"]} - searched["escalation"],
        "call": {r["tool_call_id"] for r in rows if r["tool_call_id"] and r["operation"] == "execute_tool"}
        - searched["call"],
        "conversation": {r["conversation_id"] for r in rows if r["conversation_id"]} - searched["conversation"],
        "linked": {t for r in rows for t, _ in _links(r["record"])} - traces - searched["linked"],
        # inbound links to these; an approval's own trace is not followed further
        "traces": {r["trace_id"] for r in rows if r["relation"] != "approval"} - searched["traces"],
    }


RELATIONS = ("approval", "linked", "tool call id", "conversation", "escalation")  # label priority


def _classify(hits: list[dict]) -> tuple[dict[str, str], set[str]]:
    """Why each trace belongs to the task, and which traces are only an approval's own trace (of
    which the decision spans are enough). A decision recorded outside a tool call is an approval;
    a tool call found by its escalation id is the request an approval (the seed) decided."""
    why: dict[str, str] = {}
    decisions, others = set(), set()
    for hit in hits:
        relation = hit["relation"]
        if relation == "approval" and hit["operation"] == "execute_tool":
            relation = "escalation"
        (decisions if relation == "approval" else others).add(hit["trace_id"])
        current = why.get(hit["trace_id"])
        if current is None or RELATIONS.index(relation) < RELATIONS.index(current):
            why[hit["trace_id"]] = relation
    return why, decisions - others


def _related_sql(keys: dict[str, set], known: set[str], has_links: bool) -> str:
    """Span ids of other traces related to the task, each with why: one branch per relation, so
    that each filter reaches the scan of its own column. $1..$2 is the search horizon, $3..$4 the
    task's own time: a callee or a fragment of the same conversation runs while the task runs."""
    wide = "start_time >= CAST($1 AS TIMESTAMP) AND start_time < CAST($2 AS TIMESTAMP)"
    during = ("start_time >= CAST($3 AS TIMESTAMP) - INTERVAL 2 HOUR "
              "AND start_time <= CAST($4 AS TIMESTAMP) + INTERVAL 1 MINUTE")
    branches = []

    def add(relation: str, window: str, condition: str) -> None:
        branches.append(f"SELECT trace_id, span_id, '{relation}' AS relation, operation FROM spans WHERE {window} "
                        f"AND {condition} AND trace_id NOT IN ({_list(known)})")

    if keys["escalation"]:
        add("approval", wide, f"escalation_id IN ({_list(keys['escalation'])})")
    if keys["linked"]:
        add("linked", wide, f"trace_id IN ({_list(keys['linked'])})")
    if keys["traces"]:
        if has_links:
            add("linked", wide, f"list_has_any({LINKS_COLUMN}, [{_list(keys['traces'])}])")
        else:  # no typed column: read the links from the stored record (slow on large stores)
            add("linked", wide, f"list_has_any(json_extract_string(record, '$.links[*].trace_id'), "
                f"[{_list(keys['traces'])}])")
    if keys["call"]:
        add("tool call id", during, f"tool_call_id IN ({_list(keys['call'])}) AND operation = 'execute_tool'")
    if keys["conversation"]:
        add("conversation", during, f"conversation_id IN ({_list(keys['conversation'])}) "
            "AND coalesce(end_time, start_time) >= CAST($3 AS TIMESTAMP) - INTERVAL 1 MINUTE")
    return "\nUNION ALL\n".join(branches)


def _trace_match(columns: frozenset[str], traces: list[str]) -> str:
    """A condition for these trace ids; with the proposed ``trace_key`` column (the id's first 8
    bytes as an integer) the store compares integers instead of 32-character strings."""
    ids = f"trace_id IN ({_list(traces)})"
    if KEY_COLUMN not in columns:
        return ids
    keys = sorted({trace_key(t) for t in traces})
    match = f"{KEY_COLUMN} = {keys[0]}" if len(keys) == 1 else f"{KEY_COLUMN} IN ({', '.join(map(str, keys))})"
    return f"{match} AND {ids}"


def trace_key(trace_id: str) -> int:
    """The proposed ``trace_key`` of a trace id: its first 8 bytes, big-endian, unsigned."""
    return int(trace_id[:16], 16)


# --- assembling the chain ---------------------------------------------------------------------------

def _assemble(trace_id: str, rows: list[dict]) -> Chain:
    coverage: list[str] = []
    rows, merged = _merge_duplicates(rows)
    if merged:
        coverage.append(f"the same operation recorded by a second instrumentation, shown once: {count(merged, 'span')}")
    for row in rows:
        row["links"], row["events"] = _links(row["record"]), _event_names(row["record"])
    by_id = {row["span_id"]: i for i, row in enumerate(rows)}
    anchors, orphans = _anchors(rows, by_id)
    depths = _depths(anchors)
    resolutions = _resolutions(rows)
    for i, row in enumerate(rows):
        row["depth"] = depths[i]
        row["parent_span_id"] = rows[anchors[i]]["span_id"] if anchors[i] is not None else row["parent_span_id"]
        row["step"] = _step_kind(row)
        decision = resolutions.get(row["escalation_id"]) if row["escalation_id"] else None
        row["outcome"] = _outcome(row, decision)
        if row["step"] != "approval":  # an approval step shows its own decision
            row["approval"], row["approver_id"], row["decided_at"] = (
                (decision["outcome"], decision["approver_id"], decision["decided_at"]) if decision else (None,) * 3)
        else:
            row["approval"] = row["escalation_outcome"]
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["start_time"], rows[i]["depth"], rows[i]["seq"]))
    steps = [rows[i] for i in order]
    for number, row in enumerate(steps, start=1):
        row["order"] = number

    traces: dict[str, dict[str, Any]] = {}
    for row in steps:
        traces.setdefault(row["trace_id"], {"trace_id": row["trace_id"], "relation": row["relation"], "spans": 0})
        traces[row["trace_id"]]["spans"] += 1
    for trace in traces.values():
        if trace["relation"] in ("conversation", "tool call id"):
            coverage.append(f"trace {trace['trace_id']} joined by {trace['relation']}: context was lost at a boundary")
    if orphans:
        coverage.append(f"parent never received (context lost at a boundary), hung from the trace's root: "
                        f"{count(orphans, 'span')}")
    tools = [row for row in steps if row["step"] == "tool call"]
    unchecked = sum(1 for row in tools if not row["policy_effect"])
    if unchecked:
        coverage.append(f"no policy check recorded: {count(unchecked, 'tool call')}")
    anonymous = sum(1 for row in steps if not row["agent_id"])
    if anonymous:
        coverage.append(f"no agent identity: {count(anonymous, 'span')}")
    open_items = sum(1 for row in tools if row["policy_effect"] == "escalate" and not row["approval"])
    if open_items:
        coverage.append(f"no recorded decision (still open): {count(open_items, 'escalation')}")
    agents = list(dict.fromkeys(row["agent_id"] for row in steps if row["agent_id"]))
    frame = pd.DataFrame(steps, columns=STEP_COLUMNS)
    return Chain(trace_id, frame, _delegations(steps, rows, anchors, by_id), agents, coverage, list(traces.values()))


def _merge_duplicates(rows: list[dict]) -> tuple[list[dict], int]:
    """Keep one span per operation recorded by several instrumentations (same rule as the
    ``canonical_spans`` view); children of a dropped span move to the kept one."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["operation"] == "execute_tool" and row["tool_call_id"]:
            key = ("tool", row["tool_call_id"])
        elif row["input_tokens"] is not None and row["output_tokens"] is not None:
            key = ("usage", row["input_tokens"], row["output_tokens"])
        else:
            key = ("span", row["span_id"])
        groups.setdefault((row["trace_id"], key), []).append(row)
    kept, replaced = [], {}
    for group in groups.values():
        def rank(row: dict) -> tuple[int, str]:
            return FLAVOR_RANK.get(row["flavor"], 5), row["scope_name"] or ""

        best = min(rank(row) for row in group)
        winners = [row for row in group if rank(row) == best]
        scopes = len({row["scope_name"] or "" for row in group})
        for row in group:
            if rank(row) != best:
                replaced[row["span_id"]] = winners[0]["span_id"]
                if winners[0]["cost_amount"] is None and row["cost_amount"] is not None:
                    winners[0]["cost_amount"] = row["cost_amount"]
        for row in winners:
            kept.append({**row, "recorded_by": scopes})
    for row in kept:
        row["parent_span_id"] = replaced.get(row["parent_span_id"], row["parent_span_id"])
    kept.sort(key=lambda row: row["seq"])
    return kept, len(replaced)


def _anchors(rows: list[dict], by_id: dict[str, int]) -> tuple[list[int | None], int]:
    """The span each span hangs from: its parent, else (across traces) the request it decides,
    the span it links to, the caller of its tool call, or the task of its conversation it began in."""
    requests: dict[str, int] = {}
    callers: dict[str, int] = {}
    roots: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row["escalation_id"] and row["operation"] != APPROVAL_OP:
            requests.setdefault(row["escalation_id"], i)
        if row["operation"] == "execute_tool" and row["tool_call_id"] and row["relation"] == "task":
            callers[row["tool_call_id"]] = i
        if not row["parent_span_id"]:
            roots.setdefault(row["trace_id"], i)
    anchors: list[int | None] = []
    orphans = 0
    for i, row in enumerate(rows):
        parent = row["parent_span_id"]
        if parent and parent in by_id:
            anchors.append(by_id[parent])
            continue
        anchor = None
        if row["escalation_id"] and requests.get(row["escalation_id"], i) != i:
            anchor = requests[row["escalation_id"]]
        for _, linked_span in row["links"]:
            if anchor is None and by_id.get(linked_span, i) != i:
                anchor = by_id[linked_span]
        call = row["tool_call_id"]
        if anchor is None and row["relation"] != "task" and call and callers.get(call, i) != i:
            anchor = callers[call]
        if anchor is None and not parent:
            anchor = _enclosing_call(rows, i)
        if anchor is None and parent:
            orphans += 1
            root = roots.get(row["trace_id"])
            anchor = root if root != i else None
        anchors.append(anchor)
    return anchors, orphans


def _enclosing_call(rows: list[dict], i: int) -> int | None:
    """For the root of a trace that lost its context: the outermost span of another trace of the
    same conversation (a conversation id recorded anywhere in each trace) running when it began.
    Which call spawned it is unknowable; that it belongs to that task is what the data says."""
    conversations: dict[str, set] = {}
    for row in rows:
        if row["conversation_id"]:
            conversations.setdefault(row["trace_id"], set()).add(row["conversation_id"])
    mine = conversations.get(rows[i]["trace_id"], set())
    start, best = rows[i]["start_time"], None
    for j, row in enumerate(rows):
        if (row["trace_id"] == rows[i]["trace_id"] or row["relation"] == "approval"
                or not mine & conversations.get(row["trace_id"], set())):
            continue
        end = row["end_time"] or row["start_time"]
        if row["start_time"] <= start <= end and (best is None or row["start_time"] < rows[best]["start_time"]):
            best = j
    return best


def _depths(anchors: list[int | None]) -> list[int]:
    depths: list[int | None] = [None] * len(anchors)
    for i in range(len(anchors)):
        path, node = [], i
        while node is not None and depths[node] is None and node not in path:
            path.append(node)
            node = anchors[node]
        base = depths[node] + 1 if node is not None and depths[node] is not None else 0
        for offset, member in enumerate(reversed(path)):
            depths[member] = base + offset
    return [d or 0 for d in depths]


def _resolutions(rows: list[dict]) -> dict[str, dict[str, Any]]:
    """The latest decision recorded on each escalation, wherever it is in the chain."""
    out: dict[str, dict[str, Any]] = {}
    decided = [r for r in rows if r["escalation_id"] and r["escalation_outcome"] not in (None, "pending")]
    for row in sorted(decided, key=lambda r: (r["start_time"], r["seq"])):
        out[row["escalation_id"]] = {"outcome": row["escalation_outcome"], "approver_id": row["approver_id"],
                                     "decided_at": row["decided_at"], "span_id": row["span_id"]}
    return out


def _delegations(steps: list[dict], rows: list[dict], anchors: list[int | None],
                 by_id: dict[str, int]) -> list[dict[str, Any]]:
    """Who handed the task to whom: recorded delegation attributes, else inferred from a task span
    of one agent hanging under a span of another; the human principal opens the chain."""
    out, seen = [], set()
    for step in steps:
        if step["step"] != "task":
            continue
        i = by_id[step["span_id"]]
        caller, j = None, anchors[i]
        while j is not None and caller is None:
            if rows[j]["agent_id"] and rows[j]["agent_id"] != step["agent_id"]:
                caller = rows[j]["agent_id"]
            j = anchors[j]
        source, inferred = step["delegating_agent"] or caller, not step["delegating_agent"]
        if source is None:
            if not step["acting_for"]:
                continue
            source, inferred = step["acting_for"], False
        key = (source, step["agent_id"], step["trace_id"])
        if key in seen:
            continue
        seen.add(key)
        out.append({"from": source, "to": step["agent_id"], "acting_for": step["acting_for"],
                    "depth": step["delegation_depth"], "span_id": step["span_id"], "trace_id": step["trace_id"],
                    "inferred": inferred})
    return out


def _step_kind(row: dict[str, Any]) -> str:
    if row["relation"] == "approval" or row["operation"] == APPROVAL_OP:
        return "approval"
    return {"invoke_agent": "task", "execute_tool": "tool call", "chat": "model call"}.get(row["operation"] or "",
                                                                                           "span")


def _outcome(row: dict[str, Any], decision: dict[str, Any] | None) -> str:
    effect, events = row["policy_effect"], row["events"]
    failed = row["status_code"] == "ERROR"
    error = f"error: {row['error_type'] or '_OTHER'}"
    if row["step"] == "approval":
        who = f" by {row['approver_id']}" if row["approver_id"] else ""
        return f"{row['escalation_outcome'] or 'decision'}{who}"
    if row["policy_mode"] == "log_only" and effect in ("deny", "escalate"):
        return error if failed else f"ran (log-only policy would {effect})"
    if effect == "deny":
        return "denied by policy"
    outcome = decision["outcome"] if decision else None
    if outcome in ("denied", "expired", "auto_denied"):
        return f"not executed ({outcome})"
    if effect == "escalate" and outcome is None:
        return "halted (tier 4), awaiting a human" if (row["policy_tier"] or 0) >= 4 else "awaiting approval"
    if failed:
        return error
    if BLOCKED in events:
        return "blocked"
    if outcome == "approved":
        if EXECUTED in events:
            return "executed after approval"
        later = decision["span_id"] != row["span_id"]
        return "approved later; execution not recorded" if later else "approved"
    return "ok"


# --- small helpers -----------------------------------------------------------------------------------

def _links(record: Any) -> list[tuple[str, str]]:
    if not isinstance(record, str) or '"links":[]' in record:
        return []
    try:
        return [(link["trace_id"], link["span_id"]) for link in json.loads(record).get("links") or []]
    except (ValueError, KeyError, TypeError):
        return []


def _event_names(record: Any) -> tuple[str, ...]:
    if not isinstance(record, str) or '"events":[]' in record:
        return ()
    try:
        return tuple(e.get("name") for e in json.loads(record).get("events") or [])
    except (ValueError, TypeError):
        return ()


def _rows(reader: Reader, sql: str, params: list[Any] | None = None) -> list[dict]:
    return reader.arrow(sql, params).to_pylist()


def _list(values: Any) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in sorted(values))


def _ts(moment: Any) -> str:
    return pd.Timestamp(moment).isoformat(sep=" ")
