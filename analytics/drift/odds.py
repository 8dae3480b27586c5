"""Sanity anchor: our IsolationForest configuration on the ODDS benchmarks against PyOD's published figures.

Same protocol as PyOD's benchmark: 60/40 split, features z-scored with training statistics, the
forest fitted unsupervised on the training part, ROC-AUC on the test part, mean of 10 trials with
one ``RandomState(42)`` driving splits and forests. The forest comes from ``detector.make_forest``
with PyOD's 100 trees, so a regression in how we build forests shows up here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from govtrace.analytics.drift.detector import make_forest

# PyOD docs/tables/roc.csv, IForest column (as quoted in datasets/odds/README.md).
PUBLISHED = {
    "arrhythmia": 0.8139, "cardio": 0.9243, "glass": 0.7016, "ionosphere": 0.8529, "letter": 0.6190,
    "lympho": 0.9913, "mnist": 0.8028, "musk": 0.9994, "optdigits": 0.7145, "pendigits": 0.9435,
    "pima": 0.6681, "satellite": 0.7013, "satimage-2": 0.9934, "shuttle": 0.9967, "vertebral": 0.3874,
    "vowels": 0.7407, "wbc": 0.9325,
}
ANCHORS = ("cardio", "shuttle", "satimage-2", "pendigits")  # large, low variance: within TOLERANCE
EXPECTED_FAILURE = "vertebral"  # below 0.5 for every PyOD detector
TOLERANCE = 0.03


def load_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    data = loadmat(str(path))
    return np.asarray(data["X"], dtype=float), np.asarray(data["y"]).ravel().astype(int)


def roc_auc(x: np.ndarray, y: np.ndarray, trials: int = 10, trees: int = 100) -> tuple[float, float]:
    """Mean and standard deviation of test ROC-AUC over ``trials`` PyOD-style splits."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    state = np.random.RandomState(42)
    scores = []
    for _ in range(trials):
        x_train, x_test, _, y_test = train_test_split(x, y, test_size=0.4, random_state=state)
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std[std == 0] = 1.0
        forest = make_forest(trees, "auto", state.randint(2**31 - 1))
        forest.fit((x_train - mean) / std)
        scores.append(roc_auc_score(y_test, -forest.score_samples((x_test - mean) / std)))
    return float(np.mean(scores)), float(np.std(scores))


def sanity(folder: str | Path, names: list[str] | None = None, trials: int = 10) -> dict[str, Any]:
    """ROC-AUC per dataset next to PyOD's, and whether the anchors hold."""
    folder = Path(folder)
    rows = []
    for name in names or list(PUBLISHED):
        path = folder / f"{name}.mat"
        if not path.exists():
            continue
        x, y = load_mat(path)
        mean, std = roc_auc(x, y, trials)
        row = {"dataset": name, "n": int(len(y)), "d": int(x.shape[1]), "roc_auc": mean, "sd": std,
               "pyod": PUBLISHED[name], "delta": mean - PUBLISHED[name]}
        if name in ANCHORS:
            row["check"] = "pass" if abs(row["delta"]) <= TOLERANCE else "fail"
        elif name == EXPECTED_FAILURE:
            row["check"] = "pass" if mean < 0.5 else "fail"
        rows.append(row)
    checked = [r for r in rows if "check" in r]
    return {"datasets": rows, "anchors_pass": bool(checked) and all(r["check"] == "pass" for r in checked),
            "trials": trials}
