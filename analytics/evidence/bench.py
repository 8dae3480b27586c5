"""``govtrace bench export``: time the evidence export of one agent with about ``--spans`` events.

The store is a generated fleet (``analytics/fleetgen.py``, two agents so that one of them holds
about nine spans in ten) sealed by a real ledger: every row hashed as a leaf and signed in a
checkpoint, as the collector would have done. ``--db`` reuses (or keeps) that file. The figures:
the export's wall time, CPU time and steps, the bundle's size, and the offline verification's time
(``--skip-verify`` is not offered: a benchmark bundle that does not verify is not a result).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

ORIGIN = "govtrace.bench/export"


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    from govtrace.analytics.evidence.export import export_bundle
    from govtrace.analytics.evidence.verify import verify_bundle
    from govtrace.analytics.reader import ConnectionReader
    from govtrace.collector.ledger.signing import KeyStore

    agent_events = int(args.spans or 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="govtrace-bench-export-"))
    db = Path(args.db) if args.db else work / "fleet.duckdb"
    figures: dict[str, Any] = {"requested_agent_events": agent_events}
    try:
        if not db.exists():
            figures.update(_generate(db, agent_events))
        keys = KeyStore(str(db) + ".keys")
        signer = keys.load_or_create(ORIGIN)
        con = duckdb.connect(str(db))
        try:
            figures.update(_seal(con, signer, keys))
            agent, n, since, until = con.sql(
                "SELECT agent_id, count(*), min(start_time), max(start_time) FROM spans WHERE agent_id IS NOT NULL "
                "GROUP BY 1 ORDER BY 2 DESC LIMIT 1").fetchall()[0]
            figures.update({"store_rows": con.sql("SELECT count(*) FROM spans").fetchall()[0][0], "agent": agent,
                            "agent_events": n})
            out = work / "bundle"
            started, cpu = time.perf_counter(), time.process_time()
            result = export_bundle(ConnectionReader(con, source=f"file {db}"), agent, since,
                                   until + timedelta(microseconds=1), out, signer=signer, exported_by="bench")
            figures["export_seconds"] = round(time.perf_counter() - started, 1)
            # CPU time of all the process's threads (DuckDB's included): what the export costs, apart
            # from how busy the machine was; load_average says how busy that was.
            figures["export_cpu_seconds"] = round(time.process_time() - cpu, 1)
            figures["load_average_1min"] = os.getloadavg()[0]
        finally:
            con.close()
        figures.update({"bundle_events": result.events, "bundle_megabytes": round(result.bytes / 1e6, 1),
                        "bundle_files": result.files, "within_60_seconds": figures["export_seconds"] <= 60})
        figures.update({f"export_{k.replace(' ', '_')}_s": round(v, 1) for k, v in result.timings.items()})
        started = time.perf_counter()
        verification = verify_bundle(out, signer.public_key.fingerprint)
        figures["verify_seconds"] = round(time.perf_counter() - started, 1)
        figures["verify_ok"] = verification.ok
        if not verification.ok:
            figures["verify_failures"] = [f"{c.name}: {c.detail}" for c in verification.failures]
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the bundle, and the generated store unless --db kept it
    return figures


def _generate(db: Path, agent_events: int) -> dict[str, Any]:
    from govtrace.analytics.fleetgen import FleetSpec, generate

    started = time.perf_counter()
    spec = FleetSpec(spans=int(agent_events / 0.895) + 1_000, agents=2, days=30, links_column=False)
    out = generate(db, spec)
    return {"generate_seconds": round(time.perf_counter() - started, 1), "generated_spans": out["spans"]}


def _seal(con, signer, keys) -> dict[str, Any]:
    """Hash every row into the ledger and sign a checkpoint, as the collector's writer would have."""
    from govtrace.collector.ledger.sealer import Ledger

    started = time.perf_counter()
    ledger = Ledger(con, signer, ORIGIN, rotation_statements=keys.rotation_statements())
    ledger.seal()
    return {"seal_seconds": round(time.perf_counter() - started, 1), "tree_size": ledger.tree_size}
