"""Drift over a stream of tasks: a multivariate EWMA chart (MEWMA, Lowry et al. 1992).

One unusual task is an alert for the forest; a model update or a slow scope creep is many tasks
each a little different, often in several features at once (fewer calls, fewer turns, fewer
errors). The chart keeps an exponentially weighted mean of each task's standardized features and
raises a drift alarm when that mean's Hotelling distance from the baseline crosses ``h``.
One chart for all features pools the evidence that separate per-feature charts would have to
share out under one family-wise false-alarm budget.

``h`` is calibrated on the baseline alone: streams resampled from the baseline's out-of-fold rows
must not cross it within ``horizon`` tasks more often than ``alarm_prob``. Standardized values are
clipped so that one extreme task moves the chart by a bounded step: single tasks are the forest's
job, sustained shifts the chart's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Mewma:
    features: list[str]
    center: list[float]
    scale: list[float]
    offset: list[float]  # mean of the clipped baseline values: an in-control chart is centred
    covariance: list[list[float]]  # of the clipped, centred baseline values (ridge added)
    weight: float = 0.1  # lambda: each task's weight; about 2/lambda tasks dominate the mean
    clip: float = 3.0
    h: float = float("inf")
    calibration: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def calibrate(cls, rows: pd.DataFrame, *, weight: float = 0.1, clip: float = 3.0, ridge: float = 0.05,
                  horizon: int = 200, alarm_prob: float = 0.01, streams: int = 2000, seed: int = 0) -> Mewma:
        """A chart over the columns of ``rows`` that vary in the baseline, ``h`` set by resampling.

        The chart's centre and covariance are estimates from a finite baseline; a stream from the
        same behaviour sits a little off them, and with a small baseline that alone would cross an
        ``h`` calibrated as if they were exact. So each resampled stream is run on a chart refitted
        to a bootstrap replicate of the baseline, and ``h`` covers estimation error too.
        """
        varying = [c for c in rows.columns if rows[c].nunique() > 1]
        values = rows[varying].to_numpy(dtype=float)
        chart = cls(varying, [], [], [], [], weight, clip)
        chart._fit(values, ridge)
        if varying:
            rng = np.random.default_rng(seed)
            replicates = max(1, streams // 20)
            peaks = []
            for _ in range(replicates):
                twin = cls(varying, [], [], [], [], weight, clip)
                twin._fit(values[rng.integers(0, len(values), size=len(values))], ridge)
                stream = values[rng.integers(0, len(values), size=(streams // replicates, horizon))]
                z = twin._clipped(stream) - np.asarray(twin.offset)
                peaks.append(twin._statistics(z).max(axis=1))
            chart.h = float(np.quantile(np.concatenate(peaks), 1.0 - alarm_prob))
        chart.calibration = {"horizon": horizon, "alarm_prob": alarm_prob, "streams": streams, "seed": seed,
                             "baseline_rows": int(len(rows)), "ridge": ridge}
        return chart

    def _fit(self, values: np.ndarray, ridge: float) -> None:
        width = values.shape[1]
        self.center = values.mean(axis=0).tolist()
        self.scale = np.maximum(values.std(axis=0), 1e-9).tolist()
        z = self._clipped(values)
        self.offset = z.mean(axis=0).tolist()
        centred = z - np.asarray(self.offset)
        self.covariance = (np.cov(centred, rowvar=False).reshape(width, width) + ridge * np.eye(width)).tolist()

    def run(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        """Drift alarms over ``rows`` in order. At each alarm: the features whose weighted mean moved
        most (in standard errors of that mean), their recent and baseline means; then the chart
        restarts from the baseline."""
        if not self.features or rows.empty:
            return []
        values = rows.reindex(columns=self.features).fillna(0.0).to_numpy(dtype=float)
        z = self._clipped(values) - np.asarray(self.offset)
        alarms: list[dict[str, Any]] = []
        start = 0
        while start < len(z):
            statistic, ewma, spread = self._trace(z[start:])
            crossed = np.flatnonzero(statistic > self.h)
            if crossed.size == 0:
                break
            t = int(crossed[0])
            position = start + t
            deviation = ewma[t] / spread[t]
            recent = values[max(start, position + 1 - int(round(2 / self.weight))):position + 1]
            moved = []
            for j in np.argsort(-np.abs(deviation))[:5]:
                if abs(deviation[j]) < 2.0:
                    break
                mean = float(recent[:, j].mean())
                moved.append({"feature": self.features[j], "direction": "up" if deviation[j] > 0 else "down",
                              "recent_mean": mean, "baseline_mean": self.center[j], "tasks": len(recent),
                              "change": _relative(mean, self.center[j]), "deviation": float(deviation[j])})
            alarms.append({"position": position, "trace_id": rows.index[position], "statistic": float(statistic[t]),
                           "h": self.h, "moved": moved})
            start = position + 1
        return alarms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mewma:
        return cls(**data)

    # --- the chart ------------------------------------------------------------------------------
    def _trace(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Statistic, weighted mean and its per-feature standard error at every step of one stream.

        The weighted mean's steady-state covariance is used from the first task on (no fast initial
        response): the first few tasks, barely averaged, would otherwise set ``h`` by themselves."""
        lam = self.weight
        sigma = np.asarray(self.covariance)
        ewma = np.zeros_like(z)
        current = np.zeros(z.shape[1])
        for t in range(len(z)):
            current = lam * z[t] + (1 - lam) * current
            ewma[t] = current
        factor = np.full(len(z), lam / (2 - lam))
        inverse = np.linalg.inv(sigma)
        statistic = np.einsum("ti,ij,tj->t", ewma, inverse, ewma) / factor
        spread = np.sqrt(np.outer(factor, np.diag(sigma)))
        return statistic, ewma, spread

    def _statistics(self, z: np.ndarray) -> np.ndarray:
        """The statistic for a batch of streams (streams, steps, features)."""
        lam = self.weight
        inverse = np.linalg.inv(np.asarray(self.covariance))
        current = np.zeros((z.shape[0], z.shape[2]))
        out = np.empty(z.shape[:2])
        for t in range(z.shape[1]):
            current = lam * z[:, t] + (1 - lam) * current
            factor = lam / (2 - lam)
            out[:, t] = np.einsum("si,ij,sj->s", current, inverse, current) / factor
        return out

    def _clipped(self, values: np.ndarray) -> np.ndarray:
        return np.clip((values - np.asarray(self.center)) / np.asarray(self.scale), -self.clip, self.clip)


def _relative(value: float, reference: float) -> float | None:
    return None if reference == 0 else (value - reference) / abs(reference)
