"""Where baselines, scores and drift events live: a DuckDB side file next to the store, not in it.

The collector's single writer owns the live database, and no second process may open it; drift
results are derived data (recomputable from the spans) that the CLI writes while the collector
runs. So they go to their own file, ``<db>.drift.duckdb`` by default, written only by the drift
commands. A baseline is stored as its inputs (training rows, vocabulary, seed, parameters and the
scikit-learn version) and the forest is rebuilt from them: reproducible, and no pickles to trust.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import sklearn

from govtrace.analytics.drift.detector import FEATURES, Baseline, DetectorParams
from govtrace.analytics.drift.features import LEAF_ENCODING
from govtrace.analytics.drift.novelty import Vocabulary
from govtrace.analytics.drift.sequential import Mewma
from govtrace.collector.schema import apply_migrations


def _v1(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""CREATE TABLE drift_baselines (
        agent_id VARCHAR, version INTEGER, fitted_at TIMESTAMP, since TIMESTAMP, until TIMESTAMP,
        status VARCHAR, n_tasks INTEGER, threshold DOUBLE, features VARCHAR[], params VARCHAR,
        models VARCHAR, excluded_models VARCHAR[], chart VARCHAR, software VARCHAR,
        PRIMARY KEY (agent_id, version))""")
    con.execute("""CREATE TABLE drift_baseline_tasks (
        agent_id VARCHAR, version INTEGER, trace_id VARCHAR, start_time TIMESTAMP, model VARCHAR,
        oof_score DOUBLE, x DOUBLE[])""")
    con.execute("""CREATE TABLE drift_vocabulary (
        agent_id VARCHAR, version INTEGER, kind VARCHAR, key UBIGINT, item UBIGINT, tasks INTEGER, text VARCHAR)""")
    con.execute("""CREATE TABLE drift_scores (
        agent_id VARCHAR, version INTEGER, trace_id VARCHAR, start_time TIMESTAMP, model VARCHAR,
        score DOUBLE, threshold DOUBLE, alert BOOLEAN, new_model BOOLEAN, x DOUBLE[],
        moved VARCHAR, unseen VARCHAR, scored_at TIMESTAMP)""")
    con.execute("""CREATE TABLE drift_events (
        agent_id VARCHAR, version INTEGER, occurred_at TIMESTAMP, kind VARCHAR, trace_id VARCHAR, detail VARCHAR)""")


def _v2(con: duckdb.DuckDBPyConnection) -> None:
    # What each baseline task touched (the vocabulary's own task numbering), for ``uncovered``.
    con.execute("""CREATE TABLE drift_baseline_items (
        agent_id VARCHAR, version INTEGER, task INTEGER, item UBIGINT, trace_id VARCHAR)""")


# Ordered, named, applied once each (the same shape as collector.schema's migrations, in this file).
MIGRATIONS: list[tuple[str, Callable[[duckdb.DuckDBPyConnection], None]]] = [
    ("drift_0001_tables", _v1), ("drift_0002_baseline_items", _v2)]


class StaleBaseline(ValueError):
    """A stored baseline fitted with another feature set: it cannot score, it must be refitted."""


def default_path(db: str | None) -> str:
    """``<db>.drift.duckdb`` beside the database, else ``govtrace.drift.duckdb`` here."""
    return f"{db}.drift.duckdb" if db else "govtrace.drift.duckdb"


class DriftStore:
    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = str(path)
        if read_only and not Path(self.path).exists():
            raise FileNotFoundError(f"no drift results at {self.path}: run 'govtrace drift fit' first")
        self.con = duckdb.connect(self.path, read_only=read_only)
        if not read_only:
            _migrate(self.con)

    def __enter__(self) -> DriftStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # --- baselines --------------------------------------------------------------------------------
    def save_baseline(self, baseline: Baseline) -> int:
        con = self.con
        version = con.execute("SELECT coalesce(max(version), 0) + 1 FROM drift_baselines WHERE agent_id = ?",
                              [baseline.agent_id]).fetchone()[0]
        fitted_at = baseline.fitted_at or datetime.now(UTC)
        con.execute("BEGIN")
        try:
            con.execute(
                "INSERT INTO drift_baselines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [baseline.agent_id, version, _naive(fitted_at), _naive(baseline.since), _naive(baseline.until),
                 baseline.status, baseline.n_tasks, _finite(baseline.threshold), FEATURES,
                 json.dumps(baseline.params_dict()), json.dumps(baseline.models), list(baseline.excluded_models),
                 json.dumps(baseline.chart.to_dict()) if baseline.chart else None, json.dumps(baseline.software)])
            meta = baseline.tasks_meta.reindex(baseline.train.index)
            tasks = pa.table({
                "agent_id": pa.array([baseline.agent_id] * len(baseline.train), pa.string()),
                "version": pa.array([version] * len(baseline.train), pa.int32()),
                "trace_id": pa.array(baseline.train.index.astype(str).tolist(), pa.string()),
                "start_time": pa.array(pd.to_datetime(meta["start_time"]).astype("datetime64[us]").to_numpy()),
                "model": pa.array(meta["model"].tolist(), pa.string()),
                "oof_score": pa.array(baseline.oof_scores, pa.float64()),
                "x": _matrix(baseline.train[FEATURES].to_numpy()),
            })
            con.register("_incoming", tasks)
            con.execute("INSERT INTO drift_baseline_tasks SELECT * FROM _incoming")
            con.unregister("_incoming")
            vocab = baseline.vocab.items.assign(agent_id=baseline.agent_id, version=version)
            vocab["kind"] = vocab["kind"].astype(str)
            con.register("_incoming", vocab[["agent_id", "version", "kind", "key", "item", "tasks", "text"]])
            con.execute("INSERT INTO drift_vocabulary SELECT * FROM _incoming")
            con.unregister("_incoming")
            members = baseline.vocab.members
            if members is not None and not members.empty:
                con.register("_incoming", pa.table({
                    "agent_id": pa.array([baseline.agent_id] * len(members), pa.string()),
                    "version": pa.array([version] * len(members), pa.int32()),
                    "task": pa.array(members["task"].to_numpy(dtype=np.int32)),
                    "item": pa.array(members["item"].to_numpy(dtype=np.uint64)),
                    "trace_id": pa.array(members["trace_id"].astype(str).tolist(), pa.string())}))
                con.execute("INSERT INTO drift_baseline_items SELECT * FROM _incoming")
                con.unregister("_incoming")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        baseline.version = version
        baseline.fitted_at = fitted_at
        return version

    def load_baseline(self, agent_id: str, version: int | None = None) -> Baseline | None:
        con = self.con
        row = con.execute(
            "SELECT * FROM drift_baselines WHERE agent_id = ? AND (? IS NULL OR version = ?) "
            "ORDER BY version DESC LIMIT 1", [agent_id, version, version]).fetchdf()
        if row.empty:
            return None
        meta = row.iloc[0]
        stored_features = list(meta["features"])
        if stored_features != FEATURES:
            raise StaleBaseline(f"baseline {agent_id} v{meta['version']} was fitted with other features "
                             f"({len(stored_features)}); refit it with 'govtrace drift fit'")
        software = json.loads(meta["software"])
        if software.get("leaves") != LEAF_ENCODING:
            raise StaleBaseline(f"baseline {agent_id} v{meta['version']} was fitted with items read another way "
                                f"(encoding {software.get('leaves', 1)}, now {LEAF_ENCODING}); "
                                f"refit it with 'govtrace drift fit'")
        version = int(meta["version"])
        tasks = con.execute("SELECT trace_id, start_time, model, oof_score, x FROM drift_baseline_tasks "
                            "WHERE agent_id = ? AND version = ? ORDER BY rowid", [agent_id, version]).fetchdf()
        train = pd.DataFrame(np.array(tasks["x"].tolist(), dtype=float).reshape(len(tasks), len(FEATURES)),
                             index=pd.Index(tasks["trace_id"], name="trace_id"), columns=FEATURES)
        items = con.execute("SELECT kind, key, item, tasks, text FROM drift_vocabulary WHERE agent_id = ? "
                            "AND version = ? ORDER BY item", [agent_id, version]).fetchdf()
        members = con.execute("SELECT task, item, trace_id FROM drift_baseline_items WHERE agent_id = ? AND version = ? "
                              "ORDER BY task, item", [agent_id, version]).fetchdf()
        stored = json.loads(meta["params"])
        params = DetectorParams(**{**stored, "forest_features": tuple(stored["forest_features"])})
        baseline = Baseline(
            agent_id=agent_id, params=params, status=meta["status"], n_tasks=int(meta["n_tasks"]),
            vocab=Vocabulary(int(meta["n_tasks"]), items, members), models=json.loads(meta["models"]), train=train,
            oof_scores=tasks["oof_score"].to_numpy(dtype=float),
            threshold=float("inf") if pd.isna(meta["threshold"]) else float(meta["threshold"]),
            chart=Mewma.from_dict(json.loads(meta["chart"])) if meta["chart"] else None,
            since=_utc(meta["since"]), until=_utc(meta["until"]), excluded_models=tuple(meta["excluded_models"]),
            version=version, fitted_at=_utc(meta["fitted_at"]), software=software,
            tasks_meta=tasks.set_index("trace_id")[["start_time", "model"]],
        )
        if software.get("scikit-learn") != sklearn.__version__:
            baseline.notes.append(f"fitted with scikit-learn {software.get('scikit-learn')}, running "
                                  f"{sklearn.__version__}: scores may differ slightly; refit to be exact")
        return baseline

    def agents(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT DISTINCT agent_id FROM drift_baselines ORDER BY 1").fetchall()]

    def baselines(self, agent_id: str | None = None) -> pd.DataFrame:
        return self.con.execute(
            "SELECT agent_id, version, fitted_at, since, until, status, n_tasks, threshold, models, excluded_models "
            "FROM drift_baselines WHERE ? IS NULL OR agent_id = ? ORDER BY agent_id, version",
            [agent_id, agent_id]).fetchdf()

    # --- scores and events -----------------------------------------------------------------------
    def save_scores(self, baseline: Baseline, scored: pd.DataFrame) -> int:
        """Store (or replace) the scores of these tasks under this baseline version."""
        if scored.empty:
            return 0
        n = len(scored)
        table = pa.table({
            "agent_id": pa.array([baseline.agent_id] * n, pa.string()),
            "version": pa.array([baseline.version] * n, pa.int32()),
            "trace_id": pa.array(scored.index.astype(str).tolist(), pa.string()),
            "start_time": pa.array(pd.to_datetime(scored["start_time"]).astype("datetime64[us]").to_numpy()),
            "model": pa.array(scored["model"].tolist(), pa.string()),
            "score": pa.array(scored["score"].to_numpy(dtype=float), pa.float64(), from_pandas=True),
            "threshold": pa.array([_finite(baseline.threshold)] * n, pa.float64()),
            "alert": pa.array(scored["alert"].to_numpy(dtype=bool)),
            "new_model": pa.array(scored["new_model"].to_numpy(dtype=bool)),
            "x": _matrix(scored[FEATURES].to_numpy(dtype=float)),
            "moved": pa.array([None if m is None else json.dumps(m) for m in scored["moved"]], pa.string()),
            "unseen": pa.array([None if u is None else json.dumps(u) for u in scored["unseen"]], pa.string()),
            "scored_at": pa.array([_naive(datetime.now(UTC))] * n, pa.timestamp("us")),
        })
        con = self.con
        con.execute("BEGIN")
        try:
            con.register("_incoming", table)
            con.execute("DELETE FROM drift_scores WHERE agent_id = ? AND version = ? "
                        "AND trace_id IN (SELECT trace_id FROM _incoming)", [baseline.agent_id, baseline.version])
            con.execute("INSERT INTO drift_scores SELECT * FROM _incoming")
            con.unregister("_incoming")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        return n

    def scores(self, agent_id: str, version: int) -> pd.DataFrame:
        frame = self.con.execute(
            "SELECT trace_id, start_time, model, score, threshold, alert, new_model, x, moved, unseen "
            "FROM drift_scores WHERE agent_id = ? AND version = ? ORDER BY start_time, trace_id",
            [agent_id, version]).fetchdf()
        features = pd.DataFrame(np.array(frame["x"].tolist(), dtype=float).reshape(len(frame), len(FEATURES)),
                                columns=FEATURES, index=frame.index)
        frame = pd.concat([frame.drop(columns=["x"]), features], axis=1).set_index("trace_id")
        for column in ("moved", "unseen"):
            frame[column] = [json.loads(v) if isinstance(v, str) else None for v in frame[column]]
        return frame

    def replace_events(self, agent_id: str, version: int, events: list[dict[str, Any]]) -> None:
        con = self.con
        con.execute("BEGIN")
        try:
            con.execute("DELETE FROM drift_events WHERE agent_id = ? AND version = ?", [agent_id, version])
            for event in events:
                con.execute("INSERT INTO drift_events VALUES (?, ?, ?, ?, ?, ?)",
                            [agent_id, version, _naive(event["at"]), event["kind"], event.get("trace_id"),
                             json.dumps(event.get("detail", {}), default=str)])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise

    def events(self, agent_id: str, version: int) -> list[dict[str, Any]]:
        rows = self.con.execute("SELECT occurred_at, kind, trace_id, detail FROM drift_events WHERE agent_id = ? "
                                "AND version = ? ORDER BY occurred_at, kind", [agent_id, version]).fetchall()
        return [{"at": at, "kind": kind, "trace_id": trace_id, "detail": json.loads(detail)}
                for at, kind, trace_id, detail in rows]


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    apply_migrations(con, MIGRATIONS)


def _matrix(values: np.ndarray) -> pa.Array:
    rows, width = values.shape if values.ndim == 2 else (0, len(FEATURES))
    flat = pa.array(values.reshape(-1), pa.float64())
    return pa.FixedSizeListArray.from_arrays(flat, width).cast(pa.list_(pa.float64())) if rows else \
        pa.array([], pa.list_(pa.float64()))


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _naive(moment: datetime | pd.Timestamp | None) -> datetime | None:
    if moment is None or pd.isna(moment):
        return None
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


def _utc(value: Any) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).tz_localize("UTC").to_pydatetime()
