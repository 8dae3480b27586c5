"""Fleet: every agent seen, its owner and findings, recent alerts, and a governance scorecard."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from govtrace.dashboard import charts, data, governance, ui
from govtrace.dashboard.access import record_view
from govtrace.dashboard.session import current

SCORECARD_HELP = (
    "**identity**: spans that present a credential · **policy coverage**: tool calls with a recorded "
    "policy decision · **escalation SLA**: escalations decided within their SLA (open past it count as "
    "missed) · **cost within envelope**: task, hour and day periods within the agent's envelope. "
    "*unknown* means the telemetry or registry cannot tell."
)


def render() -> None:
    context = current()
    record_view("fleet")
    ui.header("Fleet", "Every agent seen, who owns it and what needs attention")
    inventory = data.load("inventory", context.since, context.until)
    if inventory.empty:
        ui.empty("No agent has sent telemetry to this collector yet. Instrument an agent or run `make demo`.")
        return
    boundaries = data.answer("boundaries", None)
    cost = data.answer("cost", None)
    now = datetime.now(UTC)
    registered = data.inventory_answer()
    if registered is not None:
        inventory["findings"] = _registry_findings(inventory["agent_id"], registered.rows)
    else:
        unused = governance.unused_grants(data.load("delegated_scopes", None, context.since, context.until),
                                          data.load("usage", None, context.since, context.until))
        inventory["findings"] = governance.findings(inventory, now, None, unused)
    _metrics(inventory, boundaries.rows, cost)

    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("Governance scorecard")
        periods = governance.judged_periods(cost.rows, cost.extra.get("per_hour", []),
                                            cost.extra.get("per_day", []), data.envelopes())
        card = governance.scorecard(inventory, boundaries.rows, periods, cost.extra.get("breaches", []), now)
        st.plotly_chart(charts.scorecard_heatmap(card), config={"displayModeBar": False})
        st.caption(SCORECARD_HELP)
    with right:
        st.subheader("Tool calls by policy decision")
        effects = data.load("effects_by_agent", context.since, context.until)
        if effects.empty:
            ui.empty("No tool calls in this window.")
        else:
            st.plotly_chart(charts.activity_by_effect(effects), config={"displayModeBar": False})

    st.subheader("Agent inventory")
    unattributed = data.load("unattributed_spans", context.since, context.until)
    if unattributed:
        ui.coverage([f"{unattributed} spans in this window carry no agent identity (shadow activity)."])
    if registered is None:
        st.caption("No agent registry has been recorded with this collector (`govtrace agents --registry "
                   "agents.yaml` records one): findings cover agents without owner or credential, agents silent "
                   "for 30 days and delegated scopes left unused.")
    else:
        st.caption(f"Judged against registry version {registered.extra.get('registry_version', '?')[:12]}: "
                   f"{registered.verdict}")
    ui.table(
        inventory[["agent_id", "name", "owner", "environment", "findings", "tool_calls", "tasks", "denied",
                   "escalated", "errors", "cost", "first_seen", "last_seen"]],
        findings=st.column_config.ListColumn("findings", width="large"),
        cost=st.column_config.NumberColumn("cost", format="%.4f"),
        tool_calls=st.column_config.NumberColumn("tool calls"),
    )

    if registered is not None and len(registered.rows):
        with st.expander(f"All {len(registered.rows)} registry findings, most severe first"):
            ui.table(_by_severity(registered.rows)[["severity", "finding", "agent_id", "detail"]])

    st.subheader("Recent alerts")
    _alerts(boundaries.rows)


SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def _by_severity(findings: pd.DataFrame) -> pd.DataFrame:
    return findings.sort_values(["severity", "agent_id"], key=lambda c: c.map(SEVERITY_ORDER) if c.name == "severity"
                                else c)


def _registry_findings(agents: pd.Series, findings: pd.DataFrame) -> list[list[str]]:
    ordered = _by_severity(findings)
    return [[f"{row['finding'].replace('_', ' ')}: {row['detail']}"
             for row in ordered[ordered["agent_id"] == agent].to_dict("records")] for agent in agents]


def _metrics(inventory: pd.DataFrame, boundaries: pd.DataFrame, cost) -> None:
    active = int((inventory["spans"] > 0).sum())
    flagged = int(inventory["findings"].map(bool).sum())
    open_items = int((boundaries["resolution"] == "open").sum()) if len(boundaries) else 0
    total = cost.rows["cost"].sum() if len(cost.rows) else None
    columns = st.columns(5)
    columns[0].metric("Agents active", f"{active} of {len(inventory)}", border=True)
    columns[1].metric("Agents with findings", flagged, border=True)
    columns[2].metric("Tool calls", f"{int(inventory['tool_calls'].sum()):,}", border=True)
    columns[3].metric("Open escalations", open_items, border=True)
    columns[4].metric("Spend", ui.money(total), border=True)


def _alerts(boundaries: pd.DataFrame) -> None:
    drifted = data.drift("hour").alerts()
    policy_tab, drift_tab = st.tabs([f"Policy boundaries ({len(boundaries)} in the window)",
                                     f"Behaviour drift ({len(drifted)})"])
    with policy_tab:
        if boundaries.empty:
            ui.empty("No policy boundary was triggered in this window.")
        else:
            recent = boundaries.rename(columns={"task": "trace_id"}).sort_values("start_time", ascending=False)
            ui.table_to_investigate(
                recent.head(25)[["start_time", "agent_id", "tool_name", "boundary", "policy_effect", "policy_tier",
                                 "resolution", "resolved_by", "trace_id", "span_id"]],
                key="fleet_alerts",
                policy_tier=st.column_config.NumberColumn("tier"),
                policy_effect=st.column_config.TextColumn("policy"),
                span_id=None,
            )
    with drift_tab:
        if drifted.empty:
            ui.empty("No agent moved away from its own baseline in this window.")
        else:
            ui.table(drifted[["time", "agent_id", "score", "moved"]].head(25),
                     score=st.column_config.NumberColumn("score", format="%.2f"),
                     moved=st.column_config.ListColumn("features that moved", width="large"))


if __name__ == "__main__":
    render()
