"""Per-agent baselines: an IsolationForest over task features, a calibrated alert threshold, drift charts.

Fitting a baseline on an agent's tasks in a window:

1. Novelty features of baseline tasks are computed out of fold (K folds by task, seeded): a task is
   compared with the vocabulary of the other folds, as a future task will be compared with all of
   them. Computed in-sample they would all be zero and any unseen value later would look extreme.
2. Two detectors, each calibrated on those out-of-fold rows: the forest's score, and ``uncovered``
   (how much of the task its closest baseline task does not explain, ``novelty``). Each becomes a
   p-value against its own out-of-fold distribution, and the task's score is Fisher's combination
   -ln p_forest - ln p_uncovered: the forest sees volume, errors, cost and novelty counts together,
   the cover sees new combinations of familiar pieces, and neither scale dominates the other.
3. The alert threshold is the (1 - alert_fpr) quantile of the out-of-fold combined scores, so about
   ``alert_fpr`` of tasks like the baseline's alert.
4. The forest that scores new tasks is fitted on all baseline rows, seeded; it is rebuilt from the
   stored rows and seed, never unpickled.
5. A MEWMA drift chart is calibrated on the same out-of-fold rows (``sequential``).

Fewer than ``min_tasks`` baseline tasks is a cold start: the baseline says so and never alerts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import IsolationForest

from govtrace.analytics.drift.features import BEHAVIOUR, LEAF_ENCODING, TaskFrame
from govtrace.analytics.drift.novelty import NOVELTY, Vocabulary
from govtrace.analytics.drift.sequential import Mewma

FEATURES = [name for name, _ in BEHAVIOUR] + [name for name, _ in NOVELTY]
DESCRIPTIONS = dict(BEHAVIOUR + NOVELTY)
# What the forest isolates on: what the agent did, not how long its provider took. Latency and
# duration follow the model provider and the infrastructure more than the agent's decisions, and
# their heavy tails would make every slow call an isolated outlier. They stay in the explanations
# and in the drift charts, where a sustained slow-down is worth an alarm.
TIMING = ("duration_s", "tool_latency_ms")
# ``uncovered`` is the second detector of the ensemble, not a forest feature (it would count twice).
COVER = "uncovered"
FOREST_FEATURES = tuple(name for name in FEATURES if name not in TIMING and name != COVER)


@dataclass(frozen=True)
class DetectorParams:
    trees: int = 200
    max_samples: int = 256
    seed: int = 0
    folds: int = 5
    alert_fpr: float = 0.01
    min_tasks: int = 30
    drift_weight: float = 0.1
    drift_horizon: int = 200
    drift_alarm_prob: float = 0.01
    forest_features: tuple[str, ...] = FOREST_FEATURES


def make_forest(trees: int, max_samples: int | str, seed: int) -> IsolationForest:
    """The one IsolationForest configuration (also used for the ODDS sanity check)."""
    return IsolationForest(n_estimators=trees, max_samples=max_samples, random_state=seed, n_jobs=1)


@dataclass
class Baseline:
    agent_id: str
    params: DetectorParams
    status: str  # "ready" | "cold_start"
    n_tasks: int
    vocab: Vocabulary
    models: dict[str, int]
    train: pd.DataFrame  # FEATURES of baseline tasks (novelty out of fold), index trace_id
    oof_scores: np.ndarray
    threshold: float
    chart: Mewma | None
    since: datetime | None = None
    until: datetime | None = None
    excluded_models: tuple[str, ...] = ()
    version: int | None = None
    fitted_at: datetime | None = None
    software: dict[str, str] = field(default_factory=lambda: {"scikit-learn": sklearn.__version__,
                                                              "leaves": LEAF_ENCODING})
    tasks_meta: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["start_time", "model"]))
    notes: list[str] = field(default_factory=list)
    _forest: IsolationForest | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def cold_start(self) -> bool:
        return self.status == "cold_start"

    def describe(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id, "version": self.version, "status": self.status, "tasks": self.n_tasks,
            "min_tasks": self.params.min_tasks, "since": self.since, "until": self.until,
            "fitted_at": self.fitted_at, "threshold": None if self.cold_start else self.threshold,
            "models": self.models, "excluded_models": list(self.excluded_models), "seed": self.params.seed,
            "trees": self.params.trees, "drift_h": None if self.chart is None else self.chart.h,
            "software": self.software, "notes": self.notes,
        }

    def forest(self) -> IsolationForest:
        if self._forest is None:
            self._forest = make_forest(self.params.trees, min(self.params.max_samples, len(self.train)),
                                       self.params.seed).fit(self.train[list(self.params.forest_features)].to_numpy())
        return self._forest

    def features(self, frame: TaskFrame) -> pd.DataFrame:
        """FEATURES of each task in ``frame`` against this baseline."""
        out = frame.tasks[[name for name, _ in BEHAVIOUR]].copy()
        novelty = self.vocab.novelty(frame.leaves, frame.tasks.index)
        return pd.concat([out, novelty], axis=1)[FEATURES]

    def score(self, frame: TaskFrame, explain: bool = True) -> pd.DataFrame:
        """One row per task: score, alert, new model, features and, for alerts, what moved."""
        x = self.features(frame)
        result = frame.tasks[["start_time", "model"]].copy()
        result["new_model"] = result["model"].notna() & ~result["model"].isin(list(self.models))
        if self.cold_start or x.empty:
            result["score"] = np.nan
            result["forest_score"] = np.nan
            result["alert"] = False
        else:
            forest = -self.forest().score_samples(x[list(self.params.forest_features)].to_numpy())
            result["forest_score"] = forest
            result["score"] = self.combine(forest, x[COVER].to_numpy())
            result["alert"] = result["score"] > self.threshold
        result = pd.concat([result, x], axis=1)
        result["moved"] = None
        result["unseen"] = None
        if explain and result["alert"].any():
            flagged = result.index[result["alert"]]
            result.loc[flagged, "moved"] = pd.Series(self.moved(x.loc[flagged]), index=flagged)
            touched = frame.leaves[frame.leaves["trace_id"].isin(flagged)]
            examples = self.vocab.unseen_examples(touched)
            for trace_id, named in self.vocab.closest(touched, pd.Index(flagged)).items():
                examples.setdefault(trace_id, {}).update(named)
            result.loc[flagged, "unseen"] = pd.Series([examples.get(t, {}) for t in flagged], index=flagged)
        return result

    def combine(self, forest: np.ndarray, uncovered: np.ndarray) -> np.ndarray:
        """Fisher's combination of the two detectors' p-values against the out-of-fold baseline."""
        return combine(self.oof_scores, self.train[COVER].to_numpy(), forest, uncovered)

    def moved(self, x: pd.DataFrame, top: int = 5) -> list[list[dict[str, Any]]]:
        """For each row, the features outside the baseline's central 98 %, furthest first, with the
        value, the baseline median and 99th percentile, and the share of baseline tasks below. The
        combined score can cross the threshold with two features each only in the baseline's outer
        10 % (neither beyond its 99th percentile): then those are named, rarest first."""
        train = self.train[FEATURES].to_numpy()
        ordered = np.sort(train, axis=0)
        median = np.median(train, axis=0)
        low, high = np.quantile(train, 0.01, axis=0), np.quantile(train, 0.99, axis=0)
        spread = np.maximum(high - low, np.maximum(np.abs(median) * 0.1, 1e-9))
        values = x[FEATURES].to_numpy()
        below = np.stack([np.searchsorted(ordered[:, j], values[:, j], side="left") for j in range(len(FEATURES))],
                         axis=1) / max(len(train), 1)
        above = np.stack([len(train) - np.searchsorted(ordered[:, j], values[:, j], side="right")
                          for j in range(len(FEATURES))], axis=1) / max(len(train), 1)
        distance = np.where(values > high, (values - high) / spread, np.where(values < low, (low - values) / spread, 0))
        tail = np.where(values > median, above, np.where(values < median, below, 1.0))
        out = []
        for i in range(len(values)):
            order = [j for j in np.argsort(-distance[i]) if distance[i, j] > 0][:top]
            if not order:
                order = [j for j in np.argsort(tail[i], kind="stable") if tail[i, j] <= 0.1][:top]
            out.append([{
                "feature": FEATURES[j], "value": float(values[i, j]), "baseline_median": float(median[j]),
                "baseline_p99": float(high[j]), "baseline_share_below": float(below[i, j]),
                "baseline_share_above": float(above[i, j]), "direction": "up" if values[i, j] > median[j] else "down",
            } for j in order])
        return out

    def drift(self, scored: pd.DataFrame) -> list[dict[str, Any]]:
        """Drift alarms over scored tasks in time order (see ``sequential.Mewma.run``)."""
        if self.cold_start or self.chart is None or scored.empty:
            return []
        ordered = scored.sort_values("start_time", kind="stable")
        return self.chart.run(ordered[FEATURES + ["score"]])

    def params_dict(self) -> dict[str, Any]:
        return asdict(self.params)


def fit_baseline(frame: TaskFrame, params: DetectorParams = DetectorParams(), *, since: datetime | None = None,
                 until: datetime | None = None, excluded_models: tuple[str, ...] = ()) -> Baseline:
    """Fit an agent's baseline on the tasks of ``frame`` (the caller chose the window)."""
    n = len(frame)
    vocab = Vocabulary.from_leaves(frame.leaves, n)
    models = {str(k): int(v) for k, v in frame.tasks["model"].dropna().value_counts().items()}
    common = dict(agent_id=frame.agent_id, params=params, n_tasks=n, vocab=vocab, models=models, since=since,
                  until=until, excluded_models=tuple(excluded_models), fitted_at=datetime.now(UTC),
                  tasks_meta=frame.tasks[["start_time", "model"]].copy())
    if n < max(params.min_tasks, params.folds * 2):
        # Cold start: too few tasks to know what normal is. The vocabulary is kept (the report can
        # still list what is new), but nothing is scored or alerted until a refit has enough.
        empty = pd.DataFrame(columns=FEATURES, dtype=float)
        return Baseline(status="cold_start", train=empty, oof_scores=np.array([]), threshold=float("inf"),
                        chart=None, **common)
    train, oof = _out_of_fold(frame, params)
    combined = combine(oof, train[COVER].to_numpy(), oof, train[COVER].to_numpy())
    threshold = float(np.quantile(combined, 1.0 - params.alert_fpr, method="higher"))
    chart = Mewma.calibrate(train.assign(score=combined), weight=params.drift_weight, horizon=params.drift_horizon,
                            alarm_prob=params.drift_alarm_prob, seed=params.seed)
    return Baseline(status="ready", train=train, oof_scores=oof, threshold=threshold, chart=chart, **common)


def combine(reference_forest: np.ndarray, reference_cover: np.ndarray, forest: np.ndarray,
            uncovered: np.ndarray) -> np.ndarray:
    """-ln p_forest - ln p_cover, each p the share of baseline (out-of-fold) values at least as large,
    (1 + count) / (1 + n); a baseline row compared with its own reference counts itself once."""
    return -np.log(_tail(reference_forest, forest)) - np.log(_tail(reference_cover, uncovered))


def _tail(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    ordered = np.sort(np.asarray(reference, dtype=float))
    above = len(ordered) - np.searchsorted(ordered, np.asarray(values, dtype=float), side="left")
    return (1.0 + above) / (1.0 + len(ordered))


def _out_of_fold(frame: TaskFrame, params: DetectorParams) -> tuple[pd.DataFrame, np.ndarray]:
    ids = frame.tasks.index
    rng = np.random.default_rng(params.seed)
    fold = pd.Series(rng.permutation(len(ids)) % params.folds, index=ids)
    leaf_fold = frame.leaves["trace_id"].map(fold).to_numpy()
    train = frame.tasks[[name for name, _ in BEHAVIOUR]].copy()
    novelty = pd.DataFrame(0.0, index=ids, columns=[name for name, _ in NOVELTY])
    for f in range(params.folds):
        inside = ids[fold.to_numpy() == f]
        rest = frame.leaves[leaf_fold != f]
        vocab = Vocabulary.from_leaves(rest, len(ids) - len(inside))
        novelty.loc[inside] = vocab.novelty(frame.leaves[leaf_fold == f], inside).to_numpy()
    train = pd.concat([train, novelty], axis=1)[FEATURES]
    x = train[list(params.forest_features)].to_numpy()
    oof = np.empty(len(ids))
    for f in range(params.folds):
        held = fold.to_numpy() == f
        forest = make_forest(params.trees, min(params.max_samples, int((~held).sum())), params.seed + 1 + f)
        oof[held] = -forest.fit(x[~held]).score_samples(x[held])
    return train, oof
