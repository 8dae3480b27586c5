"""C2SP signed-note envelope (c2sp.org/signed-note): sign, parse and open.

A note is UTF-8 text ending in a newline, a blank line, then one or more signature lines
``— <key name> base64(4-byte key id || signature)``. The signature covers the text including its
final newline. Checkpoints and key-rotation statements are both notes, so auditors need one
verifier for everything we sign.

Signers and keys are duck-typed (``name``, ``key_id``, ``sign`` / ``verify``) so this module does
not depend on ``signing``; ``signing`` depends on it for rotation statements.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100  # the spec asks verifiers for a limit of at least 16


class NoteError(ValueError):
    """A note is malformed or its signatures do not verify; the message says which."""


class _SignerLike(Protocol):
    name: str

    @property
    def key_id(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class _KeyLike(Protocol):
    name: str

    @property
    def key_id(self) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> bool: ...


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


def sign_note(text: str, signers: Sequence[_SignerLike]) -> str:
    """Signed note over ``text`` (which must end in a newline), one signature line per signer."""
    _check_text(text)
    if not signers:
        raise NoteError("a note needs at least one signature")
    message = text.encode()
    lines = []
    for s in signers:
        blob = base64.b64encode(s.key_id + s.sign(message)).decode()
        lines.append(f"{SIGNATURE_PREFIX}{s.name} {blob}\n")
    return text + "\n" + "".join(lines)


def parse_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a note into its text and signatures without verifying anything."""
    if not note.endswith("\n"):
        raise NoteError("note does not end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteError("note has no blank line before its signatures")
    text, sig_block = note[: cut + 1], note[cut + 2 :]
    _check_text(text)
    sig_lines = sig_block[:-1].split("\n")
    if len(sig_lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in sig_lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"malformed signature line: {line[:60]!r}")
        name, space, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not space or not name or "+" in name or " " in blob:
            raise NoteError(f"malformed signature line: {line[:60]!r}")
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise NoteError(f"signature of {name} is not valid base64") from exc
        if len(raw) < 5:
            raise NoteError(f"signature of {name} is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return text, signatures


def open_note(note: str, keys: Iterable[_KeyLike]) -> tuple[str, list[_KeyLike]]:
    """Verify a note against known keys; returns its text and the keys whose signatures verified.

    Per the spec: signatures by unknown keys are ignored; a signature by a known key (same name and
    key id) that fails rejects the whole note; a note with no verified signature is rejected.
    """
    text, signatures = parse_note(note)
    known = {(k.name, k.key_id): k for k in keys}
    message = text.encode()
    verified = []
    for sig in signatures:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        if not key.verify(message, sig.signature):
            raise NoteError(f"signature by {sig.name} (key id {sig.key_id.hex()}) does not verify")
        verified.append(key)
    if not verified:
        names = ", ".join(f"{s.name} ({s.key_id.hex()})" for s in signatures)
        raise NoteError(f"note is not signed by any trusted key; it is signed by: {names}")
    return text, verified


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    for c in text:
        if c != "\n" and ord(c) < 0x20:
            raise NoteError(f"note text contains control character {ord(c):#04x}")
