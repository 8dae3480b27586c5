"""Plotly figures for the views: built from DataFrames, no Streamlit here.

One palette everywhere, so that red always means blocked or late and green always means allowed or
within bounds.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

PRIMARY = "#1f4e79"
GREEN, AMBER, RED, GREY = "#2e7d32", "#b26a00", "#c62828", "#8a94a6"
EFFECT_COLOURS = {"allow": GREEN, "escalate": AMBER, "deny": RED, "no policy check recorded": GREY}
OUTCOME_COLOURS = {"ok": GREEN, "blocked": RED, "error": "#6a1b9a", "escalated": AMBER}
RESOLUTION_COLOURS = {"approved": GREEN, "denied": RED, "auto_denied": "#e57373", "expired": "#e57373",
                      "open": AMBER, "denied by policy": RED, "recorded": GREY}


def scorecard_heatmap(card: pd.DataFrame) -> go.Figure:
    values = card.astype(float)
    text = values.map(lambda v: "unknown" if pd.isna(v) else f"{v:.0%}")
    figure = go.Figure(go.Heatmap(
        z=values.values, x=list(values.columns), y=list(values.index), text=text.values,
        texttemplate="%{text}", textfont={"size": 13}, zmin=0, zmax=1, xgap=3, ygap=3,
        colorscale=[[0, "#f4c7c3"], [0.8, "#fbe3b5"], [0.95, "#d7ecd9"], [1, "#a8d5b0"]],
        hovertemplate="%{y} · %{x}: %{text}<extra></extra>", showscale=False,
    ))
    figure.update_layout(plot_bgcolor="#eef0f3")  # unknown cells show this neutral grey
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(side="top")
    return _style(figure, height=70 + 42 * len(values))


def activity_by_effect(frame: pd.DataFrame) -> go.Figure:
    """Tool calls per agent, stacked by policy effect."""
    figure = px.bar(frame, x="calls", y="agent_id", color="policy_effect", orientation="h",
                    color_discrete_map=EFFECT_COLOURS, labels={"calls": "tool calls", "agent_id": "",
                                                               "policy_effect": "policy"})
    figure.update_yaxes(categoryorder="total ascending")
    return _style(figure, height=80 + 34 * frame["agent_id"].nunique())


def action_timeline(actions: pd.DataFrame) -> go.Figure:
    frame = actions.assign(result=[_outcome_class(o, e) for o, e in zip(actions["outcome"], actions["policy_effect"],
                                                                         strict=True)])
    figure = px.scatter(frame, x="start_time", y="tool_name", color="result", color_discrete_map=OUTCOME_COLOURS,
                        hover_data={"target": True, "outcome": True, "policy_effect": True, "task": True,
                                    "span_id": True, "result": False},
                        labels={"start_time": "time (UTC)", "tool_name": "", "result": "result"})
    figure.update_traces(marker={"size": 11, "line": {"width": 1, "color": "white"}})
    return _style(figure, height=120 + 30 * frame["tool_name"].nunique())


def cost_against_envelope(frame: pd.DataFrame, x: str, limit: float | None, currency: str,
                          per_task: bool = False) -> go.Figure:
    """Cost per period against its envelope; tasks are points in time, hours and days are bars."""
    colours = [RED if limit is not None and cost > limit else PRIMARY for cost in frame["cost"].fillna(0)]
    hover = f"%{{x}}<br>%{{y:.4f}} {currency}<extra></extra>"
    trace = (go.Scatter(x=frame[x], y=frame["cost"], mode="markers", marker={"color": colours, "size": 8},
                        hovertemplate=hover) if per_task
             else go.Bar(x=frame[x], y=frame["cost"], marker_color=colours, hovertemplate=hover))
    figure = go.Figure(trace)
    if limit is not None:
        figure.add_hline(y=limit, line_dash="dash", line_color=RED,
                         annotation_text=f"envelope {limit:g} {currency}", annotation_position="top left")
    figure.update_yaxes(title=currency, rangemode="tozero")
    figure.update_xaxes(title="")
    return _style(figure, height=280)


def escalations_by_tier(items: pd.DataFrame) -> go.Figure:
    frame = items.groupby(["tier", "outcome"]).size().reset_index(name="escalations")
    frame["tier"] = "tier " + frame["tier"].astype("Int64").astype(str)
    figure = px.bar(frame, x="tier", y="escalations", color="outcome", color_discrete_map=RESOLUTION_COLOURS,
                    labels={"tier": "", "outcome": ""})
    figure.update_xaxes(categoryorder="category ascending")
    return _style(figure, height=300)


def decision_times(items: pd.DataFrame) -> go.Figure:
    """Minutes from request to decision per escalation, each with its own SLA marked."""
    frame = items.assign(minutes=items["time_to_decision_s"] / 60, sla_minutes=items["sla_seconds"] / 60,
                         late=["late" if b is True else "within SLA" if b is False else "no SLA"
                               for b in items["sla_breached"]])
    figure = px.scatter(frame, x="requested_at", y="minutes", color="late",
                        color_discrete_map={"late": RED, "within SLA": GREEN, "no SLA": GREY},
                        hover_data={"agent_id": True, "tool_name": True, "outcome": True, "approver_id": True},
                        labels={"requested_at": "requested (UTC)", "minutes": "minutes to decision", "late": ""})
    figure.update_traces(marker={"size": 11})
    figure.add_trace(go.Scatter(x=frame["requested_at"], y=frame["sla_minutes"], mode="markers", name="SLA",
                                marker={"symbol": "line-ew-open", "size": 22, "color": GREY, "line": {"width": 2}},
                                hovertemplate="SLA %{y:.0f} min<extra></extra>"))
    return _style(figure, height=300)


def drift_scores(scored: pd.DataFrame, threshold: float) -> go.Figure:
    figure = px.line(scored.sort_values("time"), x="time", y="score", color="agent_id", markers=True,
                     labels={"time": "time (UTC)", "score": "drift score", "agent_id": "agent"})
    alerts = scored[scored["alert"]]
    if len(alerts):
        figure.add_trace(go.Scatter(x=alerts["time"], y=alerts["score"], mode="markers", name="alert",
                                    marker={"symbol": "circle-open", "size": 16, "color": RED, "line": {"width": 2}},
                                    hovertext=[", ".join(m) for m in alerts["moved"]], hoverinfo="text"))
    figure.add_hline(y=threshold, line_dash="dash", line_color=RED, annotation_text="alert threshold")
    return _style(figure, height=320)


def _outcome_class(outcome: Any, effect: Any) -> str:
    outcome = str(outcome or "")
    if outcome.startswith("blocked"):
        return "blocked"
    if outcome.startswith("error"):
        return "error"
    return "escalated" if effect == "escalate" else "ok"


def _style(figure: go.Figure, height: int) -> go.Figure:
    figure.update_layout(
        template="plotly_white", height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10},
        font={"family": "Source Sans Pro, Helvetica, Arial, sans-serif", "size": 13},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title": None},
    )
    return figure
