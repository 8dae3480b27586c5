"""The decision chain of one task: who delegated to whom, each tool call with its policy decision,
approvals (including those that arrived later in other traces) and outcome, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from govtrace.analytics.reader import Reader

CHAIN_SQL = """
WITH task AS (
  SELECT * FROM spans WHERE trace_id = ?
), linked AS (
  -- spans in other traces that link to this task (for example a later approval)
  SELECT s.* FROM spans s
  WHERE s.trace_id <> ? AND list_contains(
    json_extract_string(s.record, '$.links[*].trace_id'), ?)
), approvals AS (
  SELECT s.* FROM spans s
  WHERE s.trace_id <> ? AND s.escalation_id IN (SELECT escalation_id FROM task WHERE escalation_id IS NOT NULL)
)
SELECT DISTINCT ON (span_id) * EXCLUDE (record) FROM (
  SELECT *, 'task' AS relation FROM task
  UNION ALL BY NAME SELECT *, 'linked' AS relation FROM linked
  UNION ALL BY NAME SELECT *, 'approval' AS relation FROM approvals
)
ORDER BY span_id, relation DESC
"""


@dataclass
class Chain:
    trace_id: str
    steps: pd.DataFrame
    delegations: list[dict[str, Any]] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    coverage: list[str] = field(default_factory=list)

    @property
    def evidence(self) -> list[str]:
        return self.steps["span_id"].tolist() if len(self.steps) else []

    def to_dict(self) -> dict[str, Any]:
        from govtrace.analytics.readiness import _records

        return {
            "trace_id": self.trace_id,
            "agents": self.agents,
            "delegations": self.delegations,
            "coverage": self.coverage,
            "evidence_span_ids": self.evidence,
            "steps": _records(self.steps),
        }


STEP_COLUMNS = ["order", "depth", "start_time", "step", "agent_id", "name", "tool_name", "acting_for",
                "delegating_agent", "policy_effect", "policy_tier", "policy_rule_id", "escalation_id",
                "approval", "approver_id", "outcome", "span_id", "parent_span_id", "trace_id", "relation"]


def chain(reader: Reader, trace_id: str) -> Chain:
    trace_id = trace_id.strip().lower()
    spans = reader.query(CHAIN_SQL, [trace_id, trace_id, trace_id, trace_id])
    if spans.empty:
        return Chain(trace_id, pd.DataFrame(columns=STEP_COLUMNS), coverage=[f"no spans recorded for trace {trace_id}"])
    spans = spans.sort_values(["start_time", "span_id"]).reset_index(drop=True)
    depth = _depths(spans)
    spans["depth"] = [depth[s] for s in spans["span_id"]]
    spans["step"] = [_step_kind(op, rel) for op, rel in zip(spans["operation"], spans["relation"], strict=True)]
    spans["approval"] = spans["escalation_outcome"]
    spans["outcome"] = [_outcome(row) for row in spans.to_dict(orient="records")]
    spans["order"] = range(1, len(spans) + 1)
    coverage = []
    known = set(spans["span_id"])
    orphans = spans[(spans["relation"] == "task") & spans["parent_span_id"].notna()
                    & ~spans["parent_span_id"].isin(known)]
    if len(orphans):
        coverage.append(f"{len(orphans)} spans name a parent that was never received (context lost at a boundary)")
    tools = spans[spans["operation"] == "execute_tool"]
    unchecked = int(tools["policy_effect"].isna().sum())
    if unchecked:
        coverage.append(f"{unchecked} tool calls: no policy check recorded")
    delegations = []
    for row in spans[spans["delegating_agent"].notna() & (spans["operation"] == "invoke_agent")].to_dict("records"):
        delegations.append({"from": row["delegating_agent"], "to": row["agent_id"], "acting_for": row["acting_for"],
                            "depth": row["delegation_depth"], "span_id": row["span_id"]})
    agents = list(dict.fromkeys(a for a in spans["agent_id"] if isinstance(a, str)))
    steps = spans[[c for c in STEP_COLUMNS if c in spans.columns]]
    return Chain(trace_id, steps, delegations, agents, coverage)


def _depths(spans: pd.DataFrame) -> dict[str, int]:
    parents = dict(zip(spans["span_id"], spans["parent_span_id"], strict=True))
    depths: dict[str, int] = {}

    def depth_of(span_id: str, seen: frozenset = frozenset()) -> int:
        if span_id in depths:
            return depths[span_id]
        parent = parents.get(span_id)
        value = 0 if not isinstance(parent, str) or parent not in parents or span_id in seen else (
            depth_of(parent, seen | {span_id}) + 1)
        depths[span_id] = value
        return value

    for span_id in spans["span_id"]:
        depth_of(span_id)
    return depths


def _step_kind(operation: Any, relation: str) -> str:
    if relation == "approval" or operation == "govtrace.approval":
        return "approval"
    return {"invoke_agent": "task", "execute_tool": "tool call", "chat": "model call"}.get(operation or "", "span")


def _outcome(row: dict[str, Any]) -> str:
    if row.get("policy_effect") == "deny":
        return "denied by policy"
    outcome = row.get("escalation_outcome")
    if isinstance(outcome, str) and outcome in ("denied", "expired", "auto_denied"):
        return f"not executed ({outcome})"
    if row.get("status_code") == "ERROR":
        return f"error: {row.get('error_type') or '_OTHER'}"
    if isinstance(outcome, str) and outcome == "pending":
        return "awaiting approval"
    return "ok"
