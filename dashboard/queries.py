"""The SQL the views need beyond ``govtrace.analytics``: each function takes a Reader, returns a DataFrame.

Everything here runs through the collector's read API, so it must be one parameterized SELECT.
Windows are half-open [since, until) on ``start_time`` (naive UTC, as stored); ``None`` leaves
that end open.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from govtrace.analytics.reader import Reader

# Drift buckets the views offer; formatted into SQL, so only these literal values are accepted.
BUCKETS = {"5 minutes": "5 minutes", "hour": "1 hour", "day": "1 day"}


def agent_ids(reader: Reader) -> list[str]:
    frame = reader.query("SELECT DISTINCT agent_id FROM spans WHERE agent_id IS NOT NULL ORDER BY agent_id")
    return frame["agent_id"].tolist()


INVENTORY_SQL = """
WITH life AS (
  SELECT agent_id, any_value(agent_name) AS name, any_value(agent_owner) AS owner,
         count(DISTINCT agent_credential) AS credentials, min(start_time) AS first_seen,
         max(start_time) AS last_seen, arg_max(record, start_time) AS latest_record
  FROM spans WHERE agent_id IS NOT NULL GROUP BY agent_id
), recent AS (
  SELECT agent_id, count(*) AS spans,
         count(agent_credential) AS credentialed_spans,
         count(*) FILTER (WHERE operation = 'execute_tool') AS tool_calls,
         count(policy_effect) FILTER (WHERE operation = 'execute_tool') AS policy_checked,
         count(DISTINCT trace_id) AS tasks,
         count(*) FILTER (WHERE policy_effect = 'deny') AS denied,
         count(*) FILTER (WHERE policy_effect = 'escalate') AS escalated,
         count(*) FILTER (WHERE status_code = 'ERROR') AS errors,
         sum(cost_amount) AS cost
  FROM spans WHERE agent_id IS NOT NULL AND {where} GROUP BY agent_id
)
SELECT agent_id, name, owner, credentials,
       json_extract_string(latest_record, '$.resource."deployment.environment.name"') AS environment,
       first_seen, last_seen,
       coalesce(spans, 0) AS spans, coalesce(credentialed_spans, 0) AS credentialed_spans,
       coalesce(tool_calls, 0) AS tool_calls, coalesce(policy_checked, 0) AS policy_checked,
       coalesce(tasks, 0) AS tasks, coalesce(denied, 0) AS denied, coalesce(escalated, 0) AS escalated,
       coalesce(errors, 0) AS errors, cost
FROM life LEFT JOIN recent USING (agent_id)
ORDER BY agent_id
"""


def inventory(reader: Reader, since: datetime | None, until: datetime | None) -> pd.DataFrame:
    """Every agent ever seen (an abandoned agent has no activity in the window), with its activity in it."""
    where, params = _window(since, until)
    return reader.query(INVENTORY_SQL.format(where=where), params)


def effects_by_agent(reader: Reader, since: datetime | None, until: datetime | None) -> pd.DataFrame:
    where, params = _window(since, until)
    sql = f"""
        SELECT agent_id, coalesce(policy_effect, 'no policy check recorded') AS policy_effect, count(*) AS calls
        FROM spans WHERE operation = 'execute_tool' AND agent_id IS NOT NULL AND {where}
        GROUP BY ALL ORDER BY agent_id, policy_effect"""
    return reader.query(sql, params)


def unattributed_spans(reader: Reader, since: datetime | None, until: datetime | None) -> int:
    where, params = _window(since, until)
    frame = reader.query(f"SELECT count(*) AS n FROM spans WHERE agent_id IS NULL AND {where}", params)
    return int(frame.iloc[0, 0])


def delegated_scopes(reader: Reader, agent: str | None, since: datetime | None,
                     until: datetime | None) -> pd.DataFrame:
    """Scopes delegated to an agent's tasks (all agents when ``agent`` is None)."""
    where, params = _agent_window(agent, since, until)
    sql = f"""
        SELECT agent_id, scope, count(*) AS grants, any_value(delegating_agent) AS granted_by,
               max(start_time) AS last_granted
        FROM (SELECT agent_id,
                     unnest(json_extract_string(record, '$.attributes."govtrace.delegation.scopes"[*]')) AS scope,
                     delegating_agent, start_time
              FROM spans WHERE operation = 'invoke_agent' AND {where})
        GROUP BY agent_id, scope ORDER BY agent_id, scope"""
    return reader.query(sql, params)


def usage(reader: Reader, agent: str | None, since: datetime | None, until: datetime | None) -> pd.DataFrame:
    """What an agent exercised (all agents when None): per tool and resource, attempts and how many ran."""
    where, params = _agent_window(agent, since, until)
    sql = f"""
        SELECT agent_id, tool_name, data_resource AS resource, data_operation AS operation, count(*) AS attempts,
               -- ran: the enforcement point says so, or nothing stood in its way
               count(*) FILTER (WHERE list_contains(json_extract_string(record, '$.events[*].name'),
                                                    'govtrace.action.executed')
                                   OR coalesce(policy_effect, 'allow') = 'allow') AS executed,
               max(start_time) AS last_used
        FROM spans WHERE operation = 'execute_tool' AND {where}
        GROUP BY ALL ORDER BY agent_id, tool_name, resource"""
    return reader.query(sql, params)


def search_spans(reader: Reader, since: datetime | None, until: datetime | None, agents: tuple[str, ...] = (),
                 tool: str = "", effect: str = "", resource: str = "", trace_id: str = "",
                 limit: int = 500) -> pd.DataFrame:
    where, params = _window(since, until)
    if agents:
        where += f" AND agent_id IN ({', '.join('?' for _ in agents)})"
        params += list(agents)
    if tool:
        where += " AND tool_name ILIKE ?"
        params.append(f"%{tool}%")
    if effect == "none recorded":
        where += " AND operation = 'execute_tool' AND policy_effect IS NULL"
    elif effect:
        where += " AND policy_effect = ?"
        params.append(effect)
    if resource:
        where += " AND coalesce(data_resource, action_target) ILIKE ?"
        params.append(f"%{resource}%")
    if trace_id:
        where += " AND trace_id = ?"
        params.append(trace_id.strip().lower())
    sql = f"""
        SELECT start_time, agent_id, operation, coalesce(tool_name, name) AS action,
               coalesce(data_resource, action_target) AS resource, policy_effect, policy_tier,
               escalation_outcome, status_code, duration_ms, trace_id, span_id
        FROM spans WHERE {where}
        ORDER BY start_time DESC, span_id LIMIT {int(limit)}"""
    return reader.query(sql, params)


def recent_tasks(reader: Reader, since: datetime | None, until: datetime | None, limit: int = 200) -> pd.DataFrame:
    where, params = _window(since, until)
    sql = f"""
        SELECT trace_id, min(start_time) AS started,
               coalesce(arg_min(name, start_time) FILTER (WHERE parent_span_id IS NULL), arg_min(name, start_time))
                 AS root,
               list(DISTINCT agent_id ORDER BY agent_id) FILTER (WHERE agent_id IS NOT NULL) AS agents,
               count(*) AS spans,
               count(*) FILTER (WHERE policy_effect = 'deny') AS denied,
               count(*) FILTER (WHERE policy_effect = 'escalate') AS escalated
        FROM spans WHERE {where}
        GROUP BY trace_id ORDER BY started DESC LIMIT {int(limit)}"""
    return reader.query(sql, params)


def span_detail(reader: Reader, span_id: str) -> pd.DataFrame:
    return reader.query("SELECT * FROM spans WHERE span_id = ? ORDER BY seq DESC LIMIT 1", [span_id])


def activity(reader: Reader, since: datetime | None, until: datetime | None, bucket: str = "hour",
             agent: str | None = None) -> pd.DataFrame:
    """Behaviour features per agent and time bucket (the inputs of the drift baseline)."""
    interval = BUCKETS[bucket]
    where, params = _window(since, until)
    if agent:
        where += " AND agent_id = ?"
        params.append(agent)
    sql = f"""
        SELECT agent_id, time_bucket(INTERVAL '{interval}', start_time) AS bucket,
               count(*) FILTER (WHERE operation = 'execute_tool') AS tool_calls,
               count(DISTINCT tool_name) AS distinct_tools,
               count(DISTINCT coalesce(action_target, data_resource)) AS distinct_targets,
               coalesce(avg(CASE WHEN status_code = 'ERROR' THEN 1.0 ELSE 0.0 END)
                        FILTER (WHERE operation = 'execute_tool'), 0) AS error_rate,
               coalesce(avg(CASE WHEN policy_effect = 'deny' THEN 1.0 ELSE 0.0 END)
                        FILTER (WHERE operation = 'execute_tool'), 0) AS denial_rate,
               coalesce(avg(duration_ms) FILTER (WHERE operation = 'execute_tool'), 0) AS latency_ms,
               coalesce(sum(input_tokens), 0) + coalesce(sum(output_tokens), 0) AS tokens,
               coalesce(sum(cost_amount), 0) AS cost,
               coalesce(max(delegation_depth), 0) AS delegation_depth
        FROM spans WHERE agent_id IS NOT NULL AND {where}
        GROUP BY ALL ORDER BY agent_id, bucket"""
    return reader.query(sql, params)


def access_log(reader: Reader, limit: int = 200) -> pd.DataFrame:
    return reader.query(f"SELECT * FROM access_log ORDER BY occurred_at DESC LIMIT {int(limit)}")


def _agent_window(agent: str | None, since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
    where, params = _window(since, until)
    if agent is not None:
        return f"agent_id = ? AND {where}", [agent, *params]
    return f"agent_id IS NOT NULL AND {where}", params


def _window(since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
    clauses, params = ["TRUE"], []
    if since is not None:
        clauses.append("start_time >= CAST(? AS TIMESTAMP)")
        params.append(_naive(since))
    if until is not None:
        clauses.append("start_time < CAST(? AS TIMESTAMP)")
        params.append(_naive(until))
    return " AND ".join(clauses), params


def _naive(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ")
