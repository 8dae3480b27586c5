"""The five readiness questions, each answered as rows plus a verdict, evidence and coverage.

For an agent (or the whole fleet) and a window [since, until):
1. actions: every tool call in order, with target, arguments digest, outcome, latency, task;
2. authorization: identity and credential, acting-for principal and delegation, the policy and
   rule and version that decided, the approver of escalated actions;
3. data: resource, operation, classification and record count of every data access;
4. cost: per task, hour and day, against the agent's envelope when one is known (``costs.py``);
5. boundaries: deny, escalate, rate-limit and envelope breaches and how each was resolved.

Every answer carries the span ids that prove it, a ``completeness`` count of what the telemetry
recorded, and ``coverage`` sentences that say plainly where a fact is missing ("unknown", "no
policy check recorded"), never a silent empty table. The SQL (with its parameters) is kept on the
answer so that evidence bundles can reproduce it; it is built from the documented views of
``views.sql``. Decisions recorded after the window (a late approval) are part of the answer: it
reports what is known when it is asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from govtrace.analytics.reader import Reader
from govtrace.analytics.views import DEDUP_COLUMNS, EARLIEST, Scope, compose

QUESTIONS = ("actions", "authorization", "data", "cost", "boundaries")
UNKNOWN = "unknown"
NO_POLICY = "no policy check recorded"
STATUS_ORDER = ("complete", "no_data", "gaps", "breach")  # the report's overall status is the worst

# The columns each question reads (besides those that find duplicates): see views.DEDUP_COLUMNS.
ACTION_COLUMNS = (*DEDUP_COLUMNS, "start_time", "agent_id", "tool_name", "action_target", "data_resource",
                  "data_operation", "arguments_digest", "policy_effect", "policy_tier", "policy_mode", "escalation_id",
                  "status_code", "error_type", "duration_ms")
AUTHORIZATION_COLUMNS = (*DEDUP_COLUMNS, "start_time", "agent_id", "agent_credential", "tool_name", "acting_for",
                         "delegating_agent", "delegation_depth", "policy_id", "policy_rule_id", "policy_version",
                         "policy_effect", "policy_tier", "policy_mode", "policy_decision_id", "escalation_id")
DATA_COLUMNS = (*DEDUP_COLUMNS, "start_time", "agent_id", "tool_name", "data_resource", "data_operation",
                "data_classification", "data_record_count")
BOUNDARY_COLUMNS = (*DEDUP_COLUMNS, "start_time", "agent_id", "tool_name", "policy_effect", "policy_boundary",
                    "policy_tier", "policy_id", "policy_rule_id", "policy_mode", "escalation_id", "escalation_sla_seconds")
TOOL_CALLS = "operation = 'execute_tool'"


@dataclass
class Answer:
    question: str
    agent: str | None
    since: datetime
    until: datetime
    rows: pd.DataFrame
    verdict: str  # a sentence
    status: str  # complete | gaps | no_data | breach
    evidence: list[str] = field(default_factory=list)  # span ids
    coverage: list[str] = field(default_factory=list)  # what the telemetry does not say
    sql: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    params: list[Any] = field(default_factory=list)
    completeness: dict[str, int] = field(default_factory=dict)  # counts behind the coverage sentences
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # further tables (per tier, per approver)

    def coverage_statement(self) -> str:
        """One line that says how much of the subject the telemetry covers."""
        if not self.completeness:
            return "coverage: nothing to measure"
        return "coverage: " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in self.completeness.items())

    def to_dict(self, max_rows: int | None = None) -> dict[str, Any]:
        rows = self.rows if max_rows is None else self.rows.head(max_rows)
        out = {
            "question": self.question,
            "agent": self.agent,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "status": self.status,
            "verdict": self.verdict,
            "coverage": self.coverage,
            "completeness": self.completeness,
            "evidence_span_ids": self.evidence,
            "rows": _records(rows),
            "sql": self.sql,
            "params": _jsonable(self.params),
        }
        if self.tables:
            out["tables"] = {name: _records(frame) for name, frame in self.tables.items()}
        if self.extra:
            out["extra"] = _jsonable(self.extra)
        return out


def window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    scope = Scope.of(None, since, until)
    return scope.since, scope.until


def status_of(coverage: list[str], rows: pd.DataFrame) -> str:
    if rows.empty:
        return "no_data"
    return "gaps" if coverage else "complete"


# --- 1. actions -----------------------------------------------------------------------------------

ACTIONS_QUERY = """
SELECT start_time, task, span_id, agent_id, tool_name, tool_call_id, target, arguments_digest, outcome,
       approval, latency_ms, policy_effect, recorded_by
FROM actions
ORDER BY start_time, span_id
"""

UNATTRIBUTED_QUERY = """
SELECT count(*) AS n FROM spans
WHERE start_time >= CAST($1 AS TIMESTAMP) AND start_time < CAST($2 AS TIMESTAMP)
  AND operation = 'execute_tool' AND agent_id IS NULL
"""


def actions(reader: Reader, agent: str | None = None, since: datetime | None = None,
            until: datetime | None = None) -> Answer:
    scope = Scope.of(agent, since, until)
    sql = compose(ACTIONS_QUERY, _sources(scope, ACTION_COLUMNS, TOOL_CALLS))
    rows = reader.query(sql, scope.params)
    coverage = []
    completeness = {"tool_calls": len(rows)}
    if len(rows):
        checked = int(rows["policy_effect"].notna().sum())
        completeness["with_policy_check"] = checked
        if checked < len(rows):
            coverage.append(f"{NO_POLICY}: {len(rows) - checked} of {count(len(rows), 'tool call')}")
        for column, label in (("target", "no target"), ("arguments_digest", "no arguments digest")):
            present = int(rows[column].notna().sum())
            completeness[f"with_{column}"] = present
            if present < len(rows):
                coverage.append(f"{label} ({UNKNOWN}): {len(rows) - present} of {count(len(rows), 'tool call')}")
    _note_unattributed(reader, scope, rows, coverage, completeness)
    _note_duplicates(rows, coverage, "tool call")
    rows["target"] = rows["target"].fillna(UNKNOWN)
    if rows.empty:
        verdict = f"No tool calls recorded for {_who(agent)} in the window."
    else:
        blocked = int(rows["outcome"].str.startswith("blocked").sum())
        errors = int(rows["outcome"].str.startswith("error").sum())
        pending = int((rows["outcome"] == "pending approval").sum())
        verdict = (f"{_who(agent).capitalize()} made {len(rows)} tool calls in {rows['task'].nunique()} tasks: "
                   f"{len(rows) - blocked - errors - pending} ok, {blocked} blocked, {errors} failed, "
                   f"{pending} awaiting approval.")
    return Answer("actions", agent, scope.since, scope.until, rows, verdict, status_of(coverage, rows),
                  rows["span_id"].tolist(), coverage, sql, params=scope.params, completeness=completeness)


# --- 2. authorization ---------------------------------------------------------------------------

AUTHORIZATION_QUERY = """
SELECT c.start_time, c.trace_id AS task, c.span_id, c.agent_id, c.agent_credential, c.tool_name,
       c.acting_for, c.delegating_agent, c.delegation_depth,
       concat_ws(' -> ', coalesce(c.acting_for, 'unknown principal'), c.delegating_agent, c.agent_id)
         AS delegation_chain,
       c.policy_id, c.policy_rule_id, c.policy_version, c.policy_effect, c.policy_tier, c.policy_mode,
       c.policy_decision_id, c.escalation_id,
       r.outcome AS approval_outcome, r.approver_id, r.approver_role, r.decided_time AS decided_at,
       r.resolution_span_id, c.recorded_by
FROM canonical_spans c
LEFT JOIN escalation_resolutions r ON r.escalation_id = c.escalation_id
WHERE c.operation = 'execute_tool'
ORDER BY c.start_time, c.span_id
"""


def authorization(reader: Reader, agent: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> Answer:
    scope = Scope.of(agent, since, until)
    sql = compose(AUTHORIZATION_QUERY, _sources(scope, AUTHORIZATION_COLUMNS, TOOL_CALLS))
    rows = reader.query(sql, scope.params)
    coverage: list[str] = []
    n = len(rows)
    completeness = {"tool_calls": n}
    # Counts by masks: filtering a wide frame of Arrow strings costs more than the query.
    escalated = rows["policy_effect"].eq("escalate").fillna(False).to_numpy(bool)
    if n:
        checked = rows["policy_effect"].notna().to_numpy()
        everyone = checked | True
        for mask, column, key, gap in (
            (everyone, "policy_effect", "with_policy_check", NO_POLICY),
            (everyone, "agent_credential", "with_credential", f"no credential recorded ({UNKNOWN})"),
            (everyone, "acting_for", "with_principal", f"no principal they acted for ({UNKNOWN})"),
            (checked, "policy_version", "with_policy_version", f"no policy version ({UNKNOWN})"),
        ):
            present, total = int((rows[column].notna().to_numpy() & mask).sum()), int(mask.sum())
            completeness[key] = present
            if present < total:
                coverage.append(f"{gap}: {total - present} of {count(total, 'tool call')}")
        decided = int((rows["approval_outcome"].notna().to_numpy() & escalated).sum())
        completeness["escalated"] = int(escalated.sum())
        completeness["escalated_with_decision"] = decided
        if decided < escalated.sum():
            coverage.append(f"no recorded decision (still open): {int(escalated.sum()) - decided} of "
                            f"{count(int(escalated.sum()), 'escalated call')}")
    _note_unattributed(reader, scope, rows, coverage, completeness)
    _note_duplicates(rows, coverage, "tool call")
    rows["policy_effect"] = rows["policy_effect"].fillna(NO_POLICY)
    rows["acting_for"] = rows["acting_for"].fillna(UNKNOWN)
    if rows.empty:
        verdict = f"No tool calls recorded for {_who(agent)} in the window."
    else:
        checked = completeness["with_policy_check"]
        policies = sorted({p for p in rows["policy_id"].dropna()})
        approvers = sorted({a for a in rows["approver_id"].dropna()})
        verdict = (f"{checked} of {n} tool calls were decided by policy"
                   f"{' (' + ', '.join(policies) + ')' if policies else ''}; "
                   f"{completeness['escalated']} escalated, {completeness['escalated_with_decision']} decided"
                   f"{' by ' + ', '.join(approvers) if approvers else ''}.")
    evidence = rows["span_id"].tolist() + _new(rows, "resolution_span_id", rows["span_id"])
    return Answer("authorization", agent, scope.since, scope.until, rows, verdict, status_of(coverage, rows),
                  evidence, coverage, sql, params=scope.params, completeness=completeness)


# --- 3. data ----------------------------------------------------------------------------------------

DATA_QUERY = """
SELECT start_time, trace_id AS task, span_id, agent_id, tool_name, data_resource AS resource,
       data_operation AS operation, data_classification AS classification, data_record_count AS record_count,
       operation = 'execute_tool' AS is_tool_call
FROM canonical_spans
WHERE data_resource IS NOT NULL OR operation = 'execute_tool'
ORDER BY start_time, span_id
"""


def data(reader: Reader, agent: str | None = None, since: datetime | None = None,
         until: datetime | None = None) -> Answer:
    scope = Scope.of(agent, since, until)
    sql = compose(DATA_QUERY, _sources(scope, DATA_COLUMNS, f"data_resource IS NOT NULL OR {TOOL_CALLS}"))
    frame = reader.query(sql, scope.params)
    rows = frame[frame["resource"].notna()].drop(columns=["is_tool_call"]).reset_index(drop=True)
    calls = int(frame["is_tool_call"].fillna(False).sum())
    silent = int((frame["is_tool_call"].fillna(False) & frame["resource"].isna()).sum())
    coverage = []
    completeness = {"tool_calls": calls, "tool_calls_with_data_access": calls - silent, "data_accesses": len(rows)}
    if silent:
        coverage.append(f"no data access recorded (resource {UNKNOWN}): {silent} of {count(calls, 'tool call')}")
    for column, label in (("classification", "classification"), ("operation", "operation"),
                          ("record_count", "record count")):
        present = int(rows[column].notna().sum())
        completeness[f"with_{column}"] = present
        if present < len(rows):
            coverage.append(f"no {label} ({UNKNOWN}): {len(rows) - present} of {count(len(rows), 'data access')}")
    rows["classification"] = rows["classification"].fillna(UNKNOWN)
    rows["operation"] = rows["operation"].fillna(UNKNOWN)
    rows["record_count"] = rows["record_count"].astype("Int64")
    if rows.empty:
        verdict = f"No data access recorded for {_who(agent)} in the window."
    else:
        by_op = rows.groupby("operation")["record_count"].sum(min_count=1).to_dict()
        summary = ", ".join(f"{op} {int(n) if pd.notna(n) else UNKNOWN} records" for op, n in sorted(by_op.items()))
        classes = ", ".join(sorted(rows["classification"].unique()))
        verdict = (f"{len(rows)} data accesses on {rows['resource'].nunique()} resources ({summary}); "
                   f"classifications: {classes}.")
    status = "no_data" if rows.empty and not calls else ("gaps" if coverage else "complete")
    return Answer("data", agent, scope.since, scope.until, rows, verdict, status, rows["span_id"].tolist(),
                  coverage, sql, params=scope.params, completeness=completeness)


# --- 4. cost ----------------------------------------------------------------------------------------

def cost(reader: Reader, agent: str | None = None, since: datetime | None = None, until: datetime | None = None,
         envelopes: dict[str, Any] | None = None, prices: Any = None, **options: Any) -> Answer:
    """Cost per task, hour and day against each agent's envelope; see ``costs.cost_answer``."""
    from govtrace.analytics.costs import cost_answer

    return cost_answer(reader, agent, since, until, envelopes=envelopes, prices=prices, **options)


# --- 5. boundaries ----------------------------------------------------------------------------------

BOUNDARIES_QUERY = """
SELECT c.start_time, c.trace_id AS task, c.span_id, c.agent_id, c.tool_name, c.policy_effect,
       coalesce(c.policy_boundary, CASE WHEN c.policy_effect = 'escalate' THEN 'tier' ELSE 'policy' END) AS boundary,
       c.policy_tier, c.policy_id, c.policy_rule_id, c.policy_mode, c.escalation_id,
       c.escalation_sla_seconds AS sla_seconds,
       CASE
         WHEN c.policy_mode = 'log_only' THEN 'logged only (not enforced)'
         WHEN c.policy_effect = 'deny' THEN 'denied by policy'
         WHEN r.outcome IS NOT NULL THEN r.outcome
         WHEN c.policy_effect = 'escalate' THEN 'open'
         ELSE 'recorded'
       END AS resolution,
       CASE
         WHEN r.approver_id IS NOT NULL THEN r.approver_id
         WHEN r.outcome IN ('auto_denied', 'expired') THEN 'deadline (automatic)'
         WHEN c.policy_effect = 'deny' AND c.policy_mode IS DISTINCT FROM 'log_only'
           THEN 'policy ' || coalesce(c.policy_id, '?')
       END AS resolved_by,
       r.approver_role AS resolver_role, r.decided_time AS decided_at,
       date_diff('millisecond', c.start_time, r.decided_time) / 1000.0 AS time_to_decision_s,
       r.resolution_span_id
FROM canonical_spans c
LEFT JOIN escalation_resolutions r ON r.escalation_id = c.escalation_id
WHERE c.policy_effect IN ('deny', 'escalate') OR c.policy_boundary IS NOT NULL
ORDER BY c.start_time, c.span_id
"""


def boundaries(reader: Reader, agent: str | None = None, since: datetime | None = None,
               until: datetime | None = None, now: datetime | None = None) -> Answer:
    scope = Scope.of(agent, since, until)
    sql = compose(BOUNDARIES_QUERY, _sources(scope, BOUNDARY_COLUMNS, "policy_effect IN ('deny', 'escalate') "
                                             "OR policy_boundary IS NOT NULL"))
    rows = reader.query(sql, scope.params)
    now_naive = pd.Timestamp((now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None))
    rows["within_sla"] = [_within_sla(row, now_naive) for row in rows.to_dict("records")]
    coverage = []
    open_items = int((rows["resolution"] == "open").sum())
    escalated = int((rows["policy_effect"] == "escalate").sum())
    with_sla = int(rows.loc[rows["policy_effect"] == "escalate", "sla_seconds"].notna().sum())
    completeness = {"boundaries": len(rows), "escalated": escalated, "escalated_with_sla": with_sla,
                    "open": open_items}
    if open_items:
        coverage.append(f"no recorded resolution (still open or decision lost): {count(open_items, 'escalation')}")
    if with_sla < escalated:
        coverage.append(f"no SLA (decided in time: {UNKNOWN}): {escalated - with_sla} of "
                        f"{count(escalated, 'escalation')}")
    evidence = rows["span_id"].tolist() + _new(rows, "resolution_span_id", rows["span_id"])
    if rows.empty:
        verdict = f"No policy boundary was triggered by {_who(agent)} in the window."
        status = "complete"
    else:
        counts = rows["resolution"].value_counts().to_dict()
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        late = int((rows["within_sla"] == False).sum())  # noqa: E712 - pandas elementwise
        verdict = f"{len(rows)} boundaries triggered: {summary}; {late} decided after their SLA or overdue."
        status = "gaps" if coverage else "complete"
    return Answer("boundaries", agent, scope.since, scope.until, rows, verdict, status, evidence, coverage, sql,
                  params=scope.params, completeness=completeness)


ANSWERS = {
    "actions": actions,
    "authorization": authorization,
    "data": data,
    "cost": cost,
    "boundaries": boundaries,
}


def ask(question: str, reader: Reader, **kwargs: Any) -> Answer:
    """One readiness answer. ``cost`` also takes ``envelopes`` and ``prices``, ``boundaries``
    takes ``now``; other questions ignore them."""
    if question not in ANSWERS:
        raise ValueError(f"unknown question {question!r}: one of {', '.join(QUESTIONS)}")
    if question != "cost":
        for key in ("envelopes", "prices"):
            kwargs.pop(key, None)
    if question != "boundaries":
        kwargs.pop("now", None)
    return ANSWERS[question](reader, **kwargs)


# --- the combined report ----------------------------------------------------------------------------

@dataclass
class Report:
    """The five answers for one subject and window, with a verdict per question."""

    agent: str | None
    since: datetime
    until: datetime
    answers: dict[str, Answer]

    @property
    def status(self) -> str:
        return max((a.status for a in self.answers.values()), key=STATUS_ORDER.index, default="no_data")

    @property
    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([
            {"question": q, "status": a.status, "verdict": a.verdict, "coverage": a.coverage_statement(),
             "gaps": "; ".join(a.coverage), "rows": len(a.rows), "evidence_spans": len(a.evidence)}
            for q, a in self.answers.items()
        ])

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "since": self.since.isoformat(), "until": self.until.isoformat(),
                "status": self.status,
                "verdicts": {q: {"status": a.status, "verdict": a.verdict} for q, a in self.answers.items()},
                "answers": {q: a.to_dict() for q, a in self.answers.items()}}


def readiness(reader: Reader, agent: str | None = None, since: datetime | None = None,
              until: datetime | None = None, *, envelopes: dict[str, Any] | None = None, prices: Any = None,
              now: datetime | None = None) -> Report:
    scope = Scope.of(agent, since, until)
    answers = {q: ask(q, reader, agent=agent, since=scope.since, until=scope.until, envelopes=envelopes,
                      prices=prices, now=now) for q in QUESTIONS}
    return Report(agent, scope.since, scope.until, answers)


# --- helpers ----------------------------------------------------------------------------------------

def _sources(scope: Scope, columns: tuple[str, ...], where: str) -> dict[str, str]:
    """Where each view reads: the scope's spans (only the columns and rows the question needs),
    and the decisions on its escalations, wherever and whenever they were recorded."""
    return {"canonical_spans": scope.spans(where, columns), "escalation_resolutions": scope.decisions()}


def _note_unattributed(reader: Reader, scope: Scope, rows: pd.DataFrame, coverage: list[str],
                       completeness: dict[str, int]) -> None:
    """Tool calls nobody can be held to account for: no agent identity on the span or resource."""
    if scope.agent is None:
        unattributed = int(rows["agent_id"].isna().sum()) if len(rows) else 0
    else:
        unattributed = int(reader.query(UNATTRIBUTED_QUERY, scope.params[:2]).iloc[0, 0])
    completeness["unattributed_tool_calls"] = unattributed
    if unattributed:
        where = "" if scope.agent is None else " anywhere in the window (these may be this agent's)"
        coverage.append(f"no agent identity{where}: {count(unattributed, 'tool call')}")


def _note_duplicates(rows: pd.DataFrame, coverage: list[str], what: str) -> None:
    if len(rows) and "recorded_by" in rows:
        doubled = int((rows["recorded_by"] > 1).sum())
        if doubled:
            coverage.append(f"recorded by more than one instrumentation, counted once: {count(doubled, what)}")


def _new(rows: pd.DataFrame, column: str, known: pd.Series) -> list[str]:
    seen = set(known)
    out = []
    for value in rows[column].dropna():
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


def _within_sla(row: dict[str, Any], now: pd.Timestamp) -> bool | None:
    sla = row.get("sla_seconds")
    if sla is None or pd.isna(sla) or row.get("policy_effect") != "escalate":
        return None
    taken = row.get("time_to_decision_s")
    if taken is None or pd.isna(taken):
        if row.get("resolution") != "open":
            return None
        return bool((now - pd.Timestamp(row["start_time"])).total_seconds() <= sla)  # open: overdue yet?
    return bool(taken <= sla)


def count(n: int, noun: str) -> str:
    """``1 tool call``, ``2 tool calls``, ``3 data accesses``."""
    if n == 1:
        return f"1 {noun}"
    return f"{n} {noun}es" if noun.endswith("s") else f"{n} {noun}s"


def _who(agent: str | None) -> str:
    return f"agent {agent}" if agent else "the fleet"


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None or frame.empty:
        return []
    return [{k: _jsonable(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return _records(value)
    if hasattr(value, "tolist") and not isinstance(value, str):
        return _jsonable(value.tolist())
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, float) and pd.isna(value):
        return None
    if value is pd.NaT or value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


__all__ = ["QUESTIONS", "UNKNOWN", "NO_POLICY", "EARLIEST", "Answer", "Report", "ask", "readiness", "window",
           "actions", "authorization", "data", "cost", "boundaries"]
