"""Investigate: find spans, follow a task's decision chain across agents, read a span's raw record."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from govtrace.dashboard import chain_graph, data, ui
from govtrace.dashboard.access import record_view
from govtrace.dashboard.session import current

EFFECTS = ["", "allow", "deny", "escalate", "none recorded"]
LEGEND = (":green-background[allow] :orange-background[escalate] :red-background[deny] "
          ":gray-background[no policy check recorded] · hexagons are human approvals, joined to the request "
          "they decided by a dashed line · boxes group the steps of each agent")


def render() -> None:
    ui.header("Investigate", "Search what agents did, then follow one task's decision chain")
    trace_id = _chosen_trace()
    record_view("investigate", f"trace {trace_id}" if trace_id else "search")
    with st.expander("Search spans", expanded=not trace_id, icon=":material/search:"):
        _search()
    if not trace_id:
        st.subheader("Recent tasks")
        _recent_tasks()
        return
    _chain(trace_id)


def _chosen_trace() -> str:
    # A trace chosen elsewhere (a selected row) wins over the URL; the URL keeps it shareable.
    chosen = st.session_state.pop(ui.INVESTIGATE_TRACE, None)
    if chosen:
        st.session_state["trace_input"] = chosen
    elif "trace_input" not in st.session_state and st.query_params.get("trace"):
        st.session_state["trace_input"] = st.query_params["trace"]
    trace_id = st.text_input("Trace id", key="trace_input", placeholder="32 hex characters, as govtrace chain prints them",
                             help="A task is one trace: paste its id, or select a row below.").strip().lower()
    if trace_id:
        st.query_params["trace"] = trace_id
    elif "trace" in st.query_params:
        del st.query_params["trace"]
    return trace_id


def _search() -> None:
    context = current()
    with st.form("search"):
        first, second, third = st.columns(3)
        agents = first.multiselect("Agents", data.load("agent_ids"), key="search_agents")
        tool = second.text_input("Tool name contains", key="search_tool")
        effect = third.selectbox("Policy effect", EFFECTS, key="search_effect",
                                 format_func=lambda e: e or "any")
        resource = st.text_input("Data resource or target contains", key="search_resource")
        submitted = st.form_submit_button("Search", type="primary", icon=":material/search:")
    if not submitted and not st.session_state.get("_searched"):
        st.caption(f"Searches the {context.window_label.lower()} window; at most 500 spans, newest first.")
        return
    st.session_state["_searched"] = True
    filters = {"agents": ",".join(agents), "tool": tool.strip(), "effect": effect, "resource": resource.strip()}
    record_view("investigate", "search " + " ".join(f"{k}={v}" for k, v in filters.items() if v))
    found = data.load("search_spans", context.since, context.until, tuple(agents), tool.strip(), effect,
                      resource.strip())
    st.caption(f"{len(found)} spans found" + (" (showing the newest 500)" if len(found) == 500 else ""))
    ui.table_to_investigate(found, key="search_results", height=300,
                            duration_ms=st.column_config.NumberColumn("ms", format="%.1f"))


def _recent_tasks() -> None:
    context = current()
    tasks = data.load("recent_tasks", context.since, context.until)
    if tasks.empty:
        ui.empty("No task was recorded in this window.")
        return
    ui.table_to_investigate(tasks, key="recent_tasks", agents=st.column_config.ListColumn("agents", width="medium"))


def _chain(trace_id: str) -> None:
    result = data.chain(trace_id)
    steps = result.steps
    if steps.empty:
        st.warning(f"No spans are recorded for trace {trace_id}.", icon=":material/search_off:")
        ui.coverage(result.coverage)
        return
    st.subheader(f"Decision chain of task {trace_id}")
    tools = steps[steps["step"] == "tool call"]
    columns = st.columns(5)
    columns[0].metric("Agents", len(result.agents), border=True)
    columns[1].metric("Tool calls", len(tools), border=True)
    columns[2].metric("Escalated", int((tools["policy_effect"] == "escalate").sum()), border=True)
    columns[3].metric("Denied by policy", int((tools["policy_effect"] == "deny").sum()), border=True)
    humans = steps.loc[steps["approval"].isin(["approved", "denied"]), "escalation_id"].nunique()
    columns[4].metric("Human decisions", humans, border=True,
                      help="Escalations approved or denied by a person (not those left to expire).")
    for delegation in result.delegations:
        st.markdown(_delegation(delegation))
    ui.coverage(result.coverage)
    st.graphviz_chart(chain_graph.chain_dot(steps), width="stretch")
    st.caption(LEGEND)
    if len(steps) > chain_graph.MAX_STEPS:
        st.caption(f"The graph shows the first {chain_graph.MAX_STEPS} of {len(steps)} steps; the table lists all.")

    st.subheader("Steps")
    shown = steps[["order", "start_time", "step", "agent_id", "name", "policy_effect", "policy_tier",
                   "policy_rule_id", "approval", "approver_id", "outcome", "span_id", "trace_id"]]
    ui.table(shown, height=min(38 * (len(shown) + 1), 420), policy_tier=st.column_config.NumberColumn("tier"))
    _span_details(steps)


def _span_details(steps: pd.DataFrame) -> None:
    st.subheader("Span details")
    span_ids = steps["span_id"].tolist()
    wanted = st.session_state.pop(ui.INVESTIGATE_SPAN, None)
    if wanted in span_ids:
        st.session_state["span_choice"] = wanted
    labels = {row["span_id"]: f"{row['order']:>3}. {row['agent_id'] or 'unknown agent'} · {row['name']} "
                              f"({row['span_id']})" for row in steps.to_dict("records")}
    span_id = st.selectbox("Span", span_ids, key="span_choice", format_func=labels.get)
    record_view("investigate", f"span {span_id}")
    detail = data.load("span_detail", span_id)
    if detail.empty:
        ui.empty("This span is no longer in the store.")
        return
    row = detail.iloc[0]
    record = json.loads(row["record"])
    typed = {k: v for k, v in row.drop(labels=["record"]).items() if v is not None and not _is_nan(v)}
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.markdown("**Governance columns** (derived from the record)")
        ui.table(pd.DataFrame({"field": list(typed), "value": [str(v) for v in typed.values()]}), height=420)
    with right:
        st.markdown("**Raw record** (exactly as stored and hashed)")
        tabs = st.tabs(["Attributes", "Resource", "Events", "Links", "Everything"])
        for tab, key in zip(tabs, ["attributes", "resource", "events", "links", None], strict=True):
            with tab:
                st.json(record if key is None else record.get(key, {}), expanded=True)


def _delegation(d: dict) -> str:
    source, target, principal = d.get("from"), d.get("to"), d.get("acting_for")
    if principal and source == principal:
        text = f":material/person: **{source}** handed the task to **{target}**"
    else:
        text = (f":material/arrow_forward: **{source}** delegated to **{target}**, acting for "
                f"**{principal or 'an unknown principal'}**")
    depth = d.get("depth")
    if depth is not None and not _is_nan(depth):
        text += f" · depth {int(depth)}"
    return text + (" · inferred from the span tree, not recorded" if d.get("inferred") else "")


def _is_nan(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


if __name__ == "__main__":
    render()
