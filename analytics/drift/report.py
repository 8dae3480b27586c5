"""The drift report of an agent: its baseline, model versions, task alerts, drift alarms, windows.

Built from the drift side file alone, so it reads the same while the collector ingests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from govtrace.analytics.drift.detector import DESCRIPTIONS, FEATURES
from govtrace.analytics.drift.jobs import cold_start_message
from govtrace.analytics.drift.store import DriftStore

WINDOW_SUMS = ["tool_calls", "tool_errors", "llm_calls", "input_tokens", "output_tokens", "cost", "denials",
               "escalations", "unseen_tools", "unseen_targets", "unseen_values"]


def build_report(store: DriftStore, agents: list[str] | None = None, *, window: str = "day",
                 limit: int = 10) -> list[dict[str, Any]]:
    if window not in ("hour", "day"):
        raise ValueError(f"window must be 'hour' or 'day', got {window!r}")
    out = []
    for agent in agents or store.agents():
        baseline = store.load_baseline(agent)
        if baseline is None:
            out.append({"agent_id": agent, "status": "no_baseline"})
            continue
        scores = store.scores(agent, baseline.version)
        events = store.events(agent, baseline.version)
        report: dict[str, Any] = {"agent_id": agent, "status": baseline.status, "baseline": baseline.describe(),
                                  "scored_tasks": int(len(scores))}
        if baseline.cold_start:
            report["message"] = cold_start_message(baseline)
        report["models"] = _models(baseline.models, scores, events)
        alerts = scores[scores["alert"].astype(bool)].sort_values("score", ascending=False)
        report["alerts"] = {"count": int(len(alerts)), "share": float(len(alerts) / len(scores)) if len(scores) else 0.0,
                            "top": [_alert(trace_id, row) for trace_id, row in alerts.head(limit).iterrows()]}
        report["drift"] = [e for e in events if e["kind"] == "drift"]
        report["windows"] = _windows(baseline, scores, window)
        out.append(report)
    return out


def _models(baseline_models: dict[str, int], scores: pd.DataFrame, events: list[dict[str, Any]]) -> dict[str, Any]:
    seen = scores["model"].dropna().value_counts().to_dict() if len(scores) else {}
    return {"baseline": baseline_models, "scored": {str(k): int(v) for k, v in seen.items()},
            "changes": [{"at": e["at"], "trace_id": e["trace_id"], **e["detail"]}
                        for e in events if e["kind"] == "model_change"]}


def _alert(trace_id: str, row: pd.Series) -> dict[str, Any]:
    return {"trace_id": trace_id, "start_time": row["start_time"], "model": row["model"],
            "score": float(row["score"]), "threshold": float(row["threshold"]),
            "moved": row["moved"] or [], "unseen": row["unseen"] or {}}


def _windows(baseline, scores: pd.DataFrame, window: str) -> list[dict[str, Any]]:
    """Per hour or day: volume, sums of countable behaviour, alerts, and the features whose window
    mean lies more than 3 standard errors from the baseline mean (named with both means)."""
    if scores.empty:
        return []
    train = baseline.train[FEATURES]
    mean, std = train.mean(), train.std(ddof=0).replace(0.0, np.nan)
    frequency = "h" if window == "hour" else "D"
    rows = []
    for start, group in scores.groupby(pd.to_datetime(scores["start_time"]).dt.floor(frequency), sort=True):
        entry: dict[str, Any] = {"window_start": start, "tasks": int(len(group)), "alerts": int(group["alert"].sum()),
                                 "mean_score": None if group["score"].isna().all() else float(group["score"].mean()),
                                 "models": sorted(group["model"].dropna().unique().tolist())}
        entry.update({name: float(group[name].sum()) for name in WINDOW_SUMS})
        moved = []
        if len(train):
            z = (group[FEATURES].mean() - mean) / (std / np.sqrt(len(group)))
            for name in z.index[z.abs() > 3].tolist():
                moved.append({"feature": name, "window_mean": float(group[name].mean()),
                              "baseline_mean": float(mean[name]), "z": float(z[name])})
            moved.sort(key=lambda m: -abs(m["z"]))
        entry["moved"] = moved
        rows.append(entry)
    return rows


def render(reports: list[dict[str, Any]], limit_windows: int = 14) -> str:
    lines: list[str] = []
    for report in reports:
        agent = report["agent_id"]
        if report["status"] == "no_baseline":
            lines += [f"[{agent}] no baseline: run 'govtrace drift fit --agent {agent}'", ""]
            continue
        base = report["baseline"]
        window = f"{_t(base['since']) or 'beginning'} .. {_t(base['until']) or _t(base['fitted_at'])}"
        lines.append(f"[{agent}] baseline v{base['version']}: {base['tasks']} tasks, {window}, seed {base['seed']}, "
                     f"status {report['status']}")
        if report.get("message"):
            lines.append(f"  ! {report['message']}")
        for note in base.get("notes") or []:
            lines.append(f"  ! {note}")
        models = report["models"]
        lines.append(f"  models in baseline: {_counts(models['baseline'])}; scored: {_counts(models['scored'])}")
        for change in models["changes"]:
            lines.append(f"  ! model version change: {change['model']} first at {_t(change['at'])} "
                         f"(trace {change['trace_id']}, {change['tasks']} tasks), baseline had "
                         f"{', '.join(change['baseline_models']) or 'none'}")
        alerts = report["alerts"]
        lines.append(f"  task alerts: {alerts['count']} of {report['scored_tasks']} scored tasks "
                     f"({alerts['share']:.1%}); threshold {base['threshold'] if base['threshold'] is None else round(base['threshold'], 3)}")
        for alert in alerts["top"]:
            lines.append(f"    {_t(alert['start_time'])} trace {alert['trace_id']} score {alert['score']:.3f}")
            for moved in alert["moved"]:
                lines.append(f"      {moved['feature']} {moved['direction']}: {moved['value']:g} (baseline median "
                             f"{moved['baseline_median']:g}, p99 {moved['baseline_p99']:g}, above "
                             f"{moved['baseline_share_below']:.0%} of baseline tasks) - {DESCRIPTIONS[moved['feature']]}")
            for kind, items in alert["unseen"].items():
                label = (kind if kind in ("closest baseline task", "not in the closest baseline task")
                         else f"{kind[5:]} seen in one baseline task only" if kind.startswith("rare ")
                         else f"never seen {kind}")
                lines.append(f"      {label}: {'; '.join(items)}")
        for event in report["drift"]:
            detail = event["detail"]
            lines.append(f"  ! drift at {_t(event['at'])} after {detail['after_tasks']} scored tasks (trace {event['trace_id']}):")
            for moved in detail["moved"]:
                change = "" if moved["change"] is None else f" ({moved['change']:+.0%})"
                lines.append(f"      {moved['feature']} {moved['direction']}: mean {moved['recent_mean']:.3g} over the "
                             f"last {moved['tasks']} tasks vs {moved['baseline_mean']:.3g} in the baseline{change}")
        if report["windows"]:
            lines.append("  windows:")
            for entry in report["windows"][-limit_windows:]:
                moved = ", ".join(f"{m['feature']} {m['window_mean']:.3g} vs {m['baseline_mean']:.3g}" for m in entry["moved"][:3])
                score = "-" if entry["mean_score"] is None else f"{entry['mean_score']:.3f}"
                lines.append(f"    {_t(entry['window_start'])}  tasks {entry['tasks']:>5}  alerts {entry['alerts']:>4}  "
                             f"mean score {score}  tool calls {entry['tool_calls']:g}  errors {entry['tool_errors']:g}"
                             f"{'  moved: ' + moved if moved else ''}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in sorted(counts.items())) or "none recorded"


def _t(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S")
