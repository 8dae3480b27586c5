"""Cost: per span, per task, hour and day, against each agent's envelope, with anomalies.

The cost of a span is the amount it reports; when it reports none, its tokens times the offline
price of its model (``prices.yaml``, versioned, its source and date recorded on the answer); else
unknown, and the answer says how many spans that is. A task is one trace's work by one agent; hours
and days are those of the spans' start times (UTC), so a task running over midnight charges both
days.

Breaches compare each task, hour and day with the agent's envelope (``per_task``, ``per_hour``,
``per_day`` from the registry). An anomaly is a day on which an agent's cost per task exceeds
``anomaly_factor`` (1.5) times its own baseline: its cost per task over the ``baseline_days`` (7)
days before, when those hold at least ``min_baseline_tasks`` tasks.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from govtrace.analytics.reader import Reader
from govtrace.analytics.readiness import UNKNOWN, Answer, _records, _who, count
from govtrace.analytics.views import DEDUP_COLUMNS, Scope, compose, store_columns

PRICES_FILE = Path(__file__).with_name("prices.yaml")
COSTED = "cost_amount IS NOT NULL OR input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR operation = 'chat'"


class PriceError(ValueError):
    """The price table is unusable; names the file and the entry."""


@dataclass(frozen=True)
class ModelPrice:
    model: str
    input_per_mtok: float
    output_per_mtok: float


@dataclass(frozen=True)
class PriceTable:
    version: str
    as_of: str
    source: str
    currency: str
    digest: str  # sha256 of the file's bytes
    models: dict[str, ModelPrice] = field(default_factory=dict)

    def price(self, model: str | None) -> ModelPrice | None:
        """The price of a model name as spans report it: exact, or the longest listed name it
        extends ("gpt-4o-mini-2024-07-18" is gpt-4o-mini), ignoring a provider prefix."""
        if not model:
            return None
        name = model.strip().lower().rsplit("/", 1)[-1]
        vendor, dot, rest = name.partition(".")
        if dot and vendor.isalpha() and rest:
            name = rest  # "anthropic.claude-3-5-sonnet-..." (Bedrock style)
        best = None
        for listed, price in self.models.items():
            if name == listed or any(name.startswith(listed + sep) for sep in "-@:"):
                if best is None or len(listed) > len(best.model):
                    best = price
        return best

    def relation(self, source: str | None = None) -> str:
        """SQL for ``model_prices``: each model name found in the relation ``source`` with the price
        of the longest listed name it matches (the rule of ``price``, in SQL). Without a source,
        the listed names themselves (the installed view)."""
        listed = ", ".join(f"({_literal(m.model)}, {m.input_per_mtok!r}::DOUBLE, {m.output_per_mtok!r}::DOUBLE, "
                           f"{_literal(self.currency)}, {_literal(self.version)})" for m in self.models.values())
        listed = (f"(VALUES {listed}) AS listed(name, input_per_mtok, output_per_mtok, currency, price_version)"
                  if listed else "(SELECT NULL::VARCHAR AS name, NULL::DOUBLE AS input_per_mtok, "
                  "NULL::DOUBLE AS output_per_mtok, NULL::VARCHAR AS currency, NULL::VARCHAR AS price_version "
                  "WHERE false) AS listed")
        if source is None:
            return f"SELECT name AS model, input_per_mtok, output_per_mtok, currency, price_version FROM {listed}"
        name = r"regexp_replace(regexp_replace(lower(trim(seen.model)), '^.*/', ''), '^[a-z]+\.', '')"
        return f"""SELECT seen.model, listed.input_per_mtok, listed.output_per_mtok, listed.currency, listed.price_version
FROM (SELECT DISTINCT model FROM {source} WHERE model IS NOT NULL) AS seen, {listed}
WHERE {name} = listed.name OR starts_with({name}, listed.name || '-') OR starts_with({name}, listed.name || '@')
   OR starts_with({name}, listed.name || ':')
QUALIFY row_number() OVER (PARTITION BY seen.model ORDER BY length(listed.name) DESC) = 1"""

    def describe(self) -> dict[str, str]:
        return {"version": self.version, "as_of": self.as_of, "source": self.source, "currency": self.currency,
                "sha256": self.digest}


def load_prices(path: str | Path | None = None) -> PriceTable:
    path = Path(path) if path else PRICES_FILE
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise PriceError(f"cannot read price table {path}: {exc}") from None
    return _load_prices(path.resolve(), stamp)


@functools.lru_cache(maxsize=8)
def _load_prices(path: Path, _stamp: int) -> PriceTable:  # cached per file version (mtime)
    try:
        raw = path.read_bytes()
        document = yaml.safe_load(raw)
    except OSError as exc:
        raise PriceError(f"cannot read price table {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise PriceError(f"price table {path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("models"), dict):
        raise PriceError(f"price table {path} must be a mapping with a 'models' mapping")
    for key in ("version", "as_of", "source"):
        if not document.get(key):
            raise PriceError(f"price table {path}: '{key}' is required (prices without a date cannot be audited)")
    per = float(document.get("per_tokens", 1_000_000))
    models = {}
    for name, entry in document["models"].items():
        try:
            prices = (float(entry["input"]) * 1e6 / per, float(entry["output"]) * 1e6 / per)
        except (TypeError, KeyError, ValueError):
            raise PriceError(f"price table {path}: model {name!r} needs numeric 'input' and 'output'") from None
        if any(p < 0 or math.isnan(p) for p in prices):
            raise PriceError(f"price table {path}: model {name!r} has a negative price")
        models[str(name).lower()] = ModelPrice(str(name).lower(), *prices)
    return PriceTable(str(document["version"]), str(document["as_of"]), " ".join(str(document["source"]).split()),
                      str(document.get("currency", "USD")), hashlib.sha256(raw).hexdigest(), models)


@dataclass(frozen=True)
class Envelope:
    """An agent's cost ceilings; None means no ceiling for that period."""

    per_task: float | None = None
    per_hour: float | None = None
    per_day: float | None = None
    currency: str = "USD"

    @classmethod
    def of(cls, value: Envelope | Mapping[str, Any]) -> Envelope:
        """From an Envelope, a registry mapping (``per_task``...) or the ``task``/``hour``/``day`` form."""
        if isinstance(value, Envelope):
            return value

        def pick(*keys: str) -> float | None:
            for key in keys:
                if value.get(key) is not None:
                    return float(value[key])
            return None

        return cls(pick("per_task", "task"), pick("per_hour", "hour"), pick("per_day", "day"),
                   str(value.get("currency") or "USD"))

    def limits(self) -> dict[str, float]:
        return {p: v for p, v in (("task", self.per_task), ("hour", self.per_hour), ("day", self.per_day))
                if v is not None}


# --- the cost answer ---------------------------------------------------------------------------------

COST_COLUMNS = (*DEDUP_COLUMNS, "start_time", "agent_id", "model", "cost_currency", "cost_source")

# Every costed span of the window (views.sql: span_costs); tasks, hours, days and breaches are sums
# of these rows, so this one statement reproduces every figure of the answer.
SPANS_QUERY = """
SELECT agent_id, task, start_time, span_id, cost, currency, cost_basis, input_tokens, output_tokens
FROM span_costs
ORDER BY start_time, span_id
"""

# The days before the window, for each agent's baseline cost per task: one aggregate over the
# spans as stored (cheap over a week of a fleet). Unlike the window it does not collapse a model
# call recorded twice by two instrumentations, so such duplicates raise the baseline (and make an
# anomaly less likely, never more).
BASELINE_QUERY = """
SELECT s.agent_id, date_trunc('day', s.start_time) AS day,
       sum(CASE WHEN s.cost_amount IS NOT NULL THEN s.cost_amount
                ELSE coalesce(s.input_tokens, 0) * p.input_per_mtok / 1e6
                     + coalesce(s.output_tokens, 0) * p.output_per_mtok / 1e6 END) AS cost,
       count(DISTINCT s.{task_key}) AS tasks
FROM scoped AS s
LEFT JOIN model_prices p ON p.model = s.model
GROUP BY ALL
"""
BASELINE_COLUMNS = ("agent_id", "start_time", "model", "cost_amount", "input_tokens", "output_tokens")
TASK_COLUMNS = ["task", "agent_id", "started", "hour", "day", "cost", "currency", "input_tokens", "output_tokens",
                "computed_spans", "uncosted_spans"]


def cost_answer(reader: Reader, agent: str | None = None, since: datetime | None = None,
                until: datetime | None = None, *, envelopes: Mapping[str, Any] | None = None,
                prices: PriceTable | None = None, baseline_days: int = 7, anomaly_factor: float = 1.5,
                min_baseline_tasks: int = 3, evidence_limit: int = 200_000) -> Answer:
    scope = Scope.of(agent, since, until)
    prices = prices or load_prices()
    limits = {a: Envelope.of(e) for a, e in (envelopes or {}).items() if e}
    before = Scope(scope.agent, max(scope.since - timedelta(days=baseline_days), Scope.of().since), scope.since)
    sql = compose(SPANS_QUERY, {"canonical_spans": "SELECT * FROM scoped"},
                  {"scoped": scope.spans(COSTED, COST_COLUMNS), "model_prices": prices.relation("scoped")})
    # Tasks are counted by trace; the proposed integer trace_key is much cheaper to read than the id.
    task_key = "trace_key" if "trace_key" in store_columns(reader) else "trace_id"
    baseline_sql = compose(BASELINE_QUERY.format(task_key=task_key), before={
        "scoped": before.spans(COSTED, (*BASELINE_COLUMNS, task_key)), "model_prices": prices.relation("scoped")})
    # The two reads are independent; the store answers both at once (readers are thread-safe:
    # a cursor, or an HTTP request, per query).
    with ThreadPoolExecutor(max_workers=2) as pool:
        later = pool.submit(reader.query, baseline_sql, before.params) if baseline_days > 0 else None
        spans = reader.query(sql, scope.params)
        baseline = later.result() if later is not None else pd.DataFrame()
    spans["hour"] = spans["start_time"].dt.floor("h")
    spans["day"] = spans["start_time"].dt.floor("D")
    for basis in ("computed", "unknown"):
        spans[basis] = spans["cost_basis"] == basis
    spans["reported"] = ~spans["computed"] & ~spans["unknown"]

    tasks = _tasks(spans)
    hours = _sum(spans, ["agent_id", "hour"])
    days = _days(spans, tasks, hours, baseline, baseline_days, anomaly_factor, min_baseline_tasks)
    breaches = _breaches(tasks, hours, days, spans, limits)
    anomalies = days[days["anomaly"].astype(bool)]

    coverage = []
    reported, computed, unknown = (int(spans[c].sum()) for c in ("reported", "computed", "unknown"))
    completeness = {"cost_spans": len(spans), "reported": reported, "computed": computed, "unknown": unknown}
    if unknown:
        coverage.append(f"no cost reported and no price for the model ({UNKNOWN}): "
                        f"{count(unknown, 'model or token-bearing span')}")
    seen_agents = sorted({a for a in tasks["agent_id"].dropna()})
    unenveloped = [a for a in seen_agents if a not in limits]
    completeness["agents"] = len(seen_agents)
    completeness["agents_with_envelope"] = len(seen_agents) - len(unenveloped)
    for agent_id in unenveloped:
        coverage.append(f"no cost envelope registered (within envelope: {UNKNOWN}): agent {agent_id}")
    if tasks["agent_id"].isna().any():
        coverage.append("no agent identity, so judged against no envelope: some of the cost")
    currencies = sorted(spans["currency"].dropna().unique())
    if len(currencies) > 1:
        coverage.append(f"costs in several currencies ({', '.join(currencies)}) are summed without conversion")

    evidence = spans.loc[spans["cost"].notna(), "span_id"].tolist()
    if len(evidence) > evidence_limit:
        coverage.append(f"evidence lists the breaches' spans only; the SQL reproduces all {len(evidence)} costed spans")
        evidence = list(dict.fromkeys(s for b in breaches for s in b["span_ids"]))
    currency = currencies[0] if len(currencies) == 1 else (", ".join(currencies) or prices.currency)
    if tasks.empty:
        verdict, status = f"No cost or token usage recorded for {_who(agent)} in the window.", "no_data"
    else:
        priced = f", {computed} spans priced from tokens (price table {prices.version})" if computed else ""
        verdict = (f"{_who(agent).capitalize()} spent {float(tasks['cost'].sum()):.4f} {currency} over "
                   f"{len(tasks)} tasks{priced}; {len(breaches)} envelope breaches; {len(anomalies)} days above "
                   f"{anomaly_factor:g}x the agent's baseline cost per task.")
        status = "breach" if breaches else ("gaps" if coverage else "complete")
    extra = {
        "per_hour": _records(hours[["agent_id", "hour", "cost", "currency"]]),
        "per_day": _records(days),
        "breaches": breaches,
        "anomalies": _records(anomalies[["agent_id", "day", "tasks", "cost", "cost_per_task",
                                         "baseline_cost_per_task", "costliest_task"]]),
        "prices": prices.describe(),
        "envelopes": {a: {**e.limits(), "currency": e.currency} for a, e in limits.items()},
        "baseline": {"days": baseline_days, "factor": anomaly_factor, "min_tasks": min_baseline_tasks},
    }
    return Answer("cost", agent, scope.since, scope.until, tasks, verdict, status, evidence, coverage, sql,
                  extra, params=scope.params, completeness=completeness)


def _sum(spans: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Costed spans summed by ``keys``; a cost stays unknown (NaN) when none of its spans has one."""
    grouped = spans.groupby(keys, dropna=False, sort=False)
    out = grouped[["cost", "input_tokens", "output_tokens", "computed", "unknown"]].sum(min_count=1)
    out["started"] = grouped["start_time"].min()
    out["currency"] = grouped["currency"].first()
    out = out.rename(columns={"computed": "computed_spans", "unknown": "uncosted_spans"}).reset_index()
    out[["computed_spans", "uncosted_spans"]] = out[["computed_spans", "uncosted_spans"]].fillna(0).astype(int)
    out[["input_tokens", "output_tokens"]] = out[["input_tokens", "output_tokens"]].astype("Int64")
    return out


def _tasks(spans: pd.DataFrame) -> pd.DataFrame:
    tasks = _sum(spans, ["task", "agent_id"])
    tasks["hour"], tasks["day"] = tasks["started"].dt.floor("h"), tasks["started"].dt.floor("D")
    return tasks.sort_values(["started", "task"]).reset_index(drop=True)[TASK_COLUMNS]


def _days(spans: pd.DataFrame, tasks: pd.DataFrame, hours: pd.DataFrame, baseline: pd.DataFrame,
          baseline_days: int, factor: float, min_tasks: int) -> pd.DataFrame:
    """Cost and tasks per agent and day (a task counts on the day it started), each day's cost per
    task against the same agent's previous ``baseline_days`` days."""
    columns = ["agent_id", "day", "cost", "currency", "tasks", "max_task_cost", "costliest_task", "max_hour_cost",
               "computed_spans", "uncosted_spans", "cost_per_task", "baseline_cost_per_task", "anomaly"]
    if spans.empty:
        return pd.DataFrame(columns=columns)
    days = _sum(spans, ["agent_id", "day"])
    ranked = tasks.sort_values("cost", ascending=False, na_position="last")
    per_day = ranked.groupby(["agent_id", "day"], dropna=False, sort=False).agg(
        tasks=("task", "size"), max_task_cost=("cost", "max"), costliest_task=("task", "first")).reset_index()
    hourly = hours.assign(day=hours["hour"].dt.floor("D")).groupby(["agent_id", "day"], dropna=False)["cost"]
    days = (days.merge(per_day, on=["agent_id", "day"], how="left")
            .merge(hourly.max().rename("max_hour_cost").reset_index(), on=["agent_id", "day"], how="left"))
    days["tasks"] = days["tasks"].fillna(0).astype(int)
    window = days[["agent_id", "day", "cost", "tasks"]].assign(in_window=True)
    history = pd.concat([baseline.assign(in_window=False), window], ignore_index=True) if len(baseline) else window
    history["day"] = pd.to_datetime(history["day"]).astype("datetime64[ns]")
    history = _with_baseline(history, baseline_days, factor, min_tasks)
    judged = history[history["in_window"].astype(bool)][["agent_id", "day", "cost_per_task",
                                                         "baseline_cost_per_task", "anomaly"]]
    days = days.merge(judged, on=["agent_id", "day"], how="left")
    return days.sort_values(["day", "agent_id"], na_position="last").reset_index(drop=True)[columns]


def _breaches(tasks: pd.DataFrame, hours: pd.DataFrame, days: pd.DataFrame, spans: pd.DataFrame,
              limits: dict[str, Envelope]) -> list[dict[str, Any]]:
    """Every task, hour and day over its agent's envelope, with the costed spans that make it up."""
    if not limits or spans.empty:
        return []
    envelopes = pd.DataFrame([{"agent_id": a, "task": e.per_task, "hour": e.per_hour, "day": e.per_day,
                               "envelope_currency": e.currency} for a, e in limits.items()])
    found = []
    for period, frame in (("task", tasks), ("hour", hours), ("day", days)):
        judged = frame.merge(envelopes[["agent_id", period, "envelope_currency"]].rename(columns={period: "limit"}),
                             on="agent_id")
        over = judged[(judged["cost"] > judged["limit"])
                      & judged["currency"].fillna(judged["envelope_currency"]).eq(judged["envelope_currency"])]
        if len(over):
            found.append(over.assign(period=period, bucket=over[period],
                                     start=over["started"] if period == "task" else over[period]))
    if not found:
        return []
    over = pd.concat(found, ignore_index=True).sort_values(["start", "period", "agent_id"])
    costed = spans[spans["cost"].notna()]
    out = []
    for row in over.to_dict("records"):
        key, bucket = row["period"], row["bucket"]
        members = costed[(costed["agent_id"] == row["agent_id"]) & (costed[key] == bucket)]
        at = bucket if key == "task" else bucket.strftime("%Y-%m-%d %H:00" if key == "hour" else "%Y-%m-%d")
        out.append({"agent_id": row["agent_id"], "period": key, "at": at, "cost": float(row["cost"]),
                    "limit": float(row["limit"]), "currency": row["envelope_currency"],
                    "span_ids": members["span_id"].tolist()})
    return out


def _with_baseline(history: pd.DataFrame, baseline_days: int, factor: float, min_tasks: int) -> pd.DataFrame:
    """Each agent-day's cost per task against the same agent's previous ``baseline_days`` days."""
    history = history.reset_index(drop=True)
    history["cost_per_task"] = (history["cost"] / history["tasks"].where(history["tasks"] > 0)).astype(float)
    pairs = history[["agent_id", "day"]].reset_index().merge(
        history[["agent_id", "day", "cost", "tasks"]].rename(columns={"day": "before"}), on="agent_id")
    pairs = pairs[(pairs["before"] < pairs["day"]) & (pairs["before"] >= pairs["day"] - pd.Timedelta(days=baseline_days))]
    trailing = pairs.groupby("index")[["cost", "tasks"]].sum().reindex(history.index).fillna(0.0)
    history["baseline_cost_per_task"] = (trailing["cost"] / trailing["tasks"]).where(trailing["tasks"] >= min_tasks)
    history["anomaly"] = (history["cost_per_task"] > factor * history["baseline_cost_per_task"]).fillna(False)
    return history


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"

