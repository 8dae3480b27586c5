"""Oversight: escalations by tier, time to decision against the SLA, who approves, what is still open."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from govtrace.dashboard import charts, data, ui
from govtrace.dashboard.access import record_view


def render() -> None:
    record_view("oversight")
    ui.header("Oversight", "Human decisions on escalated actions, and how fast they came")
    answer = data.escalations()
    items = answer.tables.get("escalations", pd.DataFrame())
    if items.empty:
        ui.empty(answer.verdict)
        return
    with st.container(border=True):
        ui.status_badge(answer.status)
        st.markdown(f"**{answer.verdict}**")
        ui.coverage(answer.coverage)
    _metrics(items, answer.tables.get("open", pd.DataFrame()))

    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Escalations by tier")
        st.plotly_chart(charts.escalations_by_tier(items), config={"displayModeBar": False})
    with right:
        st.subheader("Time to decision against SLA")
        decided = items[items["time_to_decision_s"].notna()]
        if decided.empty:
            ui.empty("No escalation has a recorded decision time yet.")
        else:
            st.plotly_chart(charts.decision_times(decided), config={"displayModeBar": False})

    st.subheader("Open items")
    still_open = answer.tables.get("open", pd.DataFrame())
    if still_open.empty:
        st.success("Every escalation in this window has a recorded decision.", icon=":material/check_circle:")
    else:
        ui.table_to_investigate(
            _traced(still_open).assign(waiting_minutes=still_open["age_s"] / 60)[
                ["requested_at", "waiting_minutes", "sla_breached", "agent_id", "tool_name", "tier", "routed_to",
                 "policy_rule_id", "escalation_id", "trace_id", "span_id"]],
            key="open_items", waiting_minutes=st.column_config.NumberColumn("waiting (min)", format="%.0f"),
            sla_breached=st.column_config.CheckboxColumn("past SLA"))

    st.subheader("Approvers")
    approvers = answer.tables.get("approvers", pd.DataFrame())
    if approvers.empty:
        ui.empty("No approver is recorded on any escalation in this window.")
    else:
        ui.table(approvers, median_time_to_decision_s=st.column_config.NumberColumn("median decision (s)",
                                                                                     format="%.0f"))
    st.subheader("Per tier")
    ui.table(answer.rows, median_time_to_decision_s=st.column_config.NumberColumn("median (s)", format="%.0f"),
             p90_time_to_decision_s=st.column_config.NumberColumn("p90 (s)", format="%.0f"),
             max_time_to_decision_s=st.column_config.NumberColumn("max (s)", format="%.0f"))
    with st.expander(f"All {len(items)} escalations"):
        ui.table_to_investigate(
            _traced(items)[["requested_at", "agent_id", "tool_name", "tier", "policy_rule_id", "outcome",
                            "approver_id", "approver_role", "time_to_decision_s", "sla_seconds", "sla_breached",
                            "trace_id", "span_id"]],
            key="all_escalations", time_to_decision_s=st.column_config.NumberColumn("decision (s)", format="%.0f"),
            sla_seconds=st.column_config.NumberColumn("SLA (s)", format="%.0f"),
            sla_breached=st.column_config.CheckboxColumn("past SLA"))


def _metrics(items: pd.DataFrame, still_open: pd.DataFrame) -> None:
    judged = items["sla_breached"].dropna()
    within = f"{1 - judged.astype(bool).mean():.0%}" if len(judged) else "unknown"
    median = items["time_to_decision_s"].dropna().median()
    columns = st.columns(4)
    columns[0].metric("Escalations", len(items), border=True)
    columns[1].metric("Within SLA", within, border=True,
                      help="Decided within their SLA; an escalation still open past its SLA counts as missed.")
    columns[2].metric("Median time to decision", "unknown" if pd.isna(median) else f"{median / 60:.1f} min",
                      border=True)
    columns[3].metric("Open items", len(still_open), border=True)


def _traced(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"task": "trace_id", "request_span_id": "span_id"})


if __name__ == "__main__":
    render()
