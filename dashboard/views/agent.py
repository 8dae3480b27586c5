"""Agent: one agent's actions over time, its cost against its envelope, drift, and permissions used."""

from __future__ import annotations

from fnmatch import fnmatchcase

import pandas as pd
import streamlit as st

from govtrace.dashboard import charts, data, governance, ui
from govtrace.dashboard.access import record_view
from govtrace.dashboard.session import current


def render() -> None:
    context = current()
    ui.header("Agent", "What one agent did, what it cost and what it was allowed to do")
    agent = ui.agent_picker()
    if agent is None:
        ui.empty("No agent has sent telemetry to this collector yet.")
        return
    record_view("agent", agent)
    actions = data.answer("actions", agent)
    cost = data.answer("cost", agent)
    inventory = data.load("inventory", context.since, context.until)
    profile = inventory[inventory["agent_id"] == agent].iloc[0] if (inventory["agent_id"] == agent).any() else None
    _summary(profile, actions.rows, cost)

    st.subheader("Timeline of actions")
    if actions.rows.empty:
        ui.empty(actions.verdict)
    else:
        st.plotly_chart(charts.action_timeline(actions.rows), config={"displayModeBar": False})
        with st.expander(f"All {len(actions.rows)} tool calls"):
            ui.table_to_investigate(
                actions.rows.rename(columns={"task": "trace_id"})[
                    ["start_time", "tool_name", "target", "outcome", "policy_effect", "latency_ms", "trace_id",
                     "span_id"]],
                key="agent_actions", latency_ms=st.column_config.NumberColumn("latency ms", format="%.1f"))
    ui.coverage(actions.coverage)

    st.subheader("Cost against envelope")
    _cost(agent, cost)

    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Drift score over time")
        _drift(agent)
    with right:
        st.subheader("Permissions granted and used")
        _permissions(agent)


def _summary(profile, actions: pd.DataFrame, cost) -> None:
    if profile is not None:
        facts = [f"**{_text(profile['name']) or profile['agent_id']}**",
                 f"owner `{_text(profile['owner']) or 'unknown'}`",
                 f"environment `{_text(profile['environment']) or 'unknown'}`",
                 f"seen {profile['first_seen']:%Y-%m-%d %H:%M} – {profile['last_seen']:%Y-%m-%d %H:%M} UTC"]
        st.markdown(" · ".join(facts))
    columns = st.columns(4)
    columns[0].metric("Tool calls", len(actions), border=True)
    columns[1].metric("Tasks", int(actions["task"].nunique()) if len(actions) else 0, border=True)
    blocked = int(actions["outcome"].str.startswith("blocked").sum()) if len(actions) else 0
    columns[2].metric("Blocked", blocked, border=True)
    total = cost.rows["cost"].sum() if len(cost.rows) else None
    columns[3].metric("Spend", ui.money(total), border=True)


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _cost(agent: str, cost) -> None:
    envelope = data.envelopes().get(agent, {})
    currency = cost.rows["currency"].dropna().iloc[0] if len(cost.rows) and cost.rows["currency"].notna().any() \
        else "USD"
    ui.status_badge(cost.status)
    st.markdown(cost.verdict)
    if cost.rows.empty:
        ui.coverage(cost.coverage)
        return
    periods = {
        "Per task": (cost.rows, "started", envelope.get("task")),
        "Per hour": (pd.DataFrame(cost.extra.get("per_hour", [])), "hour", envelope.get("hour")),
        "Per day": (pd.DataFrame(cost.extra.get("per_day", [])), "day", envelope.get("day")),
    }
    for tab, (frame, x, limit) in zip(st.tabs(list(periods)), periods.values(), strict=True):
        with tab:
            if frame.empty:
                ui.empty("No cost in this period.")
                continue
            # A key per period: two periods with identical figures (one task in one hour of one day)
            # would otherwise get the same auto-generated element id.
            st.plotly_chart(charts.cost_against_envelope(frame, x, limit, currency, per_task=x == "started"),
                            config={"displayModeBar": False}, key=f"cost-{x}")
            if limit is None:
                st.caption("No envelope is registered for this period, so being within it is unknown.")
    ui.coverage(cost.coverage)


def _drift(agent: str) -> None:
    result = data.drift("hour", agent)
    scored = result.scores.dropna(subset=["score"]) if len(result.scores) else result.scores
    if scored.empty:
        ui.empty("Not enough history to score drift for this agent yet.")
        ui.coverage(result.notes)
        return
    st.plotly_chart(charts.drift_scores(scored, result.threshold), config={"displayModeBar": False})
    st.caption(result.method)


def _permissions(agent: str) -> None:
    context = current()
    granted = data.load("delegated_scopes", agent, context.since, context.until)
    used = data.load("usage", agent, context.since, context.until)
    registry = data.registry()
    entry = (registry or {}).get(agent) or {}
    rows = []
    for scope in granted["scope"] if len(granted) else []:
        rows.append({"permission": scope, "granted by": "delegation", "used": governance.scope_used(scope, used)})
    for kind, column in (("tools", "tool_name"), ("resources", "resource"), ("operations", "operation")):
        for pattern in entry.get(kind) or []:
            matches = used[column].fillna("").map(lambda v, p=pattern: fnmatchcase(v, p)) if len(used) else []
            rows.append({"permission": f"{kind[:-1]} {pattern}", "granted by": "registry",
                         "used": int(used.loc[matches, "executed"].sum()) if len(used) else 0})
    if rows:
        ui.table(pd.DataFrame(rows), used=st.column_config.NumberColumn("calls that ran"))
        st.caption("A grant with no call that ran in this window is a candidate for removal (least privilege).")
    else:
        st.caption("No grant is recorded for this agent: neither delegated scopes on its tasks nor a registry entry.")
    if len(used):
        st.markdown("**Used**")
        ui.table(used.drop(columns=["agent_id"]), attempts=st.column_config.NumberColumn("attempts"),
                 executed=st.column_config.NumberColumn("ran"))


if __name__ == "__main__":
    render()
