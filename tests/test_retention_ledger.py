"""Retention deletes payloads, never leaves; legal holds block it; every deletion and hold is an
audit entry the next checkpoint signs; and doing any of it by hand is caught by verification."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from test_evidence_bundle import AGENT, Store, export, failed, fill_store

from govtrace.analytics.evidence.verify import verify_bundle
from govtrace.collector import retention
from govtrace.collector.ledger import merkle, retention_log, verify_store
from govtrace.collector.ledger.checkpoint import parse_checkpoint
from govtrace.collector.ledger.proofs import inclusion_proof
from govtrace.collector.ledger.sealer import Ledger
from govtrace.collector.ledger.wiring import LedgerHook
from govtrace.collector.retention import (
    RetentionError,
    apply_retention,
    parse_policy,
    place_hold,
    release_hold,
)

LATER = time.time() + 2 * 3600  # every demo event is older than an hour by then
EVERYTHING_AFTER_AN_HOUR = parse_policy("default: 1h\n")


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Store:
    return fill_store(tmp_path_factory.mktemp("retention-store"))


@pytest.fixture
def store(original, tmp_path) -> Store:
    db = tmp_path / "store.duckdb"
    shutil.copyfile(original.db, db)
    shutil.copytree(str(original.db) + ".keys", str(db) + ".keys")
    return Store(db, original.signer)


def errors(report) -> dict[str, str]:
    return {f.code: f.message for f in report.errors}


def seal(con, store: Store) -> str:
    return retention._seal(con, store.db, None)


def test_expired_payloads_are_deleted_but_every_leaf_stays_and_the_store_still_verifies(store):
    con = duckdb.connect(str(store.db))
    pii = [r[0] for r in con.sql("SELECT seq FROM spans WHERE data_classification = 'pii' ORDER BY seq").fetchall()]
    leaf = merkle.leaf_hash(con.sql("SELECT record FROM spans WHERE seq = $1", params=[pii[0]]).fetchall()[0][0].encode())
    result = apply_retention(con, parse_policy("classes: {pii: 30d}\n"), time.time() + 31 * 86_400, actor="test")
    assert result.deleted == len(pii) > 0 and result.by_class == {"pii": len(pii)}
    left = con.sql("SELECT count(*) FILTER (WHERE record IS NOT NULL OR agent_id IS NOT NULL OR start_time IS NOT NULL)"
                   " FROM spans WHERE data_classification IS NULL AND seq IN (SELECT seq FROM ledger_tombstones)")
    assert left.fetchall()[0][0] == 0, "the payload and every column derived from it are gone"
    assert con.sql("SELECT count(*) FROM spans").fetchall()[0][0] > len(pii), "no row was removed"
    report = verify_store(con, [store.signer.public_key])
    assert report.ok, report.summary()
    assert {"tombstoned", "retention_unsealed"} <= report.codes()
    proof = inclusion_proof(con, pii[0])  # built from the tombstone's leaf hash
    merkle.verify_inclusion(leaf, proof.seq, proof.tree_size, proof.hashes, parse_checkpoint(proof.checkpoint).root_hash)
    assert seal(con, store).startswith("sealed")
    report = verify_store(con, [store.signer.public_key])
    assert report.ok and "retention_unsealed" not in report.codes()
    con.close()


def test_a_legal_hold_on_an_agent_keeps_its_events_until_it_is_released(store):
    con = duckdb.connect(str(store.db))
    held = con.sql("SELECT count(*) FROM spans WHERE agent_id = 'hr-agent'").fetchall()[0][0]
    place_hold(con, "CASE-7", reason="employment dispute", actor="legal@acme.example", agent="hr-agent")
    first = apply_retention(con, EVERYTHING_AFTER_AN_HOUR, LATER)
    assert first.held == {"CASE-7": held} and first.deleted > 0
    assert con.sql("SELECT count(*) FROM spans WHERE agent_id = 'hr-agent' AND record IS NOT NULL").fetchall()[0][0] == held
    with pytest.raises(RetentionError, match="already active"):
        place_hold(con, "CASE-7", reason="again", actor="legal@acme.example")
    release_hold(con, "CASE-7", reason="settled", actor="legal@acme.example")
    second = apply_retention(con, EVERYTHING_AFTER_AN_HOUR, LATER)
    assert second.deleted == held and not second.held
    log = retention_log.entries(con)
    assert [e["action"] for e in log] == ["hold", "delete", "release", "delete"]
    assert log[0]["actor"] == "legal@acme.example" and log[0]["reason"] == "employment dispute"
    assert verify_store(con, [store.signer.public_key]).ok
    con.close()


def test_every_deletion_and_hold_is_signed_by_the_next_checkpoint_and_cannot_be_edited_afterwards(store):
    con = duckdb.connect(str(store.db))
    place_hold(con, "CASE-9", reason="audit", actor="legal", agent="it-agent")
    apply_retention(con, EVERYTHING_AFTER_AN_HOUR, LATER)
    seal(con, store)
    note = con.sql("SELECT note FROM ledger_checkpoints ORDER BY seq_no DESC LIMIT 1").fetchall()[0][0]
    assert retention_log.sealed(parse_checkpoint(note)) == retention_log.head(con)
    con.execute("UPDATE ledger_retention_log SET entry = replace(entry, 'it-agent', 'hr-agent') WHERE event_no = 0")
    assert "retention_log_chain" in errors(verify_store(con, [store.signer.public_key]))
    con.execute("DELETE FROM ledger_retention_log WHERE event_no = 1")
    found = errors(verify_store(con, [store.signer.public_key]))
    assert "retention_log_missing" in found or "retention_log_chain" in found
    con.close()


def test_a_removed_tombstone_leaves_a_row_without_bytes_or_leaf_and_is_caught(store):
    con = duckdb.connect(str(store.db))
    apply_retention(con, parse_policy("classes: {restricted: 1h}\n"), LATER)
    con.execute("DELETE FROM ledger_tombstones WHERE seq = (SELECT min(seq) FROM ledger_tombstones)")
    found = errors(verify_store(con, [store.signer.public_key]))
    assert {"null_record", "root_mismatch", "tombstones_mismatch"} <= set(found)
    con.close()


def test_a_record_erased_by_hand_with_a_perfect_tombstone_is_caught_as_unlogged(store):
    con = duckdb.connect(str(store.db))
    seq, text = con.sql("SELECT seq, record FROM spans WHERE record IS NOT NULL LIMIT 1").fetchall()[0]
    con.execute("INSERT INTO ledger_tombstones VALUES (?, ?, 99, 'internal', NULL, NULL)",
                [seq, merkle.leaf_hash(text.encode())])
    con.execute("UPDATE spans SET record = NULL WHERE seq = ?", [seq])
    found = errors(verify_store(con, [store.signer.public_key]))
    assert "tombstone_unlogged" in found and "root_mismatch" not in found, "the leaf is right; the deletion is not"
    con.close()


def test_deleting_an_event_a_hold_covers_is_reported_even_with_a_well_formed_log_entry(store):
    con = duckdb.connect(str(store.db))
    place_hold(con, "CASE-3", reason="incident", actor="legal", agent="support-agent")
    seq, text, start = con.sql("SELECT seq, record, epoch_ns(start_time) FROM spans WHERE agent_id = 'support-agent' "
                               "LIMIT 1").fetchall()[0]
    # What apply_retention refuses to do, done with its own building blocks.
    stone = retention_log.Tombstone(seq, merkle.leaf_hash(text.encode()), "unclassified", "support-agent", start)
    event_no = retention_log.append_entry(con, {"action": "delete", "time": int(LATER), "actor": "insider", "count": 1,
                                                "tombstones": retention_log.tombstones_digest([stone])})
    retention._write_tombstones(con, [stone], event_no)
    found = errors(verify_store(con, [store.signer.public_key]))
    assert "deleted_under_hold" in found and "CASE-3" in found["deleted_under_hold"]
    con.close()


def test_rows_not_yet_sealed_by_a_checkpoint_are_never_deleted(store):
    con = duckdb.connect(str(store.db))
    ledger = Ledger(con, store.signer, "govtrace")
    first = ledger.tree_size
    rows = con.sql(f"SELECT * REPLACE (seq + {first} AS seq) FROM spans WHERE seq < 5 ORDER BY seq").to_arrow_table()
    con.begin()
    con.register("more", rows)
    con.execute("INSERT INTO spans SELECT * FROM more")
    ledger.append([r.encode() for r in rows.column("record").to_pylist()], first_seq=first)
    con.commit()
    result = apply_retention(con, EVERYTHING_AFTER_AN_HOUR, LATER)
    assert result.unsealed_skipped == 5 and result.deleted == first
    assert con.sql(f"SELECT count(*) FROM spans WHERE seq >= {first} AND record IS NOT NULL").fetchall()[0][0] == 5
    assert verify_store(con, [store.signer.public_key]).ok
    con.close()


def test_the_collectors_writer_hook_applies_retention_and_seals_what_it_deleted(store):
    con = duckdb.connect(str(store.db))
    ledger = Ledger(con, store.signer, "govtrace")
    checkpoints = ledger.last_checkpoint
    hook = LedgerHook(ledger, EVERYTHING_AFTER_AN_HOUR, retention_every_seconds=3600)
    hook.on_idle(con, LATER)
    assert ledger.last_checkpoint != checkpoints
    assert retention_log.sealed(parse_checkpoint(ledger.last_checkpoint)) == retention_log.head(con)
    deleted = con.sql("SELECT count(*) FROM ledger_tombstones").fetchall()[0][0]
    hook.on_idle(con, LATER + 60)  # within the interval: retention does not run again
    assert con.sql("SELECT count(*) FROM ledger_tombstones").fetchall()[0][0] == deleted > 0
    assert verify_store(con, [store.signer.public_key]).ok
    con.close()


def test_a_policy_file_names_its_bad_setting_and_periods_under_six_months_are_said_out_loud():
    policy = parse_policy("default: 400d\nclasses:\n  pii: 30d\n  restricted: 2y\n  internal: forever\n")
    assert policy.days_for("pii") == 30 and policy.days_for("restricted") == 730
    assert policy.days_for("internal") is None and policy.days_for("confidential") == 400
    assert [w.split(" keeps")[0] for w in policy.warnings()] == ["class pii"]
    for text, message in (("classes: {pii: soon}\n", "classes.pii"), ("default: 0d\n", "must be positive"),
                          ("keep: 3d\n", "unknown keys"), ("minimum_days: 183\nclasses: {pii: 30d}\n", "minimum_days")):
        with pytest.raises(RetentionError, match=message):
            parse_policy(text)


def test_a_bundle_over_erased_events_verifies_and_says_which_were_erased_by_which_deletion(store, tmp_path):
    con = duckdb.connect(str(store.db))
    erased = con.sql("SELECT count(*) FROM spans WHERE agent_id = $1 AND data_classification = 'restricted'",
                     params=[AGENT]).fetchall()[0][0]
    apply_retention(con, parse_policy("classes: {restricted: 1h}\n"), LATER)
    seal(con, store)
    con.close()
    export(store, tmp_path / "bundle")
    result = verify_bundle(tmp_path / "bundle", store.fingerprint)
    assert result.ok, result.table()
    redactions = json.loads((tmp_path / "bundle" / "redactions.json").read_text())
    assert len(redactions["erased"]) == erased > 0
    assert {e["retention_event_no"] for e in redactions["erased"]} == {0}
    assert json.loads(redactions["retention_log"]["entries"][0])["action"] == "delete"
    assert "inclusion proof" not in failed(result)


def test_govtrace_retention_holds_applies_and_reports_on_a_database_file(store):
    def govtrace(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "govtrace.collector.cli", "retention", *args, "--db",
                               str(store.db), "--json"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    policy = store.db.parent / "retention.yaml"
    policy.write_text("default: 1h\n")
    held = govtrace("hold", "--case", "CASE-1", "--agent", "it-agent", "--reason", "incident 41", "--by", "legal")
    assert held["event_no"] == 0 and held["sealed"].startswith("sealed")
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    applied = govtrace("apply", "--policy", str(policy), "--now", later, "--by", "ops")
    assert applied["deleted"] > 0 and applied["held"]["CASE-1"] > 0 and applied["sealed"].startswith("sealed")
    status = govtrace("status")
    assert list(status["active_holds"]) == ["CASE-1"] and status["payloads_deleted"] == applied["deleted"]
    assert [e["action"] for e in status["log"]] == ["hold", "delete"]
