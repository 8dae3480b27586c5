"""Escalations per tier: time to decision, SLA breaches, auto-denies, approvers and their decisions,
and what is still open.

Built on the ``escalations`` view (views.sql): each escalation requested in the window, joined to
its decision wherever that was recorded (on the request span, or later in another trace). An
escalation breaches its SLA when it was decided after ``sla_seconds``, or is still open and older
than that at ``now``; one without an SLA is not judged, and the answer says how many.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from govtrace.analytics.reader import Reader
from govtrace.analytics.readiness import UNKNOWN, Answer, _who, count
from govtrace.analytics.views import DEDUP_COLUMNS, Scope, compose

ESCALATIONS_QUERY = "SELECT * FROM escalations ORDER BY requested_at, escalation_id"
COLUMNS = (*DEDUP_COLUMNS, "start_time", "agent_id", "tool_name", "policy_tier", "policy_rule_id", "escalation_id",
           "escalation_routed_to", "escalation_sla_seconds")
AUTOMATIC = ("auto_denied", "expired")
TIER_NAMES = {1: "autonomous", 2: "supervised", 3: "approval required", 4: "halt and escalate"}


def escalations(reader: Reader, agent: str | None = None, since: datetime | None = None,
                until: datetime | None = None, now: datetime | None = None) -> Answer:
    scope = Scope.of(agent, since, until)
    sql = compose(ESCALATIONS_QUERY, {"canonical_spans": scope.spans("escalation_id IS NOT NULL", COLUMNS),
                                      "escalation_resolutions": scope.decisions()})
    items = reader.query(sql, scope.params)
    now_naive = pd.Timestamp((now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None))
    items["age_s"] = [(now_naive - pd.Timestamp(t)).total_seconds() for t in items["requested_at"]]
    items["sla_breached"] = [_breached(row) for row in items.to_dict("records")]
    tiers = _per_tier(items)
    approvers = _per_approver(items)
    still_open = items[items["outcome"] == "open"].reset_index(drop=True)

    coverage = []
    no_sla = int(items["sla_seconds"].isna().sum())
    completeness = {"escalations": len(items), "with_sla": len(items) - no_sla,
                    "decided": int((items["outcome"] != "open").sum()), "open": len(still_open)}
    if no_sla:
        coverage.append(f"no SLA (breach: {UNKNOWN}): {no_sla} of {count(len(items), 'escalation')}")
    human = items[~items["outcome"].isin(("open", *AUTOMATIC))]
    nameless = int(human["approver_id"].isna().sum())
    if nameless:
        coverage.append(f"no approver named ({UNKNOWN}): {count(nameless, 'decision')}")
    if len(still_open):
        coverage.append(f"still open (no decision recorded): {count(len(still_open), 'escalation')}")
    evidence = list(dict.fromkeys([*items["request_span_id"], *items["resolution_span_id"].dropna()]))
    if items.empty:
        verdict, status = f"No escalation was requested by {_who(agent)} in the window.", "no_data"
    else:
        breaches = int(items["sla_breached"].fillna(False).astype(bool).sum())
        automatic = int(items["outcome"].isin(AUTOMATIC).sum())
        median = items["time_to_decision_s"].median()
        timing = f"median time to decision {median:.0f} s" if pd.notna(median) else "no decision timed"
        verdict = (f"{len(items)} escalations over {len(tiers)} tiers: {completeness['decided']} decided "
                   f"({automatic} auto-denied), {len(still_open)} still open; {timing}; {breaches} SLA breaches; "
                   f"{len(approvers)} approvers.")
        status = "breach" if breaches else ("gaps" if coverage else "complete")
    return Answer("escalations", agent, scope.since, scope.until, tiers, verdict, status, evidence, coverage, sql,
                  params=scope.params, completeness=completeness,
                  tables={"escalations": items, "approvers": approvers, "open": still_open})


def _breached(row: dict[str, Any]) -> bool | None:
    sla = row.get("sla_seconds")
    if sla is None or pd.isna(sla):
        return None
    taken = row.get("time_to_decision_s")
    if row["outcome"] == "open" or taken is None or pd.isna(taken):
        return bool(row["age_s"] > sla) if row["outcome"] == "open" else None
    return bool(taken > sla)


def _per_tier(items: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for tier, group in items.groupby("tier", sort=True):
        decided = group[group["outcome"] != "open"]
        times = decided["time_to_decision_s"].dropna()
        rows.append({
            "tier": int(tier),
            "tier_name": TIER_NAMES.get(int(tier), f"tier {tier}"),
            "escalations": len(group),
            "approved": int((group["outcome"] == "approved").sum()),
            "denied": int((group["outcome"] == "denied").sum()),
            "auto_denied": int(group["outcome"].isin(AUTOMATIC).sum()),
            "open": int((group["outcome"] == "open").sum()),
            "median_time_to_decision_s": float(times.median()) if len(times) else None,
            "p90_time_to_decision_s": float(times.quantile(0.9)) if len(times) else None,
            "max_time_to_decision_s": float(times.max()) if len(times) else None,
            "sla_breaches": int(group["sla_breached"].fillna(False).astype(bool).sum()),
            "sla_unknown": int(group["sla_breached"].isna().sum()),
            "approvers": ", ".join(sorted(group["approver_id"].dropna().unique())),
        })
    return pd.DataFrame(rows, columns=["tier", "tier_name", "escalations", "approved", "denied", "auto_denied", "open",
                                       "median_time_to_decision_s", "p90_time_to_decision_s",
                                       "max_time_to_decision_s", "sla_breaches", "sla_unknown", "approvers"])


def _per_approver(items: pd.DataFrame) -> pd.DataFrame:
    decided = items[items["approver_id"].notna()]
    rows = []
    for approver, group in decided.groupby("approver_id", sort=True):
        times = group["time_to_decision_s"].dropna()
        rows.append({
            "approver_id": approver,
            "roles": ", ".join(sorted(group["approver_role"].dropna().unique())),
            "decisions": len(group),
            "approved": int((group["outcome"] == "approved").sum()),
            "denied": int((group["outcome"] == "denied").sum()),
            "tiers": ", ".join(str(int(t)) for t in sorted(group["tier"].unique())),
            "median_time_to_decision_s": float(times.median()) if len(times) else None,
            "sla_breaches": int(group["sla_breached"].fillna(False).astype(bool).sum()),
        })
    return pd.DataFrame(rows, columns=["approver_id", "roles", "decisions", "approved", "denied", "tiers",
                                       "median_time_to_decision_s", "sla_breaches"])
