"""The Fleet view's judgements: findings per agent and a governance scorecard, from data already read.

Pure functions over DataFrames, so the rules can be read and tested without a browser. A criterion
that the telemetry cannot judge is NaN and shown as "unknown", never as a pass.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

import pandas as pd

CRITERIA = ("identity", "policy coverage", "escalation SLA", "cost within envelope")
ABANDONED_AFTER = timedelta(days=30)


def findings(inventory: pd.DataFrame, now: datetime, registry: dict[str, dict[str, Any]] | None = None,
             unused_grants: dict[str, list[str]] | None = None) -> list[list[str]]:
    """One list of findings per inventory row: shadow, abandoned, review overdue, unused grants."""
    now_naive = now.astimezone(UTC).replace(tzinfo=None)
    out = []
    for row in inventory.to_dict("records"):
        found = []
        entry = (registry or {}).get(row["agent_id"])
        if registry is not None and entry is None:
            found.append("shadow: not in the registry")
        if _missing(row.get("owner")) and not (entry and entry.get("owner")):
            found.append("shadow: no owner")
        if not row.get("credentials"):
            found.append("shadow: no credential presented")
        last_seen = row.get("last_seen")
        if last_seen is not None and not pd.isna(last_seen) and now_naive - pd.Timestamp(last_seen) > ABANDONED_AFTER:
            found.append(f"abandoned: silent for {(now_naive - pd.Timestamp(last_seen)).days} days")
        review_due = entry.get("review_due") if entry else None
        if review_due is not None and pd.Timestamp(review_due).tz_localize(None) < pd.Timestamp(now_naive):
            found.append(f"review overdue since {pd.Timestamp(review_due).date()}")
        grants = (unused_grants or {}).get(row["agent_id"])
        if grants:
            found.append(f"unused grants: {', '.join(grants)}")
        out.append(found)
    return out


# Delegated scopes are ``tool:<glob>``, ``resource:<glob>`` or ``operation:<name>`` (``op:`` too); a
# string without a prefix is a tool glob (docs/policies.md, "Delegation").
_SCOPE_COLUMNS = {"tool": "tool_name", "resource": "resource", "operation": "operation", "op": "operation"}


def scope_used(scope: str, usage: pd.DataFrame) -> int:
    """Calls that ran within a delegated scope."""
    if usage.empty:
        return 0
    kind, _, pattern = scope.partition(":")
    column = _SCOPE_COLUMNS.get(kind)
    if column is None:
        column, pattern = "tool_name", scope
    matches = usage[column].fillna("").map(lambda value: fnmatchcase(str(value), pattern))
    return int(usage.loc[matches, "executed"].sum())


def unused_grants(scopes: pd.DataFrame, usage: pd.DataFrame) -> dict[str, list[str]]:
    """Delegated scopes per agent that no call in the window used."""
    unused: dict[str, list[str]] = {}
    for agent, group in scopes.groupby("agent_id") if len(scopes) else []:
        mine = usage[usage["agent_id"] == agent]
        names = sorted(s for s in group["scope"].unique() if scope_used(s, mine) == 0)
        if names:
            unused[agent] = names
    return unused


def scorecard(inventory: pd.DataFrame, boundaries: pd.DataFrame, cost_periods: pd.DataFrame,
              breaches: list[dict[str, Any]], now: datetime) -> pd.DataFrame:
    """Share (0..1) of each agent's activity that meets each criterion; NaN where it cannot be judged.

    ``cost_periods`` has one row per agent and period (task, hour or day) that had a limit to judge
    against; ``breaches`` lists the periods over their limit (from the cost readiness answer).
    """
    agents = inventory["agent_id"].tolist()
    card = pd.DataFrame(index=pd.Index(agents, name="agent_id"), columns=list(CRITERIA), dtype=float)
    for row in inventory.to_dict("records"):
        agent = row["agent_id"]
        card.loc[agent, "identity"] = _share(row["credentialed_spans"], row["spans"])
        card.loc[agent, "policy coverage"] = _share(row["policy_checked"], row["tool_calls"])
        card.loc[agent, "escalation SLA"] = _sla_share(boundaries, agent, now)
        judged = int((cost_periods["agent_id"] == agent).sum()) if len(cost_periods) else 0
        over = sum(1 for b in breaches if b.get("agent_id") == agent)
        card.loc[agent, "cost within envelope"] = _share(judged - over, judged)
    return card


def judged_periods(tasks: pd.DataFrame, per_hour: list[dict[str, Any]], per_day: list[dict[str, Any]],
                   envelopes: dict[str, dict[str, float]]) -> pd.DataFrame:
    """The (agent, period) pairs of the cost answer that had a limit to be judged against."""
    rows = []
    for period, frame in (("task", tasks), ("hour", pd.DataFrame(per_hour)), ("day", pd.DataFrame(per_day))):
        if frame.empty or "agent_id" not in frame:
            continue
        for agent in frame["agent_id"].dropna():
            if envelopes.get(agent, {}).get(period) is not None:
                rows.append({"agent_id": agent, "period": period})
    return pd.DataFrame(rows, columns=["agent_id", "period"])


def _sla_share(boundaries: pd.DataFrame, agent: str, now: datetime) -> float:
    if boundaries.empty:
        return float("nan")
    rows = boundaries[(boundaries["agent_id"] == agent) & (boundaries["policy_effect"] == "escalate")
                      & boundaries["sla_seconds"].notna()]
    judged = met = 0
    now_naive = pd.Timestamp(now.astimezone(UTC).replace(tzinfo=None))
    for row in rows.to_dict("records"):
        if row["within_sla"] is not None and not pd.isna(row["within_sla"]):
            judged += 1
            met += bool(row["within_sla"])
        elif (now_naive - pd.Timestamp(row["start_time"])).total_seconds() > row["sla_seconds"]:
            judged += 1  # still open after its SLA: a miss, not an unknown
    return _share(met, judged)


def _share(part: float, whole: float) -> float:
    return float(part) / float(whole) if whole else float("nan")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or value == ""
