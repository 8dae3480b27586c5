"""The bundle's numbers: readiness answers, tables and figures, computed from ``events.parquet`` alone.

The readiness answers run through an ordinary ``Reader`` over an in-memory DuckDB whose ``spans``
view reads the bundle's own events, so the report says only what the bundle reproduces. A readiness
answer's rows are written as its table exactly as its query returned them (``_Recording``); the
other tables come from ``tables.py``. ``queries.sql`` holds every query with its parameters.
"""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from govtrace.analytics.evidence import layout, policies, registry_entry
from govtrace.analytics.evidence import tables as T
from govtrace.analytics.evidence.events import MemberEvents
from govtrace.analytics.reader import ConnectionReader
from govtrace.analytics.views import Scope

QUESTIONS = ("actions", "authorization", "data", "cost", "boundaries")

def analyse(staging: Path, agent: str, since: datetime, until: datetime, created: datetime, events: MemberEvents,
             policy_files: Sequence[str | Path], prices_file: str | Path | None, lap: Callable[[str], None]) -> dict[str, Any]:
    """Tables, figures and readiness answers, from the bundle's own events.parquet."""
    from govtrace.analytics.costs import PRICES_FILE, load_prices
    from govtrace.analytics.readiness import ask

    registry_doc = registry_entry.from_records(agent, events.registry)
    envelope = registry_entry.envelope(registry_doc)
    shutil.copyfile(prices_file or PRICES_FILE, staging / layout.PRICES)
    prices = load_prices(staging / layout.PRICES)
    con = duckdb.connect()
    try:
        T.run_setup(con, str(staging))
        local = _Recording(con, source="bundle")
        answers = {}
        for q in QUESTIONS:
            answers[q] = ask_question(ask, q, local, agent, since, until, envelope, prices, created)
            lap(f"readiness {q}")
        blocks = T.table_blocks(answers, Scope.of(agent, since, until))
        answer_queries = {T.ANSWER_TABLES[q][0]: (a.sql, getattr(a, "params", None)) for q, a in answers.items()}
        for b in blocks:
            # An answer's own query already ran: its exact result is the table (running it again
            # would double the export's time); the verifier reruns the inlined text to compare.
            table = local.recorded(*answer_queries.get(b.name, ("", None)))
            if table is None:
                table = con.sql(b.sql).to_arrow_table()
            pq.write_table(table, staging / "data" / f"{b.name}.parquet", compression="zstd")
            con.register(b.name, table)
        figure_blocks = T.figure_blocks([b.name for b in blocks])
        figures = {b.name: T.figure(con, b.sql) for b in figure_blocks}
        in_force = con.sql(policies.IN_FORCE_SQL).to_arrow_table().to_pylist() if "decisions" in figures else []
    finally:
        con.close()
    supplied = policies.supplied(policy_files)
    for name, data, _ in supplied:
        (staging / name).write_bytes(data)
    header = (f"-- govtrace evidence bundle: the SQL behind every table and number of this bundle.\n"
              f"-- Agent {agent}, window [{since.isoformat()}, {until.isoformat()}).\n"
              "-- Run it from the bundle's directory with the DuckDB shell: duckdb < reports/queries.sql\n"
              "-- Tables are rebuilt from data/events.parquet; compare them with data/<table>.parquet and the\n"
              "-- figures with reports/figures.json (govtrace verify does both).")
    (staging / layout.QUERIES).write_text(T.render([*blocks, *figure_blocks], header))
    layout.write_json(staging / layout.FIGURES, figures)
    table_of = {q: T.ANSWER_TABLES[q][0] for q in QUESTIONS}
    readiness_doc = {
        "agent": agent, "since": since.isoformat(), "until": until.isoformat(), "now": created.isoformat(),
        "envelope": envelope, "prices": prices.describe(),
        "answers": {q: {"status": a.status, "verdict": a.verdict, "coverage": list(a.coverage),
                        "completeness": dict(getattr(a, "completeness", {}) or {}), "rows": len(a.rows),
                        "evidence_spans": len(a.evidence), "table": table_of[q]}
                    for q, a in answers.items()},
    }
    layout.write_json(staging / layout.READINESS, readiness_doc)
    layout.write_json(staging / layout.REGISTRY, registry_doc)
    index = policies.index(supplied, in_force)
    layout.write_json(staging / layout.POLICY_INDEX, index)
    return {"readiness": readiness_doc, "figures": figures, "registry": registry_doc, "policies": index,
            "tables": [b.name for b in blocks]}


class _Recording(ConnectionReader):
    """A reader that keeps each result, so a readiness answer's rows can become a table as queried."""

    def __init__(self, con, source: str) -> None:
        super().__init__(con, source)
        self._results: dict[tuple[str, str], pa.Table] = {}

    def arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        table = super().arrow(sql, params)
        self._results[(sql, json.dumps(params or [], default=str))] = table
        return table

    def recorded(self, sql: str, params: list[Any] | None) -> pa.Table | None:
        if not sql:
            return None
        return self._results.get((sql, json.dumps(params or [], default=str)))


def ask_question(ask, question, reader, agent, since, until, envelope, prices, now):
    kwargs: dict[str, Any] = {"agent": agent, "since": since, "until": until, "now": now,
                              "envelopes": {agent: envelope} if envelope else {}, "prices": prices}
    if question == "cost":
        from govtrace.analytics import costs

        # The bundle's cost table lists every task, where the cost answer can cap its task list.
        if "max_task_rows" in inspect.signature(costs.cost_answer).parameters:
            kwargs["max_task_rows"] = 1_000_000_000
    return ask(question, reader, **kwargs)
