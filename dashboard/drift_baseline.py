"""Drift results in one shape for the views, and a transparent stand-in for the drift module.

``DriftResult`` is what the Drift and Fleet views draw, whichever way the scores were made. The
stand-in below is used when ``govtrace.analytics.drift`` is not installed.

Each agent is compared with itself: for every time bucket and behaviour feature, a robust z-score
against the agent's median and median absolute deviation over the window. A bucket's score is its
largest |z|; it alerts when that passes the threshold, naming the features that moved. Too few
buckets make no baseline, and then nothing is scored rather than everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FEATURES = ("tool_calls", "distinct_tools", "distinct_targets", "error_rate", "denial_rate", "latency_ms",
            "tokens", "cost", "delegation_depth")
THRESHOLD = 3.5
MIN_BUCKETS = 4


@dataclass(frozen=True)
class DriftResult:
    scores: pd.DataFrame  # agent_id, time, score, alert, moved (list of str)
    threshold: float
    method: str
    notes: list[str] = field(default_factory=list)
    bucketed: bool = False  # scored per time bucket (the stand-in) rather than per task

    def alerts(self) -> pd.DataFrame:
        if self.scores.empty:
            return self.scores
        return self.scores[self.scores["alert"]].sort_values("time", ascending=False)


def baseline_result(activity: pd.DataFrame, bucket: str) -> DriftResult:
    scored = score(activity).rename(columns={"bucket": "time"})
    method = (f"Each agent against its own median per feature, in {bucket} buckets ({', '.join(FEATURES)}): the "
              f"score is the largest robust z-score; {THRESHOLD} or more alerts. At least {MIN_BUCKETS} buckets "
              "make a baseline.")
    notes = [f"{agent}: fewer than {MIN_BUCKETS} {bucket} buckets of activity, not scored"
             for agent, group in scored.groupby("agent_id") if group["score"].isna().all()] if len(scored) else []
    return DriftResult(scored, THRESHOLD, method, notes, bucketed=True)


def score(activity: pd.DataFrame, threshold: float = THRESHOLD) -> pd.DataFrame:
    """``activity`` (agent_id, bucket, features) plus ``score``, ``alert`` and ``moved`` columns."""
    if activity.empty:
        return activity.assign(score=pd.Series(dtype=float), alert=pd.Series(dtype=bool),
                               moved=pd.Series(dtype=object))
    parts = []
    for _, group in activity.groupby("agent_id", sort=True):
        parts.append(_score_agent(group.sort_values("bucket"), threshold))
    return pd.concat(parts, ignore_index=True)


def _score_agent(group: pd.DataFrame, threshold: float) -> pd.DataFrame:
    group = group.copy()
    if len(group) < MIN_BUCKETS:
        group["score"], group["alert"], group["moved"] = np.nan, False, [[] for _ in range(len(group))]
        return group
    z = pd.DataFrame(index=group.index)
    for feature in FEATURES:
        values = group[feature].astype(float)
        median = values.median()
        mad = (values - median).abs().median() * 1.4826
        # A feature that never varies still moves when it changes: scale by a tenth of its level.
        scale = max(mad, 0.1 * abs(median), 1e-9)
        z[feature] = (values - median) / scale
    group["score"] = z.abs().max(axis=1)
    group["alert"] = group["score"] >= threshold
    group["moved"] = [
        [f"{feature} {'+' if row[feature] > 0 else '−'}{abs(row[feature]):.1f}σ"
         for feature in sorted(FEATURES, key=lambda f: -abs(row[f])) if abs(row[feature]) >= threshold]
        for _, row in z.iterrows()
    ]
    return group
