"""Read-only queries on the live database, for readers in other processes.

Only a single SELECT statement is accepted (checked by DuckDB's own parser, not by string
matching), file and network access is disabled on the database, and every query is recorded in the
access log with who asked and why before its result leaves the collector.

Roles (when authentication is on; cumulative): a ``viewer`` reads the collector's status, an
``investigator`` also runs queries over the store, and only ``compliance`` may read the access
log itself (who looked at what). Tables a query touches are found in DuckDB's parse tree, views
expanded, and functions that name tables by string (``query``, ``query_table``) are refused below
compliance.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import duckdb
import pyarrow as pa

from govtrace.collector.admission import MemoryBudget, Reservation
from govtrace.collector.auth import COMPLIANCE, INVESTIGATOR, VIEWER, ReaderIdentity
from govtrace.collector.errors import BadRequest, PayloadTooLarge, PermissionDenied
from govtrace.collector.store import Store

MAX_RESULT_ROWS = 1_000_000
MAX_RESULT_BYTES = 256 * 1024 * 1024
QUERY_TIMEOUT_SECONDS = 120.0
COMPLIANCE_TABLES = frozenset({"access_log"})
TABLES_BY_NAME = frozenset({"query", "query_table"})


def ensure_single_select(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise BadRequest(f"SQL does not parse: {exc}") from None
    if len(statements) != 1:
        raise BadRequest(f"exactly one statement is allowed, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise BadRequest(f"only SELECT is allowed on the read API, got {statements[0].type.name}")


def referenced_tables(cursor: duckdb.DuckDBPyConnection, sql: str) -> tuple[set[str], set[str]]:
    """(tables and views a SELECT reads, views expanded; table functions it calls), lower case."""
    tables: set[str] = set()
    functions: set[str] = set()
    views = {name.lower(): text for name, text in cursor.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()}
    pending, seen = [sql], set()
    while pending:
        text = pending.pop()
        found_tables, found_functions = _walk_parse_tree(cursor, text)
        functions |= found_functions
        for name in found_tables - seen:
            seen.add(name)
            tables.add(name)
            if name in views and " AS " in views[name]:
                pending.append(views[name].split(" AS ", 1)[1].strip().rstrip(";"))
    return tables, functions


class ReadService:
    def __init__(self, store: Store, ingest_counters: dict[str, int] | None = None, *,
                 budget: MemoryBudget | None = None, enforce_roles: bool = False):
        self.store = store
        self.ingest_counters = ingest_counters or {}
        self.budget = budget or MemoryBudget(1 << 62)
        self.enforce_roles = enforce_roles

    def query_arrow(self, sql: str, params: list[Any], *, reader: ReaderIdentity | None = None,
                    purpose: str | None = None) -> bytes:
        reader = reader or ReaderIdentity(None, None)
        ensure_single_select(sql)
        self.require(reader, INVESTIGATOR, "run queries")
        cursor = self.store.cursor()
        timer = threading.Timer(QUERY_TIMEOUT_SECONDS, cursor.interrupt)
        held: list[Reservation] = []
        try:
            if self.enforce_roles and not reader.at_least(COMPLIANCE):
                self._refuse_compliance_data(cursor, sql)
            timer.start()
            table = self._fetch(cursor, sql, params, held)
            # An unrecorded read is what the access log exists to prevent: record, then answer.
            self.store.record_access(reader.user, reader.role, "query", purpose or "", sql[:500])
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            return sink.getvalue()
        except duckdb.InterruptException:
            raise BadRequest(f"query ran longer than {QUERY_TIMEOUT_SECONDS:.0f} s; narrow it") from None
        except duckdb.Error as exc:
            raise BadRequest(f"query failed: {exc}") from None
        finally:
            timer.cancel()
            for reservation in held:
                reservation.release()
            cursor.close()

    def record_access(self, reader: ReaderIdentity, action: str, target: str, detail: str) -> None:
        self.require(reader, VIEWER, "record access")
        self.store.record_access(reader.user, reader.role, action, target, detail)

    def require(self, reader: ReaderIdentity, role: str, what: str) -> None:
        if self.enforce_roles and not reader.at_least(role):
            raise PermissionDenied(f"role {reader.role or '(none)'} may not {what}: it takes {role} or above")

    def status(self, reader: ReaderIdentity | None = None) -> dict[str, Any]:
        self.require(reader or ReaderIdentity(None, None), VIEWER, "read the status")
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
            **{f"journal_{k}": v for k, v in self.store.journal_stats().items()},
            **{f"memory_{k}": v for k, v in self.budget.stats().items()},
        }

    def _refuse_compliance_data(self, cursor: duckdb.DuckDBPyConnection, sql: str) -> None:
        tables, functions = referenced_tables(cursor, sql)
        if tables & COMPLIANCE_TABLES or functions & TABLES_BY_NAME:
            raise PermissionDenied("the access log (and table functions that name tables by string) "
                                   "take the compliance role")

    def _fetch(self, cursor: duckdb.DuckDBPyConnection, sql: str, params: list[Any],
               held: list[Reservation]) -> pa.Table:
        """The result, streamed in batches so that size and memory limits stop it early; each
        batch holds memory budget (twice: the batch and its IPC copy) until the answer is sent."""
        reader = cursor.sql(sql, params=params or None).to_arrow_reader(64 * 1024)
        batches, rows, nbytes = [], 0, 0
        for batch in reader:
            rows += batch.num_rows
            nbytes += batch.nbytes
            if rows > MAX_RESULT_ROWS:
                raise BadRequest(f"result exceeds {MAX_RESULT_ROWS} rows; narrow the query")
            if nbytes > MAX_RESULT_BYTES:
                raise PayloadTooLarge(f"result exceeds {MAX_RESULT_BYTES // 2**20} MiB; narrow the query")
            held.append(self.budget.reserve(2 * batch.nbytes))
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)


def _walk_parse_tree(cursor: duckdb.DuckDBPyConnection, sql: str) -> tuple[set[str], set[str]]:
    try:
        tree = json.loads(cursor.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    except (duckdb.Error, ValueError, TypeError):
        raise BadRequest("SQL could not be analysed for access control") from None
    if tree.get("error"):
        raise BadRequest(f"SQL could not be analysed for access control: {tree.get('error_message', '')}")
    tables: set[str] = set()
    functions: set[str] = set()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and node.get("table_name"):
                tables.add(str(node["table_name"]).lower())
            elif node.get("type") == "TABLE_FUNCTION":
                function = node.get("function") or {}
                functions.add(str(function.get("function_name", "")).lower())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return tables, functions
