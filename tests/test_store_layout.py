"""How the store lays spans out in its DuckDB file: small row groups, records compressed with zstd,
and a database from before that layout rebuilt in place without changing a row."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from govtrace.collector.decode import parse_protobuf
from govtrace.collector.loadgen import FreshIds, build_request
from govtrace.collector.normalize import normalize_request
from govtrace.collector.schema import MIGRATIONS, apply_migrations
from govtrace.collector.store import ROW_GROUP_ROWS, Store


def _spans(requests: int, spans_per_request: int = 512) -> pa.Table:
    return pa.concat_tables(
        normalize_request(parse_protobuf(FreshIds(build_request(spans_per_request, seed=i)).fresh().body)).table
        for i in range(requests)
    )


def _record_segments(path) -> list[tuple[int, int, str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "SELECT row_group_id, count, compression FROM pragma_storage_info('spans') "
            "WHERE column_name = 'record' AND segment_type = 'VARCHAR' ORDER BY row_group_id"
        ).fetchall()
    finally:
        con.close()


def test_a_large_commit_is_written_in_small_row_groups_with_zstd_records(tmp_path):
    db = tmp_path / "spans.duckdb"
    table = _spans(10)  # 5,120 rows: more than one row group
    with Store(db) as store:
        assert store.submit(table).result(timeout=60).stored == table.num_rows
    segments = _record_segments(db)
    assert sum(count for _, count, _ in segments) == table.num_rows
    assert max(count for _, count, _ in segments) == ROW_GROUP_ROWS
    assert {compression for _, _, compression in segments} == {"ZSTD"}


def test_a_database_from_before_zstd_records_is_rebuilt_with_every_row_unchanged(tmp_path):
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    apply_migrations(con, MIGRATIONS[:6])  # the schema as it was before 0007_record_zstd
    incoming = _spans(2, 300).set_column(0, "seq", pa.array(range(600), type=pa.int64()))
    con.register("incoming", incoming)
    con.execute("INSERT INTO spans SELECT * FROM incoming")
    before = con.execute("SELECT * FROM spans ORDER BY seq").fetchall()
    con.close()
    assert {compression for _, _, compression in _record_segments(db)} != {"ZSTD"}

    with Store(db) as store:
        cursor = store.cursor()
        after = cursor.execute("SELECT * FROM spans ORDER BY seq").fetchall()
        assert cursor.execute("SELECT count(*) FROM tool_calls").fetchall()[0][0] > 0  # views still bind
    assert after == before
    assert {compression for _, _, compression in _record_segments(db)} == {"ZSTD"}


def test_store_cursors_see_the_store_and_cannot_reach_files(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    with Store(tmp_path / "spans.duckdb") as store:
        cursor = store.cursor()
        assert cursor.execute("SELECT count(*) FROM spans").fetchall() == [(0,)]
        with pytest.raises(duckdb.PermissionException):
            cursor.execute(f"SELECT * FROM read_text('{outside}')").fetchall()
        with pytest.raises(duckdb.PermissionException):
            cursor.execute(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
