"""Agent inventory: the registry (agents.yaml) against what the telemetry shows.

Findings, each with the span ids that prove it (registry-only findings cite the registry version):
- ``shadow``: an agent id seen in telemetry that the registry does not list;
- ``abandoned``: registered and active, but silent for ``silent_days`` (30) days;
- ``retired_but_active``: registered as suspended or retired, yet still acting;
- ``no_owner``: a registry entry without a business process owner;
- ``review_overdue``: last reviewed more than ``review_days`` (90) days ago, or never;
- ``removal_candidate``: a tool, resource or operation granted but not exercised in the last
  ``unused_days`` (30) days: least privilege says remove it;
- ``violation``: a tool, resource or operation exercised (not blocked) but never granted.
"Exercised" means a tool call that was not blocked (denied by policy, by a human or by the deadline).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

import pandas as pd

from govtrace.analytics.reader import Reader
from govtrace.analytics.readiness import ACTION_COLUMNS, TOOL_CALLS, Answer, count
from govtrace.analytics.registry import Registry
from govtrace.analytics.views import Scope, compose

ACTIVITY_QUERY = "SELECT * FROM agent_activity ORDER BY agent_id"
USE_QUERY = "SELECT * FROM permission_use ORDER BY agent_id, kind, name"
ACTIVITY_SOURCE = "SELECT agent_id, start_time, span_id, operation, agent_name, agent_owner FROM spans"
KINDS = ("tool", "resource", "operation")
SEVERITY = {"violation": "high", "shadow": "high", "retired_but_active": "high", "abandoned": "medium",
            "no_owner": "medium", "review_overdue": "low", "removal_candidate": "low"}
FINDING_COLUMNS = ["finding", "severity", "agent_id", "kind", "name", "detail", "evidence"]


def inventory(reader: Reader, registry: Registry, *, now: datetime | None = None, since: datetime | None = None,
              silent_days: int = 30, review_days: int = 90, unused_days: int = 30) -> Answer:
    """Inventory rows (one per agent, registered or seen) and findings. Uses are judged over
    [since, now), ``since`` defaulting to ``now - unused_days``; activity over all time."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    now_naive = pd.Timestamp(now.replace(tzinfo=None))
    scope = Scope.of(None, since or now - timedelta(days=unused_days), now)
    activity_sql = compose(ACTIVITY_QUERY, {"agent_activity": ACTIVITY_SOURCE})
    activity = reader.query(activity_sql).set_index("agent_id", drop=False)
    use_sql = compose(USE_QUERY, {"canonical_spans": scope.spans(TOOL_CALLS, ACTION_COLUMNS, agent=False),
                                  "escalation_resolutions": scope.decisions()})
    uses = reader.query(use_sql, scope.params)

    findings: list[dict] = []

    def add(finding: str, agent_id: str, detail: str, evidence: list[str] | None = None, kind: str | None = None,
            name: str | None = None) -> None:
        findings.append({"finding": finding, "severity": SEVERITY[finding], "agent_id": agent_id, "kind": kind,
                         "name": name, "detail": detail, "evidence": list(evidence or [])})

    for agent_id, seen in activity.iterrows():
        if agent_id not in registry.agents:
            add("shadow", agent_id, f"seen in telemetry ({seen['spans']} spans, last {_day(seen['last_seen'])}) "
                "but not in the registry", [seen["last_span_id"]])
    for agent_id, entry in registry.agents.items():
        seen = activity.loc[agent_id] if agent_id in activity.index else None
        last = pd.Timestamp(seen["last_seen"]) if seen is not None else None
        abandoned = entry.status == "active" and (last is None or now_naive - last > pd.Timedelta(days=silent_days))
        if abandoned:
            when = f"last seen {_day(last)}" if last is not None else "never seen in telemetry"
            add("abandoned", agent_id, f"active in the registry but silent for over {silent_days} days ({when})",
                [seen["last_span_id"]] if seen is not None else [])
        if entry.status in ("suspended", "retired") and last is not None and last >= pd.Timestamp(scope.since.replace(tzinfo=None)):
            add("retired_but_active", agent_id, f"{entry.status} in the registry but acted on {_day(last)}",
                [seen["last_span_id"]])
        if entry.status == "retired":
            continue  # nothing to own, review or grant any more
        if not entry.owner:
            add("no_owner", agent_id, "no business process owner in the registry")
        if entry.last_review is None:
            add("review_overdue", agent_id, "never reviewed")
        elif now.date() - entry.last_review > timedelta(days=review_days):
            add("review_overdue", agent_id, f"last reviewed {entry.last_review.isoformat()}, "
                f"{(now.date() - entry.last_review).days} days ago (every {review_days} days)")
        if entry.status != "active" or abandoned:
            continue  # the grants of a silent agent are covered by the abandoned finding
        mine = uses[uses["agent_id"] == agent_id]
        for kind, granted in zip(KINDS, (entry.tools, entry.resources, entry.operations), strict=True):
            used = mine[(mine["kind"] == kind) & (mine["executed"] > 0)]
            for pattern in granted:
                if not any(fnmatchcase(name, pattern) for name in used["name"]):
                    add("removal_candidate", agent_id, f"{kind} {pattern} granted but not exercised since "
                        f"{_day(scope.since)}", kind=kind, name=pattern)
            for row in used.to_dict("records"):
                if not any(fnmatchcase(row["name"], pattern) for pattern in granted):
                    add("violation", agent_id, f"{kind} {row['name']} exercised {_times(row['executed'])} but never "
                        "granted", list(row["executed_span_ids"] if row["executed_span_ids"] is not None else []),
                        kind=kind, name=row["name"])
    frame = pd.DataFrame(findings, columns=FINDING_COLUMNS, dtype=object)
    agents = _agents(activity, registry, frame)
    evidence = list(dict.fromkeys(s for ids in frame["evidence"] for s in ids))
    coverage = []
    unregistered_use = uses[~uses["agent_id"].isin(registry.agents)]
    if len(unregistered_use):
        coverage.append(f"no grants to judge tool use against: "
                        f"{count(unregistered_use['agent_id'].nunique(), 'unregistered agent')}")
    counts = frame["finding"].value_counts().to_dict()
    if frame.empty:
        verdict = f"{len(agents)} agents; no findings against registry version {registry.version[:12]}."
    else:
        summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(counts.items()))
        verdict = f"{len(agents)} agents ({len(registry.agents)} registered): {summary}."
    status = "breach" if {"violation", "shadow", "retired_but_active"} & set(counts) else (
        "gaps" if findings else "complete")
    return Answer("agents", None, scope.since, scope.until, frame, verdict, status, evidence, coverage,
                  activity_sql + ";\n" + use_sql, params=scope.params,
                  completeness={"agents": len(agents), "registered": len(registry.agents),
                                "seen": len(activity)},
                  tables={"agents": agents},
                  extra={"registry_version": registry.version, "registry_path": registry.path,
                         "now": now.isoformat(), "silent_days": silent_days, "review_days": review_days,
                         "unused_days": unused_days})


def _agents(activity: pd.DataFrame, registry: Registry, findings: pd.DataFrame) -> pd.DataFrame:
    ids = list(dict.fromkeys([*registry.agents, *activity.index]))
    rows = []
    for agent_id in ids:
        entry = registry.get(agent_id)
        seen = activity.loc[agent_id] if agent_id in activity.index else None
        mine = findings[findings["agent_id"] == agent_id]["finding"]
        rows.append({
            "agent_id": agent_id,
            "registered": entry is not None,
            "name": entry.name if entry else (seen["agent_name"] if seen is not None else None),
            "owner": entry.owner if entry else None,
            "sponsor": entry.sponsor if entry else None,
            "risk_tier": entry.risk_tier if entry else None,
            "status": entry.status if entry else "unregistered",
            "last_review": entry.last_review if entry else None,
            "first_seen": seen["first_seen"] if seen is not None else None,
            "last_seen": seen["last_seen"] if seen is not None else None,
            "spans": int(seen["spans"]) if seen is not None else 0,
            "tool_calls": int(seen["tool_calls"]) if seen is not None else 0,
            "findings": ", ".join(sorted(set(mine))),
        })
    return pd.DataFrame(rows)


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _day(moment) -> str:
    return "never" if moment is None or pd.isna(moment) else pd.Timestamp(moment).strftime("%Y-%m-%d")
