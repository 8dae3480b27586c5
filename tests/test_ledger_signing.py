"""Ledger keys: signed-note key ids and formats, the key directory, rotation and trust."""

from __future__ import annotations

import json
import os
import stat

import pytest

from govtrace.collector.ledger import note
from govtrace.collector.ledger.signing import (
    KeyFileError,
    KeyStore,
    PublicKey,
    Signer,
    compute_key_id,
    make_rotation_statement,
    normalize_fingerprint,
    open_rotation_statement,
    trusted_keys,
)

# golang.org/x/mod/sumdb/note (note_test.go / package doc): a key pair in Go's text formats.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
# Other published verifier keys (sumdb note tests, C2SP signed-note example).
OTHER_VERIFIER_KEYS = [
    "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop",
    "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- formats and key ids --------------------------------------------------------------------------


def test_go_private_key_string_yields_the_published_verifier_key():
    signer = Signer.from_private_key_string(GO_SIGNER_KEY)
    assert signer.public_key.verifier_key == GO_VERIFIER_KEY
    assert signer.to_private_key_string() == GO_SIGNER_KEY


@pytest.mark.parametrize("vkey", [GO_VERIFIER_KEY, *OTHER_VERIFIER_KEYS])
def test_key_id_follows_the_signed_note_convention_for_published_keys(vkey):
    key = PublicKey.from_verifier_key(vkey)
    name, hex_id, _ = vkey.split("+", 2)
    assert compute_key_id(name, key.raw).hex() == hex_id
    assert key.verifier_key == vkey


def test_a_verifier_key_whose_id_does_not_match_its_material_is_rejected():
    name, _, material = GO_VERIFIER_KEY.split("+", 2)
    with pytest.raises(KeyFileError, match="does not match"):
        PublicKey.from_verifier_key(f"{name}+00000000+{material}")
    with pytest.raises(KeyFileError):
        PublicKey.from_verifier_key(f"OtherName+c74f20a3+{material}")


def test_fingerprint_is_the_sha256_of_the_raw_public_key_and_accepts_pasted_forms():
    import hashlib

    key = PublicKey.from_verifier_key(GO_VERIFIER_KEY)
    assert key.fingerprint == hashlib.sha256(key.raw).hexdigest()
    pasted = "SHA256:" + ":".join(key.fingerprint[i : i + 2].upper() for i in range(0, 64, 2))
    assert normalize_fingerprint(pasted) == key.fingerprint
    assert key.matches_fingerprint(pasted)
    with pytest.raises(ValueError):
        normalize_fingerprint("c74f20a3")  # a key id is not a fingerprint


def test_key_names_with_spaces_or_plus_are_refused():
    for bad in ["", "a b", "a+b", "tab\tname"]:
        with pytest.raises(ValueError):
            Signer.generate(bad)


def test_public_key_verifies_only_what_its_private_key_signed():
    signer = Signer.generate("govtrace.test/log")
    sig = signer.sign(b"message")
    assert signer.public_key.verify(b"message", sig)
    assert not signer.public_key.verify(b"messagE", sig)
    assert not Signer.generate("govtrace.test/log").public_key.verify(b"message", sig)


def test_signer_repr_never_shows_key_material():
    signer = Signer.from_private_key_string(GO_SIGNER_KEY)
    assert "AYEKF" not in repr(signer) and "c74f20a3" in repr(signer)


# --- key directory --------------------------------------------------------------------------------


def test_first_use_generates_a_key_in_a_private_directory(tmp_path):
    directory = tmp_path / "keys"
    signer = KeyStore(directory).load_or_create("govtrace.test/log")
    assert mode(directory) == 0o700
    key_file = directory / f"{signer.key_id.hex()}.key"
    assert mode(key_file) == 0o600
    assert key_file.read_text().startswith("PRIVATE+KEY+govtrace.test/log+")
    assert (directory / f"{signer.key_id.hex()}.pub").read_text().strip() == signer.public_key.verifier_key


def test_existing_key_directory_with_loose_permissions_is_tightened(tmp_path):
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    KeyStore(directory).load_or_create("govtrace.test/log")
    assert mode(directory) == 0o700


def test_loading_again_returns_the_same_key(tmp_path):
    first = KeyStore(tmp_path / "k").load_or_create("govtrace.test/log")
    again = KeyStore(tmp_path / "k").load_or_create("some.other/name")
    assert again.public_key == first.public_key


def test_a_private_key_readable_by_others_is_refused(tmp_path):
    store = KeyStore(tmp_path / "k")
    signer = store.load_or_create("govtrace.test/log")
    os.chmod(tmp_path / "k" / f"{signer.key_id.hex()}.key", 0o644)
    with pytest.raises(KeyFileError, match="readable by other users"):
        store.current()


def test_a_key_file_edited_to_another_key_id_is_refused(tmp_path):
    store = KeyStore(tmp_path / "k")
    signer = store.load_or_create("govtrace.test/log")
    path = tmp_path / "k" / f"{signer.key_id.hex()}.key"
    path.write_text(signer.to_private_key_string().replace(signer.key_id.hex(), "00000000"))
    with pytest.raises(KeyFileError):
        store.current()


# --- rotation -------------------------------------------------------------------------------------


def test_rotation_makes_a_new_current_key_and_logs_a_statement_signed_by_both(tmp_path):
    store = KeyStore(tmp_path / "k")
    old = store.load_or_create("govtrace.test/log")
    new, statement = store.rotate(when=1_700_000_000)
    assert store.current().public_key == new.public_key != old.public_key
    rotation = open_rotation_statement(statement)
    assert (rotation.old, rotation.new, rotation.time) == (old.public_key, new.public_key, 1_700_000_000)
    assert store.rotation_statements() == [statement]
    logged = json.loads((tmp_path / "k" / "rotations.jsonl").read_text())
    assert logged["old"] == old.public_key.fingerprint and logged["new"] == new.public_key.fingerprint
    assert {k.fingerprint for k in store.public_keys()} == {old.public_key.fingerprint, new.public_key.fingerprint}


def test_trust_flows_both_ways_along_rotations_from_the_pinned_key(tmp_path):
    store = KeyStore(tmp_path / "k")
    k1 = store.load_or_create("govtrace.test/log")
    k2, _ = store.rotate()
    k3, _ = store.rotate()
    statements = store.rotation_statements()
    everyone = {k.fingerprint for k in (k1.public_key, k2.public_key, k3.public_key)}
    assert {k.fingerprint for k in trusted_keys([k1.public_key], statements)} == everyone
    assert {k.fingerprint for k in trusted_keys([k3.public_key], statements)} == everyone
    assert trusted_keys([k1.public_key], []) == [k1.public_key]


def test_a_rotation_statement_not_signed_by_the_old_key_grants_no_trust():
    old, new, impostor = (Signer.generate("govtrace.test/log") for _ in range(3))
    genuine = make_rotation_statement(old, new, 100)
    text, _ = note.parse_note(genuine)
    forged = note.sign_note(text, [impostor, new])  # names old as predecessor without its signature
    with pytest.raises(note.NoteError):
        open_rotation_statement(forged)
    assert trusted_keys([old.public_key], [forged]) == [old.public_key]


def test_a_rotation_statement_with_an_edited_time_fails():
    old, new = Signer.generate("govtrace.test/log"), Signer.generate("govtrace.test/log")
    statement = make_rotation_statement(old, new, 100)
    with pytest.raises(note.NoteError):
        open_rotation_statement(statement.replace("time 100", "time 999"))


def test_public_key_round_trips_through_pem_for_tools_without_signed_note():
    key = Signer.generate("govtrace.test/log").public_key
    pem = key.to_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert PublicKey.from_pem(key.name, pem) == key
