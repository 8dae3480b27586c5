"""The ledger inside a real DuckDB store: append, seal, restart, prove, and catch tampering.

Each test builds a DuckDB file in tmp_path with a minimal ``spans(seq, record)`` table standing in
for the store's, writes through ``Ledger`` the way the single writer does (rows and ``append`` in
one transaction), then tampers with the file directly, as an insider with SQL access would.
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import pyarrow as pa
import pytest

from govtrace.collector.ledger import (
    CompactRange,
    KeyStore,
    Ledger,
    LedgerStateError,
    ProofError,
    Signer,
    consistency_proof,
    inclusion_proof,
    merkle,
    range_proof,
    trusted_keys_from_store,
    verify_consistency_proof,
    verify_inclusion_proof,
    verify_range_proof,
    verify_store,
)
from govtrace.collector.ledger.checkpoint import parse_checkpoint
from govtrace.collector.ledger.leaves import leaf_hashes_of_array
from govtrace.collector.ledger.proofs import InclusionProof, RangeProof
from govtrace.collector.ledger.schema import LEDGER_MIGRATIONS

ORIGIN = "govtrace.test/log"


class Clock:
    """A hand-driven clock: seal timing must not depend on how fast the test machine is."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "store.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE spans (seq BIGINT, record VARCHAR)")
    con.close()
    return path


def record(i: int) -> bytes:
    # Canonical-JSON-like text with non-ASCII content: the leaf is the UTF-8 of the stored text.
    return json.dumps({"seq": i, "agent": "agént-7", "tool": "search", "args_digest": f"{i:064x}"},
                      separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def write(con, ledger: Ledger, records: list[bytes]) -> None:
    """What the store's writer does: insert rows and append leaves in one transaction."""
    first = ledger.tree_size
    table = pa.table({"seq": pa.array(range(first, first + len(records)), pa.int64()),
                      "record": pa.array([r.decode() for r in records], pa.string())})
    con.begin()
    con.register("incoming", table)
    con.execute("INSERT INTO spans SELECT seq, record FROM incoming")
    con.unregister("incoming")
    ledger.append(records, first_seq=first)
    con.commit()


def sealed_store(db_path, signer, batches=(10, 10, 10, 5), clock=None):
    """A store with one checkpoint per batch: sizes 10, 20, 30, 35 by default."""
    con = duckdb.connect(str(db_path))
    clock = clock or Clock()
    ledger = Ledger(con, signer, ORIGIN, seal_every_events=1000, seal_every_seconds=60, clock=clock)
    n = 0
    for size in batches:
        write(con, ledger, [record(i) for i in range(n, n + size)])
        n += size
        clock.t += 1
        assert ledger.seal() is not None
    return con, ledger


def errors(report) -> list[tuple[str, str]]:
    return [(f.code, f.message) for f in report.errors]


def codes(report) -> set[str]:
    return {f.code for f in report.errors}


# --- untampered -----------------------------------------------------------------------------------


def test_an_untampered_store_verifies_with_no_findings(db_path, signer):
    con, ledger = sealed_store(db_path, signer)
    report = verify_store(con, [signer.public_key])
    assert report.ok, report.summary()
    assert report.findings == []
    assert (report.rows_checked, report.checkpoints_checked) == (35, 4)
    assert report.root_hash == ledger.root() == merkle.root(record(i) for i in range(35))


def test_checkpoints_are_signed_c2sp_notes_chained_by_prev_with_stored_consistency_proofs(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    rows = con.execute("SELECT note, tree_size, consistency_proof FROM ledger_checkpoints ORDER BY seq_no").fetchall()
    cps = [parse_checkpoint(r[0]) for r in rows]
    assert [cp.tree_size for cp in cps] == [10, 20, 30, 35]
    assert cps[0].prev is None and rows[0][2] is None
    hashes = merkle.leaf_hashes(record(i) for i in range(35))
    for i in range(1, 4):
        assert cps[i].prev == hashlib.sha256(rows[i - 1][0].encode()).digest()
        stored = rows[i][2]
        proof = [bytes(stored[j : j + 32]) for j in range(0, len(stored), 32)]
        assert proof == merkle.consistency_proof(hashes, cps[i - 1].tree_size, cps[i].tree_size)


def test_unsealed_rows_are_reported_as_information_not_as_an_error(db_path, signer):
    con, ledger = sealed_store(db_path, signer)
    write(con, ledger, [record(i) for i in range(35, 38)])
    report = verify_store(con, [signer.public_key])
    assert report.ok
    assert [(f.level, f.code) for f in report.findings] == [("info", "unsealed")]
    assert "seq 35..37" in report.findings[0].message


def test_verification_streams_in_small_batches_and_reports_progress(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    seen = []
    report = verify_store(con, [signer.public_key], chunk_rows=7, progress=lambda done, total: seen.append((done, total)))
    assert report.ok
    assert seen[-1] == (35, 35) and [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) >= 5


# --- tampering: the four row attacks --------------------------------------------------------------


def test_an_edited_record_is_reported_against_the_window_that_sealed_it(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("""UPDATE spans SET record = replace(record, '"search"', '"delete"') WHERE seq = 14""")
    report = verify_store(con, [signer.public_key])
    assert not report.ok
    mismatches = [f for f in report.errors if f.code == "root_mismatch"]
    assert [f.checkpoint for f in mismatches] == [1, 2, 3]
    assert "the rows it sealed, seq 10..19, do not match" in mismatches[0].message
    assert "seq 20..29, still match" in mismatches[1].message
    assert codes(report) == {"root_mismatch", "state_mismatch"}


def test_a_deleted_row_is_reported_as_a_seq_gap_and_breaks_the_roots(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("DELETE FROM spans WHERE seq = 22")
    report = verify_store(con, [signer.public_key])
    assert ("seq_gap", "seq 22 is missing: rows were deleted") in errors(report)
    assert "root_mismatch" in codes(report)
    assert any(f.code == "beyond_table" and "covers 35 rows but the table holds only 34" in f.message
               for f in report.errors)
    assert all("shifted positions" in f.message for f in report.errors if f.code == "root_mismatch")


def test_an_inserted_row_with_an_existing_seq_is_reported_as_a_duplicate(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("INSERT INTO spans VALUES (7, ?)", [record(7).decode().replace("search", "wire_money")])
    report = verify_store(con, [signer.public_key])
    assert ("seq_duplicate", "seq 7 appears more than once (a row was inserted)") in errors(report)
    assert "root_mismatch" in codes(report)
    assert "rows_beyond_state" not in codes(report)  # the extra row is at seq 7, not past the end


def test_a_row_appended_behind_the_writers_back_is_reported(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("INSERT INTO spans VALUES (35, ?)", [record(35).decode()])
    report = verify_store(con, [signer.public_key])
    assert codes(report) == {"rows_beyond_state"}
    assert "1 row(s) from seq 35 on were not appended through the ledger" in report.errors[0].message


def test_two_swapped_records_are_reported_although_every_seq_is_present(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    a, b = (con.execute("SELECT record FROM spans WHERE seq = ?", [s]).fetchall()[0][0] for s in (3, 24))
    con.execute("UPDATE spans SET record = ? WHERE seq = 3", [b])
    con.execute("UPDATE spans SET record = ? WHERE seq = 24", [a])
    report = verify_store(con, [signer.public_key])
    assert not report.ok
    assert not codes(report) & {"seq_gap", "seq_duplicate"}
    first = [f for f in report.errors if f.code == "root_mismatch"][0]
    assert first.checkpoint == 0 and "seq 0..9, do not match" in first.message
    assert any("seq 20..29, do not match" in f.message for f in report.errors)


def test_an_edited_unsealed_row_is_caught_by_the_ledger_state(db_path, signer):
    con, ledger = sealed_store(db_path, signer)
    write(con, ledger, [record(i) for i in range(35, 40)])
    con.execute("UPDATE spans SET record = record || ' ' WHERE seq = 37")
    report = verify_store(con, [signer.public_key])
    assert codes(report) == {"state_mismatch"}


def test_rows_with_a_null_or_negative_seq_are_reported(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("INSERT INTO spans VALUES (NULL, 'x'), (-1, 'y')")
    report = verify_store(con, [signer.public_key])
    assert codes(report) == {"seq_null", "seq_negative"}


def test_a_forged_far_away_seq_does_not_make_verification_walk_the_gap(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("INSERT INTO spans VALUES (1000000000000, 'far away')")
    report = verify_store(con, [signer.public_key], chunk_rows=4)
    assert ("seq_gap", "seqs 35..999999999999 are missing: rows were deleted") in errors(report)
    assert "rows_beyond_state" in codes(report)


def test_a_corrupted_ledger_state_is_reported_not_crashed_on(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("UPDATE ledger_state SET frontier = '\\x01\\x02'::BLOB")
    assert codes(verify_store(con, [signer.public_key])) == {"state_corrupt"}


def test_a_null_record_is_reported(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("UPDATE spans SET record = NULL WHERE seq = 2")
    report = verify_store(con, [signer.public_key])
    assert ("null_record", "seq 2 has a NULL record") in errors(report)


def test_a_thousand_gaps_are_summarized_instead_of_listed(db_path, signer):
    con, _ = sealed_store(db_path, signer, batches=(2000,))
    con.execute("DELETE FROM spans WHERE seq % 2 = 1")  # 999 gaps; the last row's loss is no gap
    report = verify_store(con, [signer.public_key])
    gaps = [f for f in report.errors if f.code == "seq_gap"]
    assert len(gaps) == 21 and gaps[-1].message == "… and 979 more seq_gap findings not listed"
    assert any(f.code == "beyond_table" for f in report.errors)


def test_a_store_whose_ledger_tables_were_dropped_fails_verification(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("DROP TABLE ledger_checkpoints")
    report = verify_store(con, [signer.public_key])
    assert codes(report) == {"ledger_tables_missing"} and "ledger_checkpoints" in report.errors[0].message


# --- tampering: checkpoints and keys --------------------------------------------------------------


def test_an_edited_checkpoint_note_fails_its_signature(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("UPDATE ledger_checkpoints SET note = replace(note, 'dropped 0', 'dropped 9') WHERE seq_no = 2")
    report = verify_store(con, [signer.public_key])
    assert any(f.code == "signature" and f.checkpoint == 2 for f in report.errors)
    assert "prev_chain" in codes(report)  # checkpoint 3 names the original note


def test_a_deleted_checkpoint_row_breaks_the_numbering_and_the_prev_chain(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("DELETE FROM ledger_checkpoints WHERE seq_no = 1")
    report = verify_store(con, [signer.public_key])
    assert {"checkpoint_numbering", "prev_chain"} <= codes(report)


def test_a_checkpoint_column_that_disagrees_with_its_signed_note_is_reported(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("UPDATE ledger_checkpoints SET tree_size = 11 WHERE seq_no = 0")
    report = verify_store(con, [signer.public_key])
    assert codes(report) == {"column_mismatch"}
    assert "tree_size" in report.errors[0].message


def test_checkpoints_signed_by_an_untrusted_key_fail(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    report = verify_store(con, [Signer.generate(ORIGIN).public_key])
    assert [f.checkpoint for f in report.errors if f.code == "signature"] == [0, 1, 2, 3]
    assert not verify_store(con, []).ok


def test_a_key_holder_who_rewrites_and_resigns_everything_is_caught_only_by_an_escrowed_checkpoint(
    db_path, signer
):
    con, ledger = sealed_store(db_path, signer)
    escrowed = ledger.last_checkpoint  # e.g. e-mailed to the auditor at seal time
    con.execute("""UPDATE spans SET record = replace(record, '"search"', '"exfiltrate"') WHERE seq = 5""")
    for table in ("ledger_checkpoints", "ledger_state", "ledger_keys"):
        con.execute(f"DELETE FROM {table}")
    forged = Ledger(con, signer, ORIGIN)  # rehashes every row, then re-signs
    forged.seal()
    assert verify_store(con, [signer.public_key]).ok  # the honest limit: the store alone cannot tell
    report = verify_store(con, [signer.public_key], anchors=[escrowed])
    assert [f.code for f in report.errors] == ["root_mismatch"]
    assert report.errors[0].message.startswith("anchored checkpoint 0 (tree size 35)")


def test_verification_can_start_from_a_pinned_fingerprint_using_stored_public_keys(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    keys = trusted_keys_from_store(con, "SHA256:" + signer.public_key.fingerprint.upper())
    assert keys == [signer.public_key]
    assert verify_store(con, keys).ok
    with pytest.raises(LookupError):
        trusted_keys_from_store(con, "00" * 32)


def test_after_key_rotation_the_old_pinned_fingerprint_still_verifies_the_whole_store(db_path, tmp_path):
    store = KeyStore(tmp_path / "keys")
    old = store.load_or_create(ORIGIN)
    clock = Clock()
    con, ledger = sealed_store(db_path, old, batches=(10,), clock=clock)
    clock.t += 10
    new, _ = store.rotate(when=int(clock.t))
    con.close()
    con = duckdb.connect(str(db_path))
    clock.t += 10
    ledger = Ledger(con, new, ORIGIN, rotation_statements=store.rotation_statements(), clock=clock)
    write(con, ledger, [record(i) for i in range(10, 15)])
    ledger.seal()
    keys = trusted_keys_from_store(con, old.public_key.fingerprint)
    assert {k.fingerprint for k in keys} == {old.public_key.fingerprint, new.public_key.fingerprint}
    assert verify_store(con, keys).ok
    with pytest.raises(LedgerStateError, match="was retired"):
        Ledger(con, old, ORIGIN, clock=clock)


def test_a_checkpoint_signed_by_a_retired_key_after_its_retirement_is_an_error(db_path, tmp_path):
    store = KeyStore(tmp_path / "keys")
    old = store.load_or_create(ORIGIN)
    clock = Clock()
    con, ledger = sealed_store(db_path, old, batches=(10,), clock=clock)
    store.rotate(when=int(clock.t) + 5)
    ledger.register_key(store.current().public_key, store.rotation_statements()[0])
    clock.t += 100  # the stolen old key keeps signing after the rotation
    write(con, ledger, [record(i) for i in range(10, 12)])
    ledger.seal()
    report = verify_store(con, trusted_keys_from_store(con, old.public_key.fingerprint))
    assert [(f.code, f.checkpoint) for f in report.errors] == [("retired_key", 1)]


# --- sealing policy -------------------------------------------------------------------------------


def test_maybe_seal_seals_after_n_events_or_t_seconds_and_only_when_something_is_new(db_path, signer):
    con = duckdb.connect(str(db_path))
    clock = Clock()
    ledger = Ledger(con, signer, ORIGIN, seal_every_events=10, seal_every_seconds=60, clock=clock)
    assert ledger.maybe_seal() is None
    write(con, ledger, [record(i) for i in range(9)])
    assert ledger.maybe_seal() is None  # 9 events, 0 s
    write(con, ledger, [record(9)])
    assert parse_checkpoint(ledger.maybe_seal()).tree_size == 10  # 10 events
    write(con, ledger, [record(10)])
    clock.t += 59
    assert ledger.maybe_seal() is None
    clock.t += 1
    assert parse_checkpoint(ledger.maybe_seal()).tree_size == 11  # 60 s
    clock.t += 600
    assert ledger.maybe_seal() is None  # nothing new


def test_after_a_quiet_spell_the_next_event_is_sealed_at_the_next_check(db_path, signer):
    con = duckdb.connect(str(db_path))
    clock = Clock()
    ledger = Ledger(con, signer, ORIGIN, seal_every_events=100, seal_every_seconds=60, clock=clock)
    write(con, ledger, [record(0)])
    assert ledger.seal() is not None
    clock.t += 300
    assert ledger.maybe_seal() is None  # quiet: nothing to seal
    write(con, ledger, [record(1)])
    clock.t += 1
    assert parse_checkpoint(ledger.maybe_seal()).tree_size == 2  # not another 60 s later


def test_upstream_drops_are_sealed_cumulatively_even_without_new_events(db_path, signer):
    con = duckdb.connect(str(db_path))
    clock = Clock()
    ledger = Ledger(con, signer, ORIGIN, seal_every_events=100, seal_every_seconds=60, clock=clock)
    write(con, ledger, [record(i) for i in range(3)])
    ledger.note_dropped(4)
    assert parse_checkpoint(ledger.seal()).dropped == 4
    ledger.note_dropped(2)
    clock.t += 60
    cp = parse_checkpoint(ledger.maybe_seal())
    assert (cp.tree_size, cp.dropped) == (3, 6)
    assert verify_store(con, [signer.public_key]).ok


def test_drops_noted_before_a_restart_survive_in_the_ledger_state(db_path, signer):
    con = duckdb.connect(str(db_path))
    ledger = Ledger(con, signer, ORIGIN, clock=Clock())
    ledger.note_dropped(5)
    write(con, ledger, [record(0)])  # persists state, drop count included
    con.close()
    con = duckdb.connect(str(db_path))
    assert Ledger(con, signer, ORIGIN, clock=Clock()).dropped == 5


def test_append_at_the_wrong_seq_is_refused(db_path, signer):
    con = duckdb.connect(str(db_path))
    ledger = Ledger(con, signer, ORIGIN, clock=Clock())
    write(con, ledger, [record(0), record(1)])
    with pytest.raises(LedgerStateError, match="append at seq 5"):
        ledger.append([record(5)], first_seq=5)


# --- restart, crash and rollback ------------------------------------------------------------------


def test_after_a_restart_the_ledger_continues_the_same_tree_and_chain(db_path, signer):
    con, ledger = sealed_store(db_path, signer)
    write(con, ledger, [record(i) for i in range(35, 38)])  # unsealed at "crash" time
    root = ledger.root()
    con.close()
    con = duckdb.connect(str(db_path))
    again = Ledger(con, signer, ORIGIN, clock=Clock(1_800_000_000))
    assert (again.tree_size, again.root()) == (38, root)
    write(con, again, [record(i) for i in range(38, 40)])
    assert parse_checkpoint(again.seal()).tree_size == 40
    assert verify_store(con, [signer.public_key]).ok


def test_rows_committed_without_append_are_hashed_on_start_up(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.executemany("INSERT INTO spans VALUES (?, ?)", [[i, record(i).decode()] for i in range(35, 41)])
    con.close()
    con = duckdb.connect(str(db_path))
    ledger = Ledger(con, signer, ORIGIN, clock=Clock(1_800_000_000))
    assert ledger.tree_size == 41 and ledger.root() == merkle.root(record(i) for i in range(41))
    ledger.seal()
    assert verify_store(con, [signer.public_key]).ok


def test_after_a_rolled_back_write_reload_returns_the_ledger_to_the_committed_state(db_path, signer):
    con, ledger = sealed_store(db_path, signer)
    root = ledger.root()
    con.begin()
    con.execute("INSERT INTO spans VALUES (35, 'lost')")
    ledger.append([b"lost"], first_seq=35)
    con.rollback()
    ledger.reload()
    assert (ledger.tree_size, ledger.root()) == (35, root)
    write(con, ledger, [record(35)])
    ledger.seal()
    assert verify_store(con, [signer.public_key]).ok


def test_start_up_refuses_a_store_whose_covered_rows_were_deleted(db_path, signer):
    con, ledger = sealed_store(db_path, signer)
    write(con, ledger, [record(i) for i in range(35, 40)])
    con.execute("DELETE FROM spans WHERE seq >= 38")
    con.close()
    con = duckdb.connect(str(db_path))
    with pytest.raises(LedgerStateError, match="38 rows but the ledger already covers 40"):
        Ledger(con, signer, ORIGIN)


def test_start_up_refuses_a_store_whose_unsealed_rows_were_changed(db_path, signer):
    con, ledger = sealed_store(db_path, signer)
    write(con, ledger, [record(i) for i in range(35, 40)])
    con.execute("UPDATE spans SET record = 'changed' WHERE seq = 36")
    con.close()
    con = duckdb.connect(str(db_path))
    with pytest.raises(LedgerStateError, match="no longer match"):
        Ledger(con, signer, ORIGIN)


def test_start_up_refuses_to_continue_the_log_under_another_origin(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    with pytest.raises(LedgerStateError, match="keeps one origin"):
        Ledger(con, signer, "govtrace.test/other-log")


def test_migrations_are_idempotent_and_named_in_order(db_path, signer):
    con = duckdb.connect(str(db_path))
    for _ in range(2):
        for _, sql in LEDGER_MIGRATIONS:
            con.execute(sql)
    names = [name for name, _ in LEDGER_MIGRATIONS]
    assert names == sorted(names) and len(set(names)) == len(names)
    Ledger(con, signer, ORIGIN)


# --- proofs for evidence bundles ------------------------------------------------------------------


def test_every_row_has_an_inclusion_proof_that_verifies_offline_from_its_bytes(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    for seq in range(35):
        proof = InclusionProof.from_dict(json.loads(json.dumps(inclusion_proof(con, seq).to_dict())))
        cp = verify_inclusion_proof(record(seq), proof, [signer.public_key])
        assert cp.tree_size == 35


def test_an_inclusion_proof_against_an_older_checkpoint_verifies_and_a_wrong_record_fails(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    proof = inclusion_proof(con, 12, checkpoint_seq_no=1)
    assert proof.tree_size == 20
    verify_inclusion_proof(record(12), proof, [signer.public_key])
    with pytest.raises(ProofError):
        verify_inclusion_proof(record(13), proof, [signer.public_key])
    with pytest.raises(ProofError):
        verify_inclusion_proof(record(12), proof, [Signer.generate(ORIGIN).public_key])
    with pytest.raises(LookupError):
        inclusion_proof(con, 25, checkpoint_seq_no=1)


def test_a_range_proof_lets_an_auditor_rebuild_the_signed_root_from_the_range_alone(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    for first, last in [(0, 34), (0, 0), (34, 34), (7, 21), (10, 19)]:
        proof = RangeProof.from_dict(json.loads(json.dumps(range_proof(con, first, last).to_dict())))
        records = [record(i) for i in range(first, last + 1)]
        assert verify_range_proof(records, proof, [signer.public_key]).tree_size == 35


def test_a_range_proof_fails_for_an_edited_missing_or_reordered_record(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    proof = range_proof(con, 7, 21)
    records = [record(i) for i in range(7, 22)]
    edited = records[:3] + [records[3].replace(b"search", b"delete")] + records[4:]
    swapped = records[:]
    swapped[0], swapped[1] = swapped[1], swapped[0]
    for bad in (edited, swapped):
        with pytest.raises(ProofError):
            verify_range_proof(bad, proof, [signer.public_key])
    with pytest.raises(ProofError, match="records given"):
        verify_range_proof(records[:-1], proof, [signer.public_key])


def test_consistency_proofs_between_any_two_checkpoints_verify_offline(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    for old in range(4):
        for new in range(old, 4):
            proof = consistency_proof(con, old, new)
            a, b = verify_consistency_proof(proof, [signer.public_key])
            assert (a.tree_size, b.tree_size) == (proof.old_size, proof.new_size)


def test_no_proof_is_handed_out_from_a_tampered_store(db_path, signer):
    con, _ = sealed_store(db_path, signer)
    con.execute("UPDATE spans SET record = 'x' WHERE seq = 4")
    with pytest.raises(LedgerStateError, match="no longer match"):
        inclusion_proof(con, 30)
    with pytest.raises(LedgerStateError, match="no longer match"):
        range_proof(con, 20, 30)


# --- leaf bytes -----------------------------------------------------------------------------------


def test_leaf_bytes_are_the_utf8_of_the_stored_text_for_sliced_and_large_arrow_strings():
    texts = ["", "plain", "ünïcødé ✓", "x" * 5000, '{"a":1}'] * 3
    want = [merkle.leaf_hash(t.encode("utf-8")) for t in texts]
    assert leaf_hashes_of_array(pa.array(texts, pa.string())) == want
    assert leaf_hashes_of_array(pa.array(texts, pa.large_string())) == want
    assert leaf_hashes_of_array(pa.array(texts, pa.string()).slice(4, 7)) == want[4:11]
    assert leaf_hashes_of_array(pa.array(texts, pa.string_view())) == want


def test_state_row_holds_a_compact_range_that_matches_the_rows(db_path, signer):
    con, ledger = sealed_store(db_path, signer)
    blob = con.execute("SELECT frontier FROM ledger_state").fetchall()[0][0]
    assert CompactRange.from_bytes(blob).root() == ledger.root()
