"""The store's schema: the span columns (one list for DuckDB and Arrow) and ordered migrations.

``record`` holds the exact canonical JSON of the event (span, resource, scope, ingest facts): it is
the lossless raw copy and the bytes the ledger hashes. Every other column is derived from it by
``normalize`` and can be re-derived to check it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:  # the decode workers import this module for the column list, and never need DuckDB
    import duckdb

# (column, DuckDB type, Arrow type). Order is the table's column order.
SPAN_COLUMNS: list[tuple[str, str, pa.DataType]] = [
    ("seq", "BIGINT", pa.int64()),
    ("received_at", "TIMESTAMP_NS", pa.timestamp("ns")),
    ("trace_id", "VARCHAR", pa.string()),
    ("span_id", "VARCHAR", pa.string()),
    ("parent_span_id", "VARCHAR", pa.string()),
    ("name", "VARCHAR", pa.string()),
    ("kind", "VARCHAR", pa.string()),
    ("start_time", "TIMESTAMP_NS", pa.timestamp("ns")),
    ("end_time", "TIMESTAMP_NS", pa.timestamp("ns")),
    ("duration_ms", "DOUBLE", pa.float64()),
    ("status_code", "VARCHAR", pa.string()),
    ("status_message", "VARCHAR", pa.string()),
    ("error_type", "VARCHAR", pa.string()),
    ("scope_name", "VARCHAR", pa.string()),
    ("flavor", "VARCHAR", pa.string()),
    ("service_name", "VARCHAR", pa.string()),
    ("agent_id", "VARCHAR", pa.string()),
    ("agent_name", "VARCHAR", pa.string()),
    ("agent_owner", "VARCHAR", pa.string()),
    ("agent_credential", "VARCHAR", pa.string()),
    ("operation", "VARCHAR", pa.string()),
    ("tool_name", "VARCHAR", pa.string()),
    ("tool_call_id", "VARCHAR", pa.string()),
    ("conversation_id", "VARCHAR", pa.string()),
    ("model", "VARCHAR", pa.string()),
    ("input_tokens", "BIGINT", pa.int64()),
    ("output_tokens", "BIGINT", pa.int64()),
    ("cost_amount", "DOUBLE", pa.float64()),
    ("cost_currency", "VARCHAR", pa.string()),
    ("cost_source", "VARCHAR", pa.string()),
    ("policy_decision_id", "VARCHAR", pa.string()),
    ("policy_effect", "VARCHAR", pa.string()),
    ("policy_id", "VARCHAR", pa.string()),
    ("policy_rule_id", "VARCHAR", pa.string()),
    ("policy_version", "VARCHAR", pa.string()),
    ("policy_tier", "INTEGER", pa.int32()),
    ("policy_mode", "VARCHAR", pa.string()),
    ("policy_boundary", "VARCHAR", pa.string()),
    ("escalation_id", "VARCHAR", pa.string()),
    ("escalation_outcome", "VARCHAR", pa.string()),
    ("escalation_routed_to", "VARCHAR", pa.string()),
    ("escalation_sla_seconds", "DOUBLE", pa.float64()),
    ("approver_id", "VARCHAR", pa.string()),
    ("approver_role", "VARCHAR", pa.string()),
    ("decided_at", "VARCHAR", pa.string()),
    ("data_resource", "VARCHAR", pa.string()),
    ("data_operation", "VARCHAR", pa.string()),
    ("data_classification", "VARCHAR", pa.string()),
    ("data_record_count", "BIGINT", pa.int64()),
    ("acting_for", "VARCHAR", pa.string()),
    ("delegating_agent", "VARCHAR", pa.string()),
    ("delegation_depth", "INTEGER", pa.int32()),
    ("arguments_digest", "VARCHAR", pa.string()),
    ("action_target", "VARCHAR", pa.string()),
    ("action_amount", "DOUBLE", pa.float64()),
    ("action_reversible", "BOOLEAN", pa.bool_()),
    ("principal", "VARCHAR", pa.string()),
    ("identity_mismatch", "BOOLEAN", pa.bool_()),
    ("record", "VARCHAR", pa.string()),
    # Derived for fast task lookups (added by migration 0005, hence after ``record``): the first 8
    # bytes of the trace id as an integer, and the trace ids this span links to.
    ("trace_key", "UBIGINT", pa.uint64()),
    ("link_trace_ids", "VARCHAR[]", pa.list_(pa.string())),
]

SPAN_ARROW_SCHEMA = pa.schema([(name, arrow_type) for name, _, arrow_type in SPAN_COLUMNS])
DERIVED_COLUMNS = [name for name, _, _ in SPAN_COLUMNS if name not in ("seq", "record")]


def _create_spans(con: duckdb.DuckDBPyConnection) -> None:
    columns = ",\n  ".join(f"{name} {sql_type}" for name, sql_type, _ in SPAN_COLUMNS)
    con.execute(f"CREATE TABLE spans (\n  {columns}\n)")


def _create_collector_tables(con: duckdb.DuckDBPyConnection) -> None:
    # Who read what, when: every read by a person is itself an audit record.
    con.execute(
        """CREATE TABLE access_log (
             occurred_at TIMESTAMP, principal VARCHAR, role VARCHAR, action VARCHAR, target VARCHAR, detail VARCHAR)"""
    )
    # Counters that completeness reports need: rejected spans and collector start/stop times.
    con.execute(
        """CREATE TABLE ingest_events (
             occurred_at TIMESTAMP, event VARCHAR, count BIGINT, detail VARCHAR)"""
    )


def _create_views(con: duckdb.DuckDBPyConnection) -> None:
    # Documented SQL views: raw attributes are read from the stored record.
    con.execute(
        """CREATE OR REPLACE VIEW span_attributes AS
           SELECT seq, trace_id, span_id,
                  json_extract(record, '$.attributes') AS attributes,
                  json_extract(record, '$.resource') AS resource_attributes,
                  json_extract(record, '$.events') AS events,
                  json_extract(record, '$.links') AS links
           FROM spans"""
    )
    con.execute(
        """CREATE OR REPLACE VIEW tool_calls AS
           SELECT * EXCLUDE (record) FROM spans WHERE operation = 'execute_tool'"""
    )


# The store's deduplication key of a span row (see ``Store._new_rows``): start time in the high 64
# bits, a hash of (trace id, span id, principal) in the low 64. Used by the writer on every commit.
SPAN_KEY_SQL = "(epoch_ns(start_time)::UHUGEINT << 64) | hash(trace_id, span_id, principal)::UHUGEINT"


def _create_span_keys(con: duckdb.DuckDBPyConnection) -> None:
    # Keys of stored spans, in seq order, so that client retries are not stored twice. Backfilled
    # from the spans already stored; the expression is frozen here (a later key change is a new
    # migration), and equals SPAN_KEY_SQL.
    con.execute("CREATE TABLE span_keys (seq BIGINT, key UHUGEINT)")
    con.execute(
        "INSERT INTO span_keys SELECT seq, (epoch_ns(start_time)::UHUGEINT << 64) "
        "| hash(trace_id, span_id, principal)::UHUGEINT FROM spans ORDER BY seq"
    )


def _add_trace_key_and_links(con: duckdb.DuckDBPyConnection) -> None:
    # Chains look tasks up by trace and follow span links across traces; an integer key and a typed
    # list make both index-free scans cheap at tens of millions of spans (docs/analytics.md).
    con.execute("ALTER TABLE spans ADD COLUMN IF NOT EXISTS trace_key UBIGINT")
    con.execute("ALTER TABLE spans ADD COLUMN IF NOT EXISTS link_trace_ids VARCHAR[]")
    con.execute(
        """UPDATE spans SET
             trace_key = ('0x' || substr(trace_id, 1, 16))::UBIGINT,
             link_trace_ids = nullif(list_sort(list_distinct(
                 json_extract_string(record, '$.links[*].trace_id'))), []::VARCHAR[])
           WHERE trace_key IS NULL"""
    )


def _create_intake_journal(con: duckdb.DuckDBPyConnection) -> None:
    # The last intake journal frame whose rows are committed (collector/journal.py), updated in the
    # same transaction as the rows; frames are numbered from 1.
    con.execute("CREATE TABLE intake_journal (last_frame BIGINT NOT NULL)")
    con.execute("INSERT INTO intake_journal VALUES (0)")


def _compress_records_with_zstd(con: duckdb.DuckDBPyConnection) -> None:
    # ``record`` is two thirds of a span's bytes. DuckDB's automatic choice for it (FSST) cost the
    # writer about 6 µs per span to compress and kept about 450 bytes per span; zstd takes less CPU
    # and about a third of the space (measured on the benchmark's spans, docs/configuration.md).
    # DuckDB sets a column's compression only when the table is created, so the table is rebuilt
    # (in stored order: DuckDB preserves insertion order, and sorting would spill a large store to
    # disk); the views read it by name and need no change.
    columns = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE table_name = 'spans' AND schema_name = current_schema() AND database_name = current_database() "
        "ORDER BY column_index"
    ).fetchall()
    definition = ", ".join(
        f"{name} {sql_type}" + (" USING COMPRESSION zstd" if name == "record" else "") for name, sql_type in columns
    )
    con.execute(f"CREATE TABLE spans_rebuilt ({definition})")
    con.execute("INSERT INTO spans_rebuilt SELECT * FROM spans")
    con.execute("DROP TABLE spans")
    con.execute("ALTER TABLE spans_rebuilt RENAME TO spans")


Migration = tuple[str, Callable[["duckdb.DuckDBPyConnection"], None]]

MIGRATIONS: list[Migration] = [
    ("0001_spans", _create_spans),
    ("0002_collector_tables", _create_collector_tables),
    ("0003_views", _create_views),
    ("0004_span_keys", _create_span_keys),
    ("0005_trace_key_and_links", _add_trace_key_and_links),
    ("0006_intake_journal", _create_intake_journal),
    ("0007_record_zstd", _compress_records_with_zstd),
]


def migrate(con: duckdb.DuckDBPyConnection, extra: list[Migration] | None = None) -> list[str]:
    """Apply every store migration not yet applied, in order; return the names applied now."""
    return apply_migrations(con, [*MIGRATIONS, *(extra or [])])


def apply_migrations(con: duckdb.DuckDBPyConnection, migrations: list[Migration]) -> list[str]:
    """The migration runner, shared by every DuckDB file govtrace writes: each named step once,
    in order, in its own transaction, remembered in ``schema_migrations``."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    done = {row[0] for row in con.execute("SELECT name FROM schema_migrations").fetchall()}
    applied = []
    for name, step in migrations:
        if name in done:
            continue
        con.execute("BEGIN")
        try:
            step(con)
            con.execute("INSERT INTO schema_migrations VALUES (?, now())", [name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied
