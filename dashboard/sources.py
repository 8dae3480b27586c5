"""Analytics that live in other rooms and may not be installed: found at call time, never at import.

Registry, drift and evidence are optional parts of ``govtrace.analytics``. Each function here uses
the real module when it is importable, and otherwise returns ``None`` (or an empty value), so a
view can fall back to what the spans table says on its own and say so.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from types import ModuleType
from typing import Any

import pandas as pd

from govtrace.analytics.reader import Reader
from govtrace.dashboard.drift_baseline import DriftResult


def optional(name: str) -> ModuleType | None:
    """``govtrace.analytics.<name>`` if it is installed, else None (a missing dependency still raises)."""
    full = f"govtrace.analytics.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as exc:
        if exc.name and (full == exc.name or full.startswith(exc.name + ".")):
            return None
        raise


def envelopes(reader: Reader) -> dict[str, dict[str, float]]:
    """Cost envelopes per agent ({"task"|"hour"|"day": limit}), from the registry when there is one."""
    registry = optional("registry")
    if registry is not None and hasattr(registry, "envelopes"):
        return dict(registry.envelopes(reader))
    return {}


def registry_entries(reader: Reader) -> dict[str, dict[str, Any]] | None:
    """Registry entries by agent id, or None when no registry was ever recorded (findings then say less)."""
    registry = optional("registry")
    if registry is not None and hasattr(registry, "entries"):
        return dict(registry.entries(reader)) or None
    return None


def inventory(reader: Reader, now: datetime) -> Any | None:
    """The inventory answer (findings against the recorded registry), or None without a registry."""
    registry, inventory_module = optional("registry"), optional("inventory")
    if registry is None or inventory_module is None:
        return None
    recorded = registry.registry_at(reader, now)
    return inventory_module.inventory(reader, recorded, now=now) if recorded is not None else None


def drift_scores(reader: Reader, since: datetime | None, until: datetime | None,
                 agent: str | None) -> DriftResult | None:
    """Per-task IsolationForest scores from the drift module, or None when it is not installed.

    Each agent's baseline is its tasks before the window (for an open window: the earlier half of its
    tasks); the tasks in the window are scored against it. Scores are shown relative to the agent's
    calibrated threshold, so 1 is the alert line for every agent.
    """
    features, detector = optional("drift.features"), optional("drift.detector")
    if features is None or detector is None:
        return None
    agents = [agent] if agent else features.agents(reader, since, until)
    parts, notes = [], []
    for agent_id in agents:
        history = features.load_tasks(reader, agent_id, None, until)
        if since is not None:
            base, recent = history.between(until=since), history.between(since=since)
        else:
            ids = history.tasks.index
            base, recent = history.subset(ids[: len(ids) // 2]), history.subset(ids[len(ids) // 2:])
        baseline = detector.fit_baseline(base, until=since)
        if baseline.cold_start:
            notes.append(f"{agent_id}: no baseline yet ({len(base)} baseline tasks, "
                         f"{baseline.params.min_tasks} needed)")
            continue
        scored = baseline.score(recent)
        parts.append(pd.DataFrame({
            "agent_id": agent_id, "time": scored["start_time"], "score": scored["score"] / baseline.threshold,
            "alert": scored["alert"].astype(bool), "moved": [_moved(m) for m in scored["moved"]],
            "trace_id": scored.index,
        }))
    scores = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["agent_id", "time", "score", "alert", "moved", "trace_id"])
    method = ("IsolationForest per agent combined with how much of each task its closest baseline task does not "
              "explain (govtrace.analytics.drift): each task in the window is scored against the agent's tasks "
              "before it; 1.0 is the agent's calibrated alert threshold.")
    return DriftResult(scores, 1.0, method, notes)


def _moved(moved: Any) -> list[str]:
    if not isinstance(moved, list):
        return []
    return [f"{m['feature']} {m['direction']} ({m['value']:g}, baseline median {m['baseline_median']:g})"
            for m in moved]
