"""Re-derive every typed column from the stored record and compare.

The ledger proves the ``record`` bytes are unaltered; the typed columns that queries read are
derived from those bytes, so an edit to a column alone (say ``policy_effect``) would change
answers without touching the Merkle log. This check closes that gap: any column that differs from
what ``derive_columns`` computes from the record is reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import orjson
import pandas as pd

from govtrace.collector.normalize import derive_columns
from govtrace.collector.schema import DERIVED_COLUMNS

CHUNK_ROWS = 32_768
MAX_FINDINGS = 50


@dataclass(frozen=True)
class ColumnMismatch:
    seq: int
    column: str
    stored: Any
    derived: Any

    def __str__(self) -> str:
        return f"seq {self.seq}: column {self.column} is {self.stored!r} but the stored record says {self.derived!r}"


def check_derived_columns(con: duckdb.DuckDBPyConnection,
                          progress: Callable[[int, int], None] | None = None) -> tuple[int, int, list[ColumnMismatch]]:
    """(rows checked, mismatching cells, the first MAX_FINDINGS mismatches)."""
    total, low, high = con.execute("SELECT count(*), min(seq), max(seq) FROM spans").fetchall()[0]
    kept: list[ColumnMismatch] = []
    mismatching = checked = 0
    if not total:
        return 0, 0, kept
    select = ", ".join(["seq", "record", *DERIVED_COLUMNS])
    for start in range(low, high + 1, CHUNK_ROWS):
        rows = con.sql(
            f"SELECT {select} FROM spans WHERE seq >= ? AND seq < ? ORDER BY seq", params=[start, start + CHUNK_ROWS]
        ).to_arrow_table().to_pylist()
        for row in rows:
            if row["record"] is None:
                continue  # payload deleted by retention; the ledger checks its tombstone
            derived = derive_columns(orjson.loads(row["record"]))
            for column in DERIVED_COLUMNS:
                if not same_value(row[column], derived.get(column)):
                    mismatching += 1
                    if len(kept) < MAX_FINDINGS:
                        kept.append(ColumnMismatch(row["seq"], column, row[column], derived.get(column)))
        checked += len(rows)
        if progress:
            progress(checked, total)
    return checked, mismatching, kept


def same_value(stored: Any, derived: Any) -> bool:
    """Whether a stored column value equals the one derived from its record (floats to 1e-12)."""
    if stored is None or derived is None:
        return stored is None and derived is None
    if hasattr(stored, "timestamp") and isinstance(derived, int):  # TIMESTAMP_NS read back as a datetime
        stored = pd.Timestamp(stored).value
    if isinstance(stored, float) or isinstance(derived, float):
        try:
            return math.isclose(float(stored), float(derived), rel_tol=1e-12, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return stored == derived
