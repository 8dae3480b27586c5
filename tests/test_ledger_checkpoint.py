"""Signed notes and checkpoints: the C2SP formats, signatures and checkpoint chains."""

from __future__ import annotations

import base64

import pytest

from govtrace.collector.ledger import merkle, note
from govtrace.collector.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    note_hash,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_chain,
)
from govtrace.collector.ledger.signing import PublicKey, Signer

# golang.org/x/mod/sumdb/note: Ed25519 is deterministic, so our note must equal Go's byte for byte.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (GO_TEXT + "\n\u2014 PeterNeumann "
           "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")

ORIGIN = "govtrace.test/log"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def build_chain(signer: Signer, sizes: list[int], dropped: list[int] | None = None):
    """Signed checkpoints over one growing log, with the consistency proof into each."""
    hashes = merkle.leaf_hashes([f"event {i}".encode() for i in range(max(sizes))])
    notes, proofs, prev = [], {}, None
    for i, size in enumerate(sizes):
        cp = Checkpoint(ORIGIN, size, merkle.root_from_leaf_hashes(hashes[:size]),
                        prev=None if prev is None else note_hash(prev), time=1000 + i,
                        dropped=(dropped or [0] * len(sizes))[i])
        signed = sign_checkpoint(cp, signer)
        if i > 0:
            proofs[i] = merkle.consistency_proof(hashes, sizes[i - 1], size)
        notes.append(signed)
        prev = signed
    return notes, proofs


# --- signed notes ---------------------------------------------------------------------------------


def test_signed_note_equals_the_published_go_note_byte_for_byte():
    assert note.sign_note(GO_TEXT, [Signer.from_private_key_string(GO_SIGNER_KEY)]) == GO_NOTE


def test_the_published_go_note_opens_with_its_verifier_key():
    key = PublicKey.from_verifier_key(GO_VERIFIER_KEY)
    text, signers = note.open_note(GO_NOTE, [key])
    assert text == GO_TEXT and signers == [key]


def test_a_note_with_one_changed_character_does_not_open():
    key = PublicKey.from_verifier_key(GO_VERIFIER_KEY)
    with pytest.raises(note.NoteError, match="does not verify"):
        note.open_note(GO_NOTE.replace("cryptography", "cryptographY"), [key])


def test_signatures_by_unknown_keys_are_ignored_but_one_known_signature_is_required(signer):
    other = Signer.generate("someone.else/key")
    both = note.sign_note("hello\n", [other, signer])
    assert note.open_note(both, [signer.public_key])[1] == [signer.public_key]
    with pytest.raises(note.NoteError, match="not signed by any trusted key"):
        note.open_note(note.sign_note("hello\n", [other]), [signer.public_key])


def test_a_key_with_the_same_name_and_id_but_a_bad_signature_rejects_the_note(signer):
    signed = note.sign_note("hello\n", [signer])
    text, sigs = note.parse_note(signed)
    forged_blob = base64.b64encode(sigs[0].key_id + bytes(64)).decode()
    forged = f"{text}\n\u2014 {signer.name} {forged_blob}\n"
    with pytest.raises(note.NoteError, match="does not verify"):
        note.open_note(forged, [signer.public_key])


@pytest.mark.parametrize("bad", [
    "no final newline",
    "text\n\u2014 name c2ln\n",               # no blank line before signatures
    "text\n\n- name AAAAAAAA\n",              # hyphen instead of em dash
    "text\n\n\u2014 name !!notbase64!!\n",
    "te\x01xt\n\n\u2014 name AAAAAAAA\n",     # control character in text
])
def test_malformed_notes_are_rejected(bad):
    with pytest.raises(note.NoteError):
        note.parse_note(bad)


# --- checkpoint text ------------------------------------------------------------------------------


def test_checkpoint_text_has_origin_size_base64_root_then_our_extension_lines():
    root = merkle.root([b"a", b"b", b"c"])
    prev = bytes(range(32))
    text = Checkpoint(ORIGIN, 3, root, prev=prev, time=1700000000, dropped=7).text()
    assert text == (f"{ORIGIN}\n3\n{base64.b64encode(root).decode()}\nprev {prev.hex()}\n"
                    "time 1700000000\ndropped 7\n")


def test_checkpoint_survives_text_round_trip_including_unknown_extension_lines():
    cp = Checkpoint(ORIGIN, 12, merkle.EMPTY_ROOT, prev=bytes(32), time=5, dropped=0,
                    extensions=("vendor.example/foo bar",))
    assert Checkpoint.from_text(cp.text()) == cp


def test_first_checkpoint_has_no_prev_line(signer):
    signed = sign_checkpoint(Checkpoint(ORIGIN, 1, merkle.root([b"x"]), time=1, dropped=0), signer)
    assert "\nprev " not in signed
    assert parse_checkpoint(signed).prev is None


@pytest.mark.parametrize("text", [
    "origin\n012\nAAAA\n",                      # leading zero in size
    "origin\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
    "origin\n1\nnot base64\n",
    "origin\n1\n" + base64.b64encode(bytes(31)).decode() + "\n",
    "origin\n1\n",                               # no root line
    "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\ntime 1\ntime 2\n",
    "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\n",
    "origin\n1\n" + base64.b64encode(bytes(32)).decode() + "\nprev abcd\n",
])
def test_malformed_checkpoint_text_is_rejected(text):
    with pytest.raises(CheckpointError):
        Checkpoint.from_text(text)


def test_signed_checkpoint_opens_with_the_signing_key_and_not_with_another(signer):
    cp = Checkpoint(ORIGIN, 2, merkle.root([b"a", b"b"]), time=10, dropped=1)
    signed = sign_checkpoint(cp, signer)
    assert signed.endswith("\n") and f"\n\n\u2014 {ORIGIN} " in signed
    assert open_checkpoint(signed, [signer.public_key])[0] == cp
    with pytest.raises(CheckpointError):
        open_checkpoint(signed, [Signer.generate(ORIGIN).public_key])


def test_editing_a_signed_extension_line_breaks_the_signature(signer):
    signed = sign_checkpoint(Checkpoint(ORIGIN, 2, merkle.root([b"a", b"b"]), time=10, dropped=1), signer)
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(signed.replace("dropped 1", "dropped 0"), [signer.public_key])


def test_note_hash_covers_the_signature_lines(signer):
    cp = Checkpoint(ORIGIN, 1, merkle.root([b"a"]), time=1, dropped=0)
    a, b = sign_checkpoint(cp, signer), sign_checkpoint(cp, Signer.generate(ORIGIN))
    assert note_hash(a) != note_hash(b)


# --- chains ---------------------------------------------------------------------------------------


def test_a_well_formed_chain_with_consistency_proofs_has_no_findings(signer):
    notes, proofs = build_chain(signer, [3, 3, 8, 13, 40], dropped=[0, 2, 2, 5, 5])
    assert verify_chain(notes, [signer.public_key], proofs) == []


def test_removing_a_checkpoint_from_the_middle_breaks_the_prev_chain(signer):
    notes, _ = build_chain(signer, [3, 8, 13, 40])
    findings = verify_chain(notes[:1] + notes[2:], [signer.public_key])
    assert [f.code for f in findings] == ["prev_chain"]
    assert findings[0].checkpoint == 1 and "removed, replaced or reordered" in findings[0].message


def test_reordered_checkpoints_are_reported(signer):
    notes, _ = build_chain(signer, [3, 8, 13])
    codes = {f.code for f in verify_chain([notes[0], notes[2], notes[1]], [signer.public_key])}
    assert {"prev_chain", "size_shrank"} <= codes


def test_a_shrinking_tree_and_a_decreasing_drop_counter_are_errors(signer):
    hashes = merkle.leaf_hashes([b"a", b"b", b"c"])
    first = sign_checkpoint(Checkpoint(ORIGIN, 3, merkle.root_from_leaf_hashes(hashes), time=1, dropped=4), signer)
    second = sign_checkpoint(Checkpoint(ORIGIN, 2, merkle.root_from_leaf_hashes(hashes[:2]),
                                        prev=note_hash(first), time=2, dropped=3), signer)
    codes = [f.code for f in verify_chain([first, second], [signer.public_key])]
    assert "size_shrank" in codes and "dropped_decreased" in codes


def test_a_wrong_or_missing_consistency_proof_is_an_error_when_proofs_are_checked(signer):
    notes, proofs = build_chain(signer, [3, 8, 13])
    wrong = dict(proofs)
    wrong[2] = [bytes(32)] * len(proofs[2])
    assert [f.code for f in verify_chain(notes, [signer.public_key], wrong)] == ["consistency"]
    missing = {1: proofs[1]}
    findings = verify_chain(notes, [signer.public_key], missing)
    assert [f.code for f in findings] == ["consistency"] and "no consistency proof" in findings[0].message


def test_two_checkpoints_of_equal_size_with_different_roots_are_a_fork(signer):
    a = sign_checkpoint(Checkpoint(ORIGIN, 2, merkle.root([b"a", b"b"]), time=1, dropped=0), signer)
    b = sign_checkpoint(Checkpoint(ORIGIN, 2, merkle.root([b"a", b"X"]), prev=note_hash(a), time=2, dropped=0),
                        signer)
    findings = verify_chain([a, b], [signer.public_key])
    assert [f.code for f in findings] == ["consistency"] and "different roots" in findings[0].message


def test_an_untrusted_signature_is_reported_per_checkpoint(signer):
    notes, proofs = build_chain(signer, [3, 8])
    findings = verify_chain(notes, [Signer.generate(ORIGIN).public_key], proofs)
    assert [(f.code, f.checkpoint) for f in findings] == [("signature", 0), ("signature", 1)]


def test_a_chain_can_continue_from_a_previous_export(signer):
    notes, proofs = build_chain(signer, [3, 8, 13])
    assert verify_chain(notes[1:], [signer.public_key], {0: proofs[1], 1: proofs[2]}, previous=notes[0]) == []
    findings = verify_chain(notes[2:], [signer.public_key], previous=notes[0])
    assert [f.code for f in findings] == ["prev_chain"]


def test_a_window_of_checkpoints_without_its_predecessor_is_not_mistaken_for_a_genesis(signer):
    notes, _ = build_chain(signer, [3, 8, 13])
    assert [f.code for f in verify_chain(notes[1:], [signer.public_key])] == ["prev_chain"]
    assert verify_chain(notes[1:], [signer.public_key], from_genesis=False) == []


def test_a_checkpoint_time_going_backwards_is_only_a_warning(signer):
    a = sign_checkpoint(Checkpoint(ORIGIN, 1, merkle.root([b"a"]), time=100, dropped=0), signer)
    b = sign_checkpoint(Checkpoint(ORIGIN, 1, merkle.root([b"a"]), prev=note_hash(a), time=50, dropped=0), signer)
    assert [(f.level, f.code) for f in verify_chain([a, b], [signer.public_key])] == [("warning", "time_backwards")]
