"""The collector's store drives the ledger: what it stores verifies, and one edited row is caught."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import duckdb

from govtrace.collector.config import load_config
from govtrace.collector.loadgen import RawExporter, build_request
from govtrace.collector.server import Collector


def _fill(tmp_path, requests: int = 6):
    db = tmp_path / "ledger.duckdb"
    config = load_config(None, {"db": str(db), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0", "decode_workers": 0,
                                "seal_every_events": 500}, environ={})
    with Collector(config) as running:
        exporter = RawExporter(running.grpc_endpoint)
        for i in range(requests):
            exporter.send(build_request(256, seed=i).body)
        exporter.close()
    return db


def _verify(db, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "govtrace.collector.cli", "verify-store", "--db", str(db), "--json",
                           *extra], capture_output=True, text=True, timeout=120)


def test_every_stored_span_is_a_leaf_under_a_signed_checkpoint_and_verifies(tmp_path):
    db = _fill(tmp_path)
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT count(*) FROM spans").fetchone()[0]
    sealed = con.execute("SELECT max(tree_size) FROM ledger_checkpoints").fetchone()[0]
    con.close()
    assert rows == 6 * 256
    assert sealed == rows, "closing the collector seals a checkpoint over every stored row"
    result = _verify(db)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["rows_checked"] == rows
    assert report["columns_checked"] == rows and report["column_mismatches"] == 0


def test_editing_one_stored_policy_decision_is_detected(tmp_path):
    db = _fill(tmp_path)
    con = duckdb.connect(str(db))
    con.execute("UPDATE spans SET record = replace(record, '\"allow\"', '\"deny\"') WHERE seq = 17")
    con.close()
    result = _verify(db)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    # The Merkle log cannot say which leaf changed, only which signed checkpoint no longer matches:
    # the first one, covering seq 0..499.
    assert report["ledger_ok"] is False
    assert any(f["code"] == "root_mismatch" and "checkpoint 0" in f["message"] for f in report["findings"])


def test_editing_a_typed_column_without_its_record_is_detected(tmp_path):
    db = _fill(tmp_path, requests=1)
    con = duckdb.connect(str(db))
    con.execute("UPDATE spans SET policy_effect = 'allow' WHERE seq = 3 AND policy_effect <> 'allow'")
    con.execute("UPDATE spans SET policy_effect = 'deny' WHERE seq = 3 AND policy_effect = 'allow'")
    con.close()
    result = _verify(db)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ledger_ok"] is True, "the records themselves are untouched"
    assert report["column_mismatches"] == 1
    assert report["column_findings"][0].startswith("seq 3: column policy_effect")


def test_verification_pinned_to_another_key_fingerprint_fails(tmp_path):
    db = _fill(tmp_path, requests=1)
    result = _verify(db, "--key-fingerprint", "00" * 32)
    assert result.returncode != 0


def _ledger_store(db):
    from govtrace.collector.ledger.wiring import ledger_for
    from govtrace.collector.store import Store

    config = load_config(None, {"db": str(db)}, environ={})
    migrations, hook = ledger_for(config)
    return Store(str(db), hook_factory=hook, extra_migrations=migrations)


def test_leaf_hashes_from_the_decoders_are_used_checked_and_filtered_with_duplicates(tmp_path, caplog):
    """The decode workers hash each record for the ledger; the writer takes those hashes (dropping
    the ones of duplicate rows), and hashes that do not match their records are not trusted."""
    import pyarrow as pa

    from govtrace.collector.decode_pool import PolicySettings, decode_batch

    policy = PolicySettings().build()
    first, second, third = (decode_batch(build_request(64, seed=s).body, "protobuf", None, 1 << 24, None,
                                         time.time_ns(), policy) for s in (1, 2, 3))
    assert len(first.leaf_hashes) == 32 * 64
    db = tmp_path / "hashes.duckdb"
    with _ledger_store(db) as store:
        store.submit(first.table, leaf_hashes=first.leaf_hashes).result(timeout=30)
        # 10 rows already stored, then 64 new: the stored 10 are dropped with their hashes.
        mixed = pa.concat_tables([first.table.slice(0, 10), second.table])
        receipt = store.submit(mixed, leaf_hashes=first.leaf_hashes[:320] + second.leaf_hashes).result(timeout=30)
        assert (receipt.stored, receipt.duplicates) == (64, 10)
        store.submit(third.table, leaf_hashes=b"\x00" * len(third.leaf_hashes)).result(timeout=30)
    assert "do not match their records" in caplog.text
    result = _verify(db)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["rows_checked"] == 3 * 64
