"""The fit and score jobs: read tasks through a Reader, fit or score, write to the drift side file."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd

from govtrace.analytics.drift.detector import Baseline, DetectorParams, fit_baseline
from govtrace.analytics.drift.features import agents as agents_in
from govtrace.analytics.drift.features import load_many
from govtrace.analytics.drift.store import DriftStore
from govtrace.analytics.reader import Reader


def fit_agents(reader: Reader, store: DriftStore, agents: Iterable[str] | None = None, *,
               since: datetime | None = None, until: datetime | None = None,
               exclude_models: tuple[str, ...] = (), params: DetectorParams | None = None,
               progress: bool = False) -> list[dict[str, Any]]:
    """Fit and store a new baseline version per agent on its tasks in [since, until)."""
    params = params or DetectorParams()
    names = list(agents) if agents else agents_in(reader, since, until)
    fitted = []
    frames = load_many(reader, names, since, until) if names else {}
    for agent in _bar(names, progress, "fit"):
        frame = frames[agent]
        if exclude_models:
            frame = frame.between(exclude_models=exclude_models)
        baseline = fit_baseline(frame, params, since=since, until=until, excluded_models=exclude_models)
        store.save_baseline(baseline)
        fitted.append(baseline.describe())
    return fitted


def score_agents(reader: Reader, store: DriftStore, agents: Iterable[str] | None = None, *,
                 since: datetime | None = None, until: datetime | None = None,
                 progress: bool = False) -> list[dict[str, Any]]:
    """Score each agent's tasks since its latest baseline's window (or ``since``) and store the
    scores, then recompute its drift and model-change events over everything scored so far."""
    summaries = []
    baselines = {agent: store.load_baseline(agent) for agent in (list(agents) if agents else store.agents())}
    # Agents whose scoring window starts at the same moment are read in one pass over the spans.
    starts: dict[datetime | None, list[str]] = {}
    for agent, baseline in baselines.items():
        if baseline is not None:
            starts.setdefault(since or baseline.until or baseline.fitted_at, []).append(agent)
    frames = {}
    for start, names in starts.items():
        frames.update(load_many(reader, names, start, until))
    for agent in _bar(list(baselines), progress, "score"):
        baseline = baselines[agent]
        if baseline is None:
            summaries.append({"agent_id": agent, "status": "no_baseline",
                              "message": f"no baseline for {agent}: run 'govtrace drift fit --agent {agent}'"})
            continue
        scored = baseline.score(frames[agent])
        store.save_scores(baseline, scored)
        history = store.scores(agent, baseline.version)
        events = derive_events(baseline, history)
        store.replace_events(agent, baseline.version, events)
        summaries.append({
            "agent_id": agent, "version": baseline.version, "status": baseline.status,
            "tasks_scored": int(len(scored)), "alerts": int(scored["alert"].sum()),
            "drift_alarms": sum(e["kind"] == "drift" for e in events),
            "model_changes": [e["detail"] for e in events if e["kind"] == "model_change"],
            "message": cold_start_message(baseline) if baseline.cold_start else None,
        })
    return summaries


def derive_events(baseline: Baseline, scored: pd.DataFrame) -> list[dict[str, Any]]:
    """Drift alarms (the MEWMA chart over all scored tasks, in time order) and the first task of each model
    version the baseline never saw."""
    events: list[dict[str, Any]] = []
    ordered = scored.sort_values("start_time", kind="stable")
    for alarm in baseline.drift(ordered):
        trace_id = alarm["trace_id"]
        events.append({"at": ordered.loc[trace_id, "start_time"], "kind": "drift", "trace_id": trace_id,
                       "detail": {"after_tasks": alarm["position"] + 1, "moved": alarm["moved"]}})
    fresh = ordered[ordered["new_model"].astype(bool)]
    for model, group in fresh.groupby("model", sort=False):
        events.append({"at": group["start_time"].iloc[0], "kind": "model_change", "trace_id": group.index[0],
                       "detail": {"model": model, "baseline_models": sorted(baseline.models), "tasks": len(group)}})
    return sorted(events, key=lambda e: (e["at"], e["kind"]))


def cold_start_message(baseline: Baseline) -> str:
    return (f"cold start: the baseline of {baseline.agent_id} has {baseline.n_tasks} tasks, fewer than "
            f"{max(baseline.params.min_tasks, baseline.params.folds * 2)} needed; no alerts until a refit "
            f"over a longer window")


def _bar(items: list[str], enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="agent", disable=not enabled or len(items) < 2)
