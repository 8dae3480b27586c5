"""The exported events: member rows streamed through the ``Reader`` into ``data/events.parquet``.

Each chunk of seqs is read, each disclosed record hashed as its leaf (so the proof is built from
the very bytes written), records the redaction profile names are withheld, and events whose
payload retention deleted are written as ``erased`` rows (seq only) in their place. Compressing a
chunk runs beside the next chunk's query.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from govtrace.analytics.evidence import collect, layout
from govtrace.analytics.evidence.redaction import content_pointers
from govtrace.collector.ledger.leaves import arrow_leaf_hashes


@dataclass
class MemberEvents:
    seqs: list[int] = field(default_factory=list)
    leaves: dict[int, bytes] = field(default_factory=dict)  # seq -> leaf hash of disclosed records
    withheld: dict[int, list[str]] = field(default_factory=dict)  # seq -> JSON pointers that made us withhold it
    erased: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> tombstone facts
    registry: list[tuple[int, str]] = field(default_factory=list)  # (seq, record) of registry loads
    agent_events: int = 0
    policy_versions: set[tuple[str, str]] = field(default_factory=set)


def write_events(reader, staging: Path, agent: str, since: datetime, until: datetime, tree_size: int,
                  redaction: str, chunk_seqs: int) -> MemberEvents:
    events = MemberEvents()
    registry = collect.registry_seqs(reader, since, until, tree_size)
    erased = collect.erased_members(reader, agent, since, until, tree_size).to_pylist()
    for row in erased:
        events.erased[int(row["seq"])] = {"leaf_hash": bytes(row["leaf_hash"]), "event_no": int(row["event_no"]),
                                          "data_class": row["data_class"]}
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    pending_erased = sorted(events.erased)
    # Compressing a chunk into Parquet releases the GIL, so it runs beside the next chunk's query.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="govtrace-export-writer")
    written = None
    try:
        for lo, hi, table in collect.iter_members(reader, agent, since, until, tree_size, registry, chunk_seqs):
            if schema is None:
                schema = table.schema.append(pa.field("disclosure", pa.string()))
                writer = pq.ParquetWriter(staging / layout.EVENTS, schema, compression="zstd")
            table = _disclose(table, events, redaction)
            gone = [s for s in pending_erased if lo <= s < hi]
            if gone:
                table = pa.concat_tables([table.cast(schema), _erased_rows(schema, gone)]).sort_by("seq")
            if table.num_rows:
                if written is not None:
                    written.result()
                written = pool.submit(writer.write_table, table.cast(schema))
                events.seqs += table.column("seq").to_pylist()
        if written is not None:
            written.result()
    finally:
        pool.shutdown(wait=True)
        if writer is not None:
            writer.close()
    events.agent_events += len(events.erased)
    return events


def _disclose(table: pa.Table, events: MemberEvents, redaction: str) -> pa.Table:
    """Hash each member's record as its leaf; withhold records the redaction profile names."""
    n = table.num_rows
    if n == 0:
        return table.append_column("disclosure", pa.array([], pa.string()))
    records = table.column("record").combine_chunks()
    if records.null_count:
        raise collect.StoreError("a member event has a NULL record and no tombstone: run govtrace verify-store")
    seqs = table.column("seq").to_pylist()
    roles = table.column("included_as").to_pylist()
    hashes = arrow_leaf_hashes(records)
    events.leaves.update(zip(seqs, hashes, strict=True))
    events.agent_events += roles.count(collect.SUBJECT)
    disclosure = ["full"] * n
    texts = records.to_pylist() if redaction != "none" or collect.REGISTRY in roles else None
    for i, role in enumerate(roles):
        if role == collect.REGISTRY:
            events.registry.append((seqs[i], texts[i]))
        elif redaction != "none":
            pointers = content_pointers(orjson.loads(texts[i]), redaction)
            if pointers:
                events.withheld[seqs[i]] = pointers
                disclosure[i] = "withheld"
    if events.withheld and "withheld" in disclosure:
        kept = [None if d == "withheld" else t for t, d in zip(texts, disclosure, strict=True)]
        table = table.set_column(table.schema.get_field_index("record"), "record", pa.array(kept, pa.string()))
    return table.append_column("disclosure", pa.array(disclosure, pa.string()))


def _erased_rows(schema: pa.Schema, seqs: list[int]) -> pa.Table:
    columns = {}
    for f in schema:
        if f.name == "seq":
            columns[f.name] = pa.array(seqs, f.type)
        elif f.name == "included_as":
            columns[f.name] = pa.array([collect.SUBJECT] * len(seqs), f.type)
        elif f.name == "disclosure":
            columns[f.name] = pa.array(["erased"] * len(seqs), f.type)
        else:
            columns[f.name] = pa.nulls(len(seqs), f.type)
    return pa.table(columns, schema=schema)
