"""Read-only queries on the live database, for readers in other processes.

Only a single SELECT statement is accepted (checked by DuckDB's own parser, not by string
matching), external file access is disabled on the database, and every query is recorded in the
access log with who asked and why.
"""

from __future__ import annotations

import io
from typing import Any

import duckdb
import pyarrow as pa
from govtrace.collector.errors import BadRequest
from govtrace.collector.store import Store

MAX_RESULT_ROWS = 1_000_000


def ensure_single_select(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise BadRequest(f"SQL does not parse: {exc}") from None
    if len(statements) != 1:
        raise BadRequest(f"exactly one statement is allowed, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise BadRequest(f"only SELECT is allowed on the read API, got {statements[0].type.name}")


class ReadService:
    def __init__(self, store: Store, ingest_counters: dict[str, int] | None = None):
        self.store = store
        self.ingest_counters = ingest_counters or {}

    def query_arrow(
        self, sql: str, params: list[Any], *, user: str | None = None, role: str | None = None, purpose: str | None = None
    ) -> bytes:
        ensure_single_select(sql)
        cursor = self.store.cursor()
        try:
            table = cursor.sql(sql, params=params or None).to_arrow_table()
        except duckdb.Error as exc:
            raise BadRequest(f"query failed: {exc}") from None
        finally:
            cursor.close()
        if table.num_rows > MAX_RESULT_ROWS:
            raise BadRequest(f"result of {table.num_rows} rows exceeds {MAX_RESULT_ROWS}; narrow the query")
        if purpose:
            self.store.record_access(user, role, "query", purpose, sql[:500])
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue()

    def record_access(self, user: str | None, role: str | None, action: str, target: str, detail: str) -> None:
        self.store.record_access(user, role, action, target, detail)

    def status(self) -> dict[str, Any]:
        cursor = self.store.cursor()
        try:
            spans, last = cursor.execute("SELECT count(*), max(received_at)::VARCHAR FROM spans").fetchall()[0]
        finally:
            cursor.close()
        return {
            "db": self.store.path,
            "spans": spans,
            "last_received_at": last,
            "queued_spans": self.store.queued_spans,
            **{f"ingest_{k}": v for k, v in self.ingest_counters.items()},
            **{f"store_{k}": v for k, v in self.store.stats.items()},
        }
