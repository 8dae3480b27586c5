"""Behaviour features of an agent, read from the store with SQL through a Reader.

Two shapes come out of the store for one agent and window:

- ``tasks``: one row per task (trace) with the behaviour that needs no baseline: tool-call volume,
  distinct tools, errors, LLM calls, latency, tokens, cost, delegation depth, policy denials and
  escalations, and the model version.
- ``leaves``: what the agent touched, one row per (task, item): each tool, each tool-to-tool
  transition, each target, each argument value (``tool.arg=value``; each element of a list argument
  is a value of its own; the arguments digest stands in when argument content is not captured).
  Items are hashed in SQL so a million spans travel as integers; ``novelty`` compares them with the
  agent's baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from govtrace.analytics.drift.novelty import LEAF_KINDS
from govtrace.analytics.reader import Reader
from govtrace.instrumentation import attributes as A

# Behaviour per task that needs no baseline: (name, what it measures).
BEHAVIOUR = [
    ("tool_calls", "tool calls in the task"),
    ("distinct_tools", "distinct tools called"),
    ("tool_errors", "tool calls that failed"),
    ("error_rate", "failed share of tool calls"),
    ("llm_calls", "LLM calls (chat spans)"),
    ("duration_s", "wall clock of the task, first span start to last span end"),
    ("tool_latency_ms", "mean tool-call latency"),
    ("input_tokens", "input tokens"),
    ("output_tokens", "output tokens"),
    ("cost", "cost of the task"),
    ("delegation_depth", "deepest delegation hand-off"),
    ("denials", "policy denials"),
    ("escalations", "policy escalations"),
]

# What becomes an item and how its text is written. Items are compared by hash, so a stored
# vocabulary read under another encoding would make familiar values look new: bump this when the
# leaves change (2: list elements are values of their own, whole numbers written one way), and a
# stored baseline of another encoding asks for a refit.
LEAF_ENCODING = "2"
_ARGS_PATH = f'$.attributes."{A.GEN_AI_TOOL_CALL_ARGUMENTS}"'
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TEXT_CHARS = 160  # items are compared by hash of the full text; this much is kept to name them


@dataclass
class TaskFrame:
    """Per-task behaviour and per-task leaves of one agent."""

    agent_id: str
    tasks: pd.DataFrame  # index trace_id; columns start_time, model, BEHAVIOUR names
    leaves: pd.DataFrame  # columns trace_id, kind, key (uint64), item (uint64), text

    def subset(self, trace_ids) -> TaskFrame:
        keep = pd.Index(trace_ids)
        return TaskFrame(self.agent_id, self.tasks.loc[self.tasks.index.intersection(keep, sort=False)],
                         self.leaves[self.leaves["trace_id"].isin(keep)])

    def between(self, since: datetime | None = None, until: datetime | None = None,
                exclude_models: tuple[str, ...] = ()) -> TaskFrame:
        start = self.tasks["start_time"]
        mask = pd.Series(True, index=self.tasks.index)
        if since is not None:
            mask &= start >= _naive_utc(since)
        if until is not None:
            mask &= start < _naive_utc(until)
        if exclude_models:
            mask &= ~self.tasks["model"].isin(exclude_models)
        return self.subset(self.tasks.index[mask])

    def __len__(self) -> int:
        return len(self.tasks)


def agents(reader: Reader, since: datetime | None = None, until: datetime | None = None) -> list[str]:
    """Agents with at least one task starting in the window."""
    lo, hi = _window_ns(since, until)
    frame = reader.query(
        "SELECT DISTINCT agent_id FROM spans WHERE agent_id IS NOT NULL "
        "AND epoch_ns(start_time) >= ? AND epoch_ns(start_time) < ? ORDER BY agent_id", [lo, hi])
    return frame["agent_id"].tolist()


def load_tasks(reader: Reader, agent_id: str, since: datetime | None = None, until: datetime | None = None) -> TaskFrame:
    """Tasks of ``agent_id`` whose first span starts in [since, until), with their leaves."""
    return load_many(reader, [agent_id], since, until)[agent_id]


def load_many(reader: Reader, agent_ids: list[str], since: datetime | None = None,
              until: datetime | None = None) -> dict[str, TaskFrame]:
    """``load_tasks`` for several agents in one pass over the spans (the argument JSON is the
    costly part of a read, and each pass would scan every stored record again)."""
    lo, hi = _window_ns(since, until)
    names = list(agent_ids)
    if since is None and until is None:  # every task: no need to find each task's first span
        tasks = reader.arrow(_TASKS_SQL_ALL, [names, names])
        leaves = reader.arrow(_LEAVES_SQL_ALL, [names, names])
    else:
        tasks = reader.arrow(_TASKS_SQL, [names, names, lo, hi, names])  # parameters in textual order
        leaves = reader.arrow(_LEAVES_SQL, [names, names, lo, hi, names])
    task_rows, leaf_rows = _rows_by_agent(tasks, len(names)), _rows_by_agent(leaves, len(names))
    frames = {}
    for position, agent in enumerate(agent_ids):
        mine = tasks.slice(*task_rows[position]).drop_columns(["agent"]).to_pandas()
        mine = mine.set_index("trace_id").sort_values("start_time", kind="stable")
        for name, _ in BEHAVIOUR:
            mine[name] = pd.to_numeric(mine[name], errors="coerce").astype("float64").fillna(0.0)
        touched = leaves.slice(*leaf_rows[position]).drop_columns(["agent"]).to_pandas()
        touched["kind"] = pd.Categorical.from_codes(touched["kind"].to_numpy(), categories=LEAF_KINDS)
        frames[agent] = TaskFrame(agent, mine, touched)
    return frames


def _rows_by_agent(table: pa.Table, agents: int) -> list[tuple[int, int]]:
    """(offset, length) of each agent's rows in a table ordered by its ``agent`` position (1-based)."""
    bounds = np.searchsorted(table["agent"].to_numpy(), np.arange(1, agents + 2))
    return [(int(bounds[i]), int(bounds[i + 1] - bounds[i])) for i in range(agents)]


# Tasks are selected by their first span, so a task is never split across windows.
_TASK_WINDOW = """
  SELECT agent_id, trace_id FROM spans WHERE list_contains(?::VARCHAR[], agent_id)
  GROUP BY agent_id, trace_id HAVING epoch_ns(min(start_time)) >= ? AND epoch_ns(min(start_time)) < ?"""
_WINDOW_JOIN = f"SEMI JOIN ({_TASK_WINDOW}) w ON s.agent_id = w.agent_id AND s.trace_id = w.trace_id"

_TASKS_TEMPLATE = """
  SELECT CAST(list_position(?::VARCHAR[], s.agent_id) AS INTEGER) AS agent, s.trace_id,
         min(s.start_time) AS start_time,
         mode(s.model) AS model,
         count(*) FILTER (WHERE s.operation = 'execute_tool') AS tool_calls,
         count(DISTINCT s.tool_name) FILTER (WHERE s.operation = 'execute_tool') AS distinct_tools,
         count(*) FILTER (WHERE s.operation = 'execute_tool'
                          AND (s.error_type IS NOT NULL OR s.status_code = 'ERROR')) AS tool_errors,
         coalesce(count(*) FILTER (WHERE s.operation = 'execute_tool'
                                   AND (s.error_type IS NOT NULL OR s.status_code = 'ERROR'))
                  / nullif(count(*) FILTER (WHERE s.operation = 'execute_tool'), 0), 0) AS error_rate,
         count(*) FILTER (WHERE s.operation = 'chat') AS llm_calls,
         (epoch_ns(max(coalesce(s.end_time, s.start_time))) - epoch_ns(min(s.start_time))) / 1e9 AS duration_s,
         avg(s.duration_ms) FILTER (WHERE s.operation = 'execute_tool') AS tool_latency_ms,
         sum(s.input_tokens) AS input_tokens,
         sum(s.output_tokens) AS output_tokens,
         sum(s.cost_amount) AS cost,
         max(s.delegation_depth) AS delegation_depth,
         count(*) FILTER (WHERE s.policy_effect = 'deny') AS denials,
         count(*) FILTER (WHERE s.policy_effect = 'escalate' OR s.escalation_id IS NOT NULL) AS escalations
  FROM spans s {window}
  WHERE list_contains(?::VARCHAR[], s.agent_id)
  GROUP BY s.agent_id, s.trace_id
  ORDER BY agent"""

_LEAVES_TEMPLATE = """
  WITH calls AS (
    -- agents as their position in the list: integers are cheaper to group and partition by
    SELECT CAST(list_position(?::VARCHAR[], s.agent_id) AS INTEGER) AS agent_id,
           s.trace_id, s.seq, s.start_time, coalesce(s.tool_name, '?') AS tool,
           s.action_target AS target, s.arguments_digest AS digest,
           json_extract_string(s.record, '{args_path}') AS args
    FROM spans s {window}
    WHERE list_contains(?::VARCHAR[], s.agent_id) AND s.operation = 'execute_tool'
  ),
  objects AS (
    SELECT agent_id, trace_id, tool, args FROM calls
    WHERE (CASE WHEN json_valid(args) THEN json_type(args) END) = 'OBJECT'
  ),
  raw AS (
    SELECT agent_id, trace_id, 'tool' AS kind, '' AS key_text, tool AS text FROM calls
    UNION ALL
    SELECT agent_id, trace_id, 'transition', prev, prev || ' -> ' || tool FROM (
      SELECT agent_id, trace_id, tool,
             coalesce(lag(tool) OVER (PARTITION BY agent_id, trace_id ORDER BY start_time, seq), '^') AS prev
      FROM calls)
    UNION ALL
    SELECT agent_id, trace_id, 'target', tool, tool || ' -> ' || target FROM calls WHERE target IS NOT NULL
    UNION ALL
    -- A list is a set of values of its argument: each element is one, written as it would be alone
    -- (["a", "b"] gives a and b: a new combination of familiar names is not a new value). A whole
    -- number is written the same whether the agent sent 50 or 50.0.
    SELECT agent_id, trace_id, 'value', tool || '.' || name, tool || '.' || name || '=' || coalesce(
             CASE WHEN json_type(v) = 'DOUBLE' AND CAST(v AS DOUBLE) = trunc(CAST(v AS DOUBLE))
                       AND abs(CAST(v AS DOUBLE)) < 1e15 THEN CAST(CAST(v AS DOUBLE) AS BIGINT)::VARCHAR
                  ELSE lower(CAST(v AS VARCHAR)) END, 'null')
    FROM (SELECT agent_id, trace_id, tool, e.key AS name,
                 unnest(CASE WHEN json_type(e.value) = 'ARRAY' AND json_array_length(e.value) > 0
                             THEN json_transform(e.value, '["JSON"]') ELSE [e.value] END) AS v
          FROM (SELECT agent_id, trace_id, tool, unnest(map_entries(json_transform(args, '"MAP(VARCHAR, JSON)"'))) AS e
                FROM objects))
    UNION ALL
    SELECT agent_id, trace_id, 'value', tool || '.#digest', tool || '.#digest=' || digest
    FROM calls WHERE digest IS NOT NULL AND (args IS NULL OR NOT json_valid(args))
  )
  SELECT agent_id AS agent, trace_id,
         any_value(CAST(list_position({kinds}, kind) - 1 AS TINYINT)) AS kind,
         any_value(key) AS key, item, any_value(left(text, {text_chars})) AS text
  FROM (SELECT agent_id, trace_id, kind, hash(kind, key_text) AS key, hash(kind, text) AS item, text FROM raw)
  GROUP BY agent_id, trace_id, item
  ORDER BY agent"""

_LEAVES_FIELDS = {"args_path": _ARGS_PATH, "kinds": list(LEAF_KINDS), "text_chars": _TEXT_CHARS}
_TASKS_SQL = _TASKS_TEMPLATE.format(window=_WINDOW_JOIN)
_TASKS_SQL_ALL = _TASKS_TEMPLATE.format(window="")
_LEAVES_SQL = _LEAVES_TEMPLATE.format(window=_WINDOW_JOIN, **_LEAVES_FIELDS)
_LEAVES_SQL_ALL = _LEAVES_TEMPLATE.format(window="", **_LEAVES_FIELDS)


def _window_ns(since: datetime | None, until: datetime | None) -> tuple[int, int]:
    lo = epoch_ns(since) if since else -(2**62)
    hi = epoch_ns(until) if until else 2**62
    return lo, hi


def epoch_ns(moment: datetime) -> int:
    return (_aware(moment) - _EPOCH) // timedelta(microseconds=1) * 1000


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _naive_utc(moment: datetime) -> pd.Timestamp:
    """Stored times are naive UTC (TIMESTAMP_NS)."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp
