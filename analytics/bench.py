"""``govtrace bench queries``: the analytics' latency over a generated fleet of 10 million spans.

Runs the real functions (``ask``, ``chain``, ``cost_answer``) on a DuckDB file written by
``fleetgen`` and reports medians: each readiness question for one agent and one day (target at most
200 ms), the decision chain of one task (at most 100 ms, over distinct tasks, including tasks with
late approvals and tasks split over several traces), and the whole fleet's cost per day (at most
1 s). The file is generated on first use and reused when ``--db`` names an existing one.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from govtrace.analytics.chain import chain
from govtrace.analytics.fleetgen import PROPOSED_COLUMNS, FleetSpec, fleet_registry, generate
from govtrace.analytics.reader import FileReader
from govtrace.analytics.readiness import QUESTIONS, ask

TARGETS_MS = {"readiness": 200, "chain": 100, "fleet_cost_day": 1000}
DEFAULT_DB = "govtrace-bench-fleet.duckdb"


def run_bench(args: Any) -> dict[str, Any]:
    spans = getattr(args, "spans", None) or FleetSpec.spans
    repeat = getattr(args, "repeat", None) or 15
    path = Path(getattr(args, "db", None) or DEFAULT_DB)
    say = (lambda *_: None) if getattr(args, "json", False) else (lambda text: print(text, file=sys.stderr))
    figures: dict[str, Any] = {}
    if not path.exists():
        say(f"generating {spans:,} spans into {path} (once; pass --db {path} to reuse it)")
        # 30 days at 10 million spans (about 330 000 a day); a small fleet gets fewer, fuller days.
        days = max(2, min(30, spans // 330_000))
        figures["generated"] = generate(path, FleetSpec(spans=spans, days=days), progress=not getattr(args, "json", False))
    reader = FileReader(path)
    spec = _spec(reader)
    envelopes = fleet_registry(spec).envelopes()
    total = int(reader.query("SELECT count(*) AS n FROM spans").iloc[0, 0])
    day = spec.start_time + timedelta(days=spec.days // 2)
    until = day + timedelta(days=1)
    agent = _busiest_agent(reader, day, until)
    figures.update({"db": str(path), "spans": total, "agent": agent, "day": day.date().isoformat(), "repeat": repeat})
    say(f"{total:,} spans; agent {agent}, day {day.date()}")

    for question in QUESTIONS:
        kwargs = {"envelopes": envelopes} if question == "cost" else {}
        times = _timed(lambda q=question, k=kwargs: ask(q, reader, agent=agent, since=day, until=until, **k), repeat)
        figures[f"{question}_ms_median"] = _median(times)
        figures[f"{question}_ms_p95"] = _p95(times)
        say(f"  {question:<14} median {figures[f'{question}_ms_median']} ms")

    traces = _sample_traces(reader, day, until, repeat)
    chain(reader, traces[-1])  # warm up, as for the questions
    chain_times = []
    for trace_id in traces:
        started = time.perf_counter()
        chain(reader, trace_id)
        chain_times.append((time.perf_counter() - started) * 1000)
    figures["chain_ms_median"] = _median(chain_times)
    figures["chain_ms_p95"] = _p95(chain_times)
    figures["chain_traces"] = len(traces)
    say(f"  chain          median {figures['chain_ms_median']} ms over {len(traces)} tasks")

    fleet_day = _timed(lambda: ask("cost", reader, since=day, until=until, envelopes=envelopes), max(3, repeat // 3))
    figures["fleet_cost_day_ms_median"] = _median(fleet_day)
    say(f"  fleet cost, one day: median {figures['fleet_cost_day_ms_median']} ms")
    started = time.perf_counter()
    whole = ask("cost", reader, since=spec.start_time, until=spec.end_time, envelopes=envelopes)
    figures["fleet_cost_per_day_all_days_ms"] = round((time.perf_counter() - started) * 1000, 1)
    figures["fleet_cost_per_day_all_days_rows"] = len(whole.extra["per_day"])
    say(f"  fleet cost per day over all {spec.days} days: {figures['fleet_cost_per_day_all_days_ms']} ms")

    present = set(reader.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'spans'")
                  ["column_name"])
    figures["proposed_columns"] = sorted(present & set(PROPOSED_COLUMNS))
    figures["targets_ms"] = TARGETS_MS
    figures["within_targets"] = (
        all(figures[f"{q}_ms_median"] <= TARGETS_MS["readiness"] for q in QUESTIONS)
        and figures["chain_ms_median"] <= TARGETS_MS["chain"]
        and figures["fleet_cost_day_ms_median"] <= TARGETS_MS["fleet_cost_day"])
    return figures


def _spec(reader: FileReader) -> FleetSpec:
    try:
        stored = reader.query("SELECT spec FROM fleetgen LIMIT 1")
    except Exception:  # noqa: BLE001 - a store not written by fleetgen: use the defaults
        return FleetSpec()
    return FleetSpec(**json.loads(stored.iloc[0, 0])) if len(stored) else FleetSpec()


def _busiest_agent(reader: FileReader, since: datetime, until: datetime) -> str:
    return reader.query(
        "SELECT agent_id FROM spans WHERE start_time >= CAST($1 AS TIMESTAMP) AND start_time < CAST($2 AS TIMESTAMP) "
        "AND agent_id IS NOT NULL AND operation = 'execute_tool' GROUP BY agent_id ORDER BY count(*) DESC, agent_id "
        "LIMIT 1", [_naive(since), _naive(until)]).iloc[0, 0]


def _sample_traces(reader: FileReader, since: datetime, until: datetime, n: int) -> list[str]:
    """Distinct tasks of the day: a third with a late approval in another trace, a third split over
    traces (context lost), the rest ordinary."""
    params = [_naive(since), _naive(until)]
    window = "start_time >= CAST($1 AS TIMESTAMP) AND start_time < CAST($2 AS TIMESTAMP)"
    late = reader.query(
        f"SELECT DISTINCT trace_id FROM spans WHERE {window} AND operation = 'execute_tool' "
        f"AND escalation_outcome = 'pending' AND policy_tier = 3 ORDER BY trace_id LIMIT {n // 3}", params)
    split = reader.query(
        f"SELECT DISTINCT trace_id FROM spans WHERE {window} AND operation = 'invoke_agent' "
        f"AND delegating_agent IS NOT NULL AND parent_span_id IS NULL ORDER BY trace_id LIMIT {n // 3}", params)
    plain = reader.query(
        f"SELECT trace_id FROM spans WHERE {window} AND operation = 'invoke_agent' AND parent_span_id IS NULL "
        f"ORDER BY span_id LIMIT {n}", params)
    picked = list(dict.fromkeys([*late["trace_id"], *split["trace_id"], *plain["trace_id"]]))
    return picked[:n]


def _timed(call, repeat: int) -> list[float]:
    call()  # warm the file's blocks into memory: the figures are for a collector that has been running
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _median(times: list[float]) -> float:
    return round(statistics.median(times), 1)


def _p95(times: list[float]) -> float:
    ordered = sorted(times)
    return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)


def _naive(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
