"""Drift: how far each agent's behaviour moved from its own baseline, and which features moved."""

from __future__ import annotations

import streamlit as st

from govtrace.dashboard import charts, data, ui
from govtrace.dashboard.access import record_view

BUCKETS = ["5 minutes", "hour", "day"]


def render() -> None:
    ui.header("Drift", "Agents behaving unlike themselves: scores over time and the features that moved")
    left, right = st.columns([1, 2])
    with left:
        agent = ui.agent_picker(key="drift_agent", allow_fleet=True)
    record_view("drift", f"agent {agent}" if agent else "fleet")
    result = data.drift(st.session_state.get("drift_bucket") or "hour", agent)
    if result.bucketed:
        with right:
            st.segmented_control("Bucket", BUCKETS, default="hour", key="drift_bucket")
    st.caption(result.method)
    ui.coverage(result.notes)
    scored = result.scores.dropna(subset=["score"]) if len(result.scores) else result.scores
    if scored.empty:
        ui.empty("Nothing to score in this window yet: see the notes above, or choose a longer window.")
        return
    st.plotly_chart(charts.drift_scores(scored, result.threshold), config={"displayModeBar": False})
    alerts = result.alerts()
    st.subheader(f"Alerts ({len(alerts)})")
    if alerts.empty:
        st.success("No agent moved past its alert threshold in this window.", icon=":material/check_circle:")
        return
    columns = ["time", "agent_id", "score", "moved"] + (["trace_id"] if "trace_id" in alerts else [])
    shown = alerts[columns]
    config = {"score": st.column_config.NumberColumn("score", format="%.2f"),
              "moved": st.column_config.ListColumn("features that moved", width="large")}
    if "trace_id" in shown:
        ui.table_to_investigate(shown, key="drift_alerts", **config)
    else:
        ui.table(shown, **config)


if __name__ == "__main__":
    render()
