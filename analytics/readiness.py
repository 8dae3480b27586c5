"""The five readiness questions, each answered as rows plus a verdict, evidence and coverage.

For an agent (or the whole fleet) and a window [since, until):
1. actions: every tool call in order, with target, arguments digest, outcome, latency, task;
2. authorization: identity and credential, acting-for principal and delegation, the policy and
   rule and version that decided, the approver of escalated actions;
3. data: resource, operation, classification and record count of every data access;
4. cost: per task, hour and day, against the agent's envelope when one is known;
5. boundaries: deny, escalate, rate-limit and envelope breaches and how each was resolved.

Every answer carries the span ids that prove it and a coverage list that says plainly where the
telemetry is missing a fact ("unknown", "no policy check recorded"), never a silent empty table.
The SQL of each answer is kept on the answer so that evidence bundles can reproduce it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from govtrace.analytics.reader import Reader

QUESTIONS = ("actions", "authorization", "data", "cost", "boundaries")
UNKNOWN = "unknown"
NO_POLICY = "no policy check recorded"
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


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
    coverage: list[str] = field(default_factory=list)
    sql: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, max_rows: int | None = None) -> dict[str, Any]:
        rows = self.rows if max_rows is None else self.rows.head(max_rows)
        return {
            "question": self.question,
            "agent": self.agent,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "status": self.status,
            "verdict": self.verdict,
            "coverage": self.coverage,
            "evidence_span_ids": self.evidence,
            "rows": _records(rows),
            **({"extra": _jsonable(self.extra)} if self.extra else {}),
        }


def window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = until or datetime.now(UTC) + timedelta(days=1)
    return since or EARLIEST, until


def _filters(agent: str | None, since: datetime, until: datetime, alias: str = "") -> tuple[str, list[Any]]:
    p = f"{alias}." if alias else ""
    where = f"{p}start_time >= CAST(? AS TIMESTAMP) AND {p}start_time < CAST(? AS TIMESTAMP)"
    params: list[Any] = [_naive(since), _naive(until)]
    if agent:
        where += f" AND {p}agent_id = ?"
        params.append(agent)
    return where, params


def _naive(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


# --- 1. actions -----------------------------------------------------------------------------------

ACTIONS_SQL = """
SELECT start_time, trace_id AS task, span_id, agent_id, tool_name, tool_call_id,
       coalesce(action_target, data_resource) AS target, arguments_digest,
       CASE
         WHEN policy_effect = 'deny' THEN 'blocked: denied by policy'
         WHEN escalation_outcome IN ('denied', 'expired', 'auto_denied') THEN 'blocked: ' || escalation_outcome
         WHEN status_code = 'ERROR' THEN 'error: ' || coalesce(error_type, '_OTHER')
         ELSE 'ok'
       END AS outcome,
       duration_ms AS latency_ms, policy_effect
FROM spans
WHERE operation = 'execute_tool' AND {where}
ORDER BY start_time, span_id
"""


def actions(reader: Reader, agent: str | None = None, since: datetime | None = None,
            until: datetime | None = None) -> Answer:
    since, until = window(since, until)
    where, params = _filters(agent, since, until)
    sql = ACTIONS_SQL.format(where=where)
    rows = reader.query(sql, params)
    coverage = []
    if agent is None:
        anonymous = int(rows["agent_id"].isna().sum())
        if anonymous:
            coverage.append(f"{anonymous} tool calls carry no agent identity ({UNKNOWN} agent)")
    if len(rows):
        missing_digest = int(rows["arguments_digest"].isna().sum())
        if missing_digest:
            coverage.append(f"{missing_digest} tool calls have no arguments digest")
        missing_target = int(rows["target"].isna().sum())
        if missing_target:
            coverage.append(f"{missing_target} tool calls name no target ({UNKNOWN})")
    rows["target"] = rows["target"].fillna(UNKNOWN)
    if rows.empty:
        verdict, status = f"No tool calls recorded for {_who(agent)} in the window.", "no_data"
    else:
        blocked = int(rows["outcome"].str.startswith("blocked").sum())
        errors = int(rows["outcome"].str.startswith("error").sum())
        verdict = (f"{_who(agent).capitalize()} made {len(rows)} tool calls in {rows['task'].nunique()} tasks: "
                   f"{len(rows) - blocked - errors} ok, {blocked} blocked, {errors} failed.")
        status = "gaps" if coverage else "complete"
    return Answer("actions", agent, since, until, rows, verdict, status, rows["span_id"].tolist(), coverage, sql)


# --- 2. authorization ---------------------------------------------------------------------------

AUTHORIZATION_SQL = """
WITH calls AS (
  SELECT * FROM spans WHERE operation = 'execute_tool' AND {where}
), resolutions AS (
  SELECT escalation_id,
         arg_max(escalation_outcome, start_time) AS outcome,
         arg_max(approver_id, start_time) AS approver_id,
         arg_max(approver_role, start_time) AS approver_role
  FROM spans
  WHERE escalation_id IN (SELECT escalation_id FROM calls WHERE escalation_id IS NOT NULL)
    AND escalation_outcome IS NOT NULL AND escalation_outcome <> 'pending'
  GROUP BY escalation_id
)
SELECT c.start_time, c.trace_id AS task, c.span_id, c.agent_id, c.agent_credential, c.tool_name,
       c.acting_for, c.delegating_agent, c.delegation_depth,
       c.policy_id, c.policy_rule_id, c.policy_version, c.policy_effect, c.policy_tier, c.policy_mode,
       c.escalation_id,
       coalesce(r.outcome, c.escalation_outcome) AS approval_outcome,
       coalesce(r.approver_id, c.approver_id) AS approver_id,
       coalesce(r.approver_role, c.approver_role) AS approver_role
FROM calls c LEFT JOIN resolutions r USING (escalation_id)
ORDER BY c.start_time, c.span_id
"""


def authorization(reader: Reader, agent: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> Answer:
    since, until = window(since, until)
    where, params = _filters(agent, since, until)
    sql = AUTHORIZATION_SQL.format(where=where)
    rows = reader.query(sql, params)
    coverage = []
    unchecked = int(rows["policy_effect"].isna().sum()) if len(rows) else 0
    if unchecked:
        coverage.append(f"{unchecked} tool calls: {NO_POLICY}")
    no_principal = int(rows["acting_for"].isna().sum()) if len(rows) else 0
    if no_principal:
        coverage.append(f"{no_principal} tool calls name no principal they acted for ({UNKNOWN})")
    no_identity = int(rows["agent_id"].isna().sum()) if len(rows) else 0
    if no_identity:
        coverage.append(f"{no_identity} tool calls carry no agent identity")
    escalated = rows[rows["policy_effect"] == "escalate"] if len(rows) else rows
    unapproved = int(escalated["approver_id"].isna().sum()) if len(escalated) else 0
    if unapproved:
        coverage.append(f"{unapproved} escalated calls have no recorded approver (open or unresolved)")
    rows["policy_effect"] = rows["policy_effect"].fillna(NO_POLICY)
    rows["acting_for"] = rows["acting_for"].fillna(UNKNOWN)
    if rows.empty:
        verdict, status = f"No tool calls recorded for {_who(agent)} in the window.", "no_data"
    else:
        policies = sorted({p for p in rows["policy_id"].dropna()})
        verdict = (f"{len(rows) - unchecked} of {len(rows)} tool calls were decided by policy"
                   f"{' (' + ', '.join(policies) + ')' if policies else ''}; "
                   f"{len(escalated)} escalated, {len(escalated) - unapproved} with a recorded approver.")
        status = "gaps" if coverage else "complete"
    return Answer("authorization", agent, since, until, rows, verdict, status, rows["span_id"].tolist(), coverage, sql)


# --- 3. data ----------------------------------------------------------------------------------------

DATA_SQL = """
SELECT start_time, trace_id AS task, span_id, agent_id, tool_name, data_resource AS resource,
       data_operation AS operation, data_classification AS classification, data_record_count AS record_count
FROM spans
WHERE data_resource IS NOT NULL AND {where}
ORDER BY start_time, span_id
"""

DATA_GAPS_SQL = """
SELECT count(*) FROM spans WHERE operation = 'execute_tool' AND data_resource IS NULL AND {where}
"""


def data(reader: Reader, agent: str | None = None, since: datetime | None = None,
         until: datetime | None = None) -> Answer:
    since, until = window(since, until)
    where, params = _filters(agent, since, until)
    sql = DATA_SQL.format(where=where)
    rows = reader.query(sql, params)
    silent = int(reader.query(DATA_GAPS_SQL.format(where=where), params).iloc[0, 0])
    coverage = []
    if silent:
        coverage.append(f"{silent} tool calls record no data access (resource {UNKNOWN})")
    for column, label in (("classification", "classification"), ("operation", "operation"),
                          ("record_count", "record count")):
        missing = int(rows[column].isna().sum()) if len(rows) else 0
        if missing:
            coverage.append(f"{missing} data accesses have no {label} ({UNKNOWN})")
    rows["classification"] = rows["classification"].fillna(UNKNOWN)
    rows["operation"] = rows["operation"].fillna(UNKNOWN)
    if rows.empty:
        verdict, status = f"No data access recorded for {_who(agent)} in the window.", "no_data"
    else:
        by_op = rows.groupby("operation")["record_count"].sum(min_count=1).to_dict()
        summary = ", ".join(f"{op} {int(n) if pd.notna(n) else UNKNOWN} records" for op, n in sorted(by_op.items()))
        classes = ", ".join(sorted(rows["classification"].unique()))
        verdict = (f"{len(rows)} data accesses on {rows['resource'].nunique()} resources ({summary}); "
                   f"classifications: {classes}.")
        status = "gaps" if coverage else "complete"
    return Answer("data", agent, since, until, rows, verdict, status, rows["span_id"].tolist(), coverage, sql)


# --- 4. cost ----------------------------------------------------------------------------------------

COST_SQL = """
SELECT trace_id AS task, agent_id,
       min(start_time) AS started, date_trunc('hour', min(start_time)) AS hour,
       date_trunc('day', min(start_time)) AS day,
       sum(cost_amount) AS cost, any_value(cost_currency) AS currency,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
       count(*) FILTER (WHERE cost_amount IS NULL AND (input_tokens IS NOT NULL OR operation = 'chat')) AS uncosted_spans,
       list(span_id ORDER BY start_time) FILTER (WHERE cost_amount IS NOT NULL) AS cost_span_ids
FROM spans
WHERE {where}
GROUP BY trace_id, agent_id
HAVING sum(cost_amount) IS NOT NULL OR count(*) FILTER (WHERE input_tokens IS NOT NULL) > 0
ORDER BY started
"""


def cost(reader: Reader, agent: str | None = None, since: datetime | None = None, until: datetime | None = None,
         envelopes: dict[str, dict[str, float]] | None = None) -> Answer:
    """Cost per task, hour and day; ``envelopes`` maps agent id to {"task"|"hour"|"day": limit}."""
    since, until = window(since, until)
    where, params = _filters(agent, since, until)
    sql = COST_SQL.format(where=where)
    tasks = reader.query(sql, params)
    coverage = []
    uncosted = int(tasks["uncosted_spans"].sum()) if len(tasks) else 0
    if uncosted:
        coverage.append(f"{uncosted} model or token-bearing spans carry no cost ({UNKNOWN})")
    envelopes = envelopes or {}
    breaches: list[dict[str, Any]] = []
    per_hour = tasks.groupby(["agent_id", "hour"], dropna=False)["cost"].sum().reset_index() if len(tasks) else None
    per_day = tasks.groupby(["agent_id", "day"], dropna=False)["cost"].sum().reset_index() if len(tasks) else None
    if len(tasks):
        for agent_id in tasks["agent_id"].dropna().unique():
            envelope = envelopes.get(agent_id)
            if not envelope:
                coverage.append(f"agent {agent_id}: no cost envelope registered (within envelope: {UNKNOWN})")
                continue
            for period, frame, column in (("task", tasks, "task"), ("hour", per_hour, "hour"), ("day", per_day, "day")):
                limit = envelope.get(period)
                if limit is None:
                    continue
                over = frame[(frame["agent_id"] == agent_id) & (frame["cost"] > limit)]
                for _, row in over.iterrows():
                    breaches.append({"agent_id": agent_id, "period": period, "at": str(row[column]),
                                     "cost": float(row["cost"]), "limit": float(limit)})
    evidence = [sid for ids in tasks.get("cost_span_ids", pd.Series(dtype=object)) if ids is not None for sid in ids]
    rows = tasks.drop(columns=["cost_span_ids"]) if len(tasks) else tasks
    if rows.empty:
        verdict, status = f"No cost or token usage recorded for {_who(agent)} in the window.", "no_data"
    else:
        total = rows["cost"].sum()
        currency = rows["currency"].dropna().iloc[0] if rows["currency"].notna().any() else "USD"
        verdict = (f"{_who(agent).capitalize()} spent {total:.4f} {currency} over {len(rows)} tasks; "
                   f"{len(breaches)} envelope breaches.")
        status = "breach" if breaches else ("gaps" if coverage else "complete")
    extra = {
        "per_hour": _records(per_hour) if per_hour is not None else [],
        "per_day": _records(per_day) if per_day is not None else [],
        "breaches": breaches,
    }
    return Answer("cost", agent, since, until, rows, verdict, status, evidence, coverage, sql, extra)


# --- 5. boundaries ----------------------------------------------------------------------------------

BOUNDARIES_SQL = """
WITH triggered AS (
  SELECT * FROM spans
  WHERE (policy_effect IN ('deny', 'escalate') OR policy_boundary IS NOT NULL) AND {where}
), resolutions AS (
  SELECT escalation_id,
         arg_max(escalation_outcome, start_time) AS outcome,
         arg_max(approver_id, start_time) AS approver_id,
         arg_max(approver_role, start_time) AS approver_role,
         arg_max(decided_at, start_time) AS decided_at,
         arg_max(span_id, start_time) AS resolution_span_id
  FROM spans
  WHERE escalation_id IN (SELECT escalation_id FROM triggered WHERE escalation_id IS NOT NULL)
    AND escalation_outcome IS NOT NULL AND escalation_outcome <> 'pending'
  GROUP BY escalation_id
)
SELECT t.start_time, t.trace_id AS task, t.span_id, t.agent_id, t.tool_name, t.policy_effect,
       coalesce(t.policy_boundary, CASE WHEN t.policy_effect = 'escalate' THEN 'tier' ELSE 'policy' END) AS boundary,
       t.policy_tier, t.policy_id, t.policy_rule_id, t.escalation_id, t.escalation_sla_seconds AS sla_seconds,
       CASE
         WHEN t.policy_effect = 'deny' THEN 'denied by policy'
         WHEN r.outcome IS NOT NULL THEN r.outcome
         WHEN t.escalation_outcome IS NOT NULL AND t.escalation_outcome <> 'pending' THEN t.escalation_outcome
         WHEN t.policy_effect = 'escalate' THEN 'open'
         ELSE 'recorded'
       END AS resolution,
       coalesce(r.approver_id, t.approver_id) AS resolved_by,
       coalesce(r.approver_role, t.approver_role) AS resolver_role,
       coalesce(r.decided_at, t.decided_at) AS decided_at,
       r.resolution_span_id
FROM triggered t LEFT JOIN resolutions r USING (escalation_id)
ORDER BY t.start_time, t.span_id
"""


def boundaries(reader: Reader, agent: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> Answer:
    since, until = window(since, until)
    where, params = _filters(agent, since, until)
    sql = BOUNDARIES_SQL.format(where=where)
    rows = reader.query(sql, params)
    rows["time_to_decision_s"] = [
        _seconds_between(start, decided) for start, decided in zip(rows["start_time"], rows["decided_at"], strict=True)
    ]
    rows["within_sla"] = [
        None if pd.isna(t) or pd.isna(sla) else bool(t <= sla)
        for t, sla in zip(rows["time_to_decision_s"], rows["sla_seconds"], strict=True)
    ]
    coverage = []
    open_items = int((rows["resolution"] == "open").sum()) if len(rows) else 0
    if open_items:
        coverage.append(f"{open_items} escalations have no recorded resolution (still open or decision lost)")
    evidence = rows["span_id"].tolist() + [s for s in rows["resolution_span_id"].dropna().tolist()]
    if rows.empty:
        verdict, status = f"No policy boundary was triggered by {_who(agent)} in the window.", "complete"
    else:
        counts = rows["resolution"].value_counts().to_dict()
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        late = int((rows["within_sla"] == False).sum())  # noqa: E712 - pandas elementwise
        verdict = f"{len(rows)} boundaries triggered: {summary}; {late} decided after their SLA."
        status = "gaps" if coverage else "complete"
    return Answer("boundaries", agent, since, until, rows, verdict, status, evidence, coverage, sql)


ANSWERS = {
    "actions": actions,
    "authorization": authorization,
    "data": data,
    "cost": cost,
    "boundaries": boundaries,
}


def ask(question: str, reader: Reader, **kwargs: Any) -> Answer:
    if question not in ANSWERS:
        raise ValueError(f"unknown question {question!r}: one of {', '.join(QUESTIONS)}")
    if question != "cost":
        kwargs.pop("envelopes", None)
    return ANSWERS[question](reader, **kwargs)


# --- helpers ----------------------------------------------------------------------------------------

def _who(agent: str | None) -> str:
    return f"agent {agent}" if agent else "the fleet"


def _seconds_between(start: Any, decided: Any) -> float | None:
    if decided is None or (isinstance(decided, float) and pd.isna(decided)) or pd.isna(start):
        return None
    try:
        decided_at = pd.Timestamp(decided)
    except (ValueError, TypeError):
        return None
    if decided_at.tzinfo is not None:
        decided_at = decided_at.tz_convert("UTC").tz_localize(None)
    return (decided_at - pd.Timestamp(start)).total_seconds()


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None or frame.empty:
        return []
    return [{k: _jsonable(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
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
