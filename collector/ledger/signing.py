"""Ed25519 ledger keys: generation, on-disk storage, C2SP key ids, fingerprints and rotation.

Key names and ids follow the C2SP signed-note convention so our checkpoints can be checked by any
signed-note verifier (Go's golang.org/x/mod/sumdb/note, transparency-dev tooling):

    key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]

The human *fingerprint* is different: SHA-256 hex of the raw 32-byte public key. The key id is a
4-byte hint for picking the right key; the fingerprint is what an auditor pins out of band
(``govtrace verify --key-fingerprint``) because 4 bytes can be collided on purpose.

Private keys are stored in Go's note key format, ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01||seed)>``,
so an operator can use them with existing signed-note tools. Rotation produces a statement (itself a
signed note) that names the old and the new key, signed by both: the old key's signature carries
trust forward to the new key and the new key's proves its holder took part.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import note

SIGNATURE_TYPE_ED25519 = 0x01
ROTATION_HEADER = "govtrace/key-rotation/v1"
PRIVATE_KEY_FILE_MODE = 0o600
KEY_DIR_MODE = 0o700

_PRIVATE_PREFIX = "PRIVATE+KEY+"
_CURRENT_FILE = "current"
_ROTATION_LOG = "rotations.jsonl"
_HEX_ID = re.compile(r"[0-9a-f]{8}")


class KeyFileError(Exception):
    """A key file or key string is missing, malformed or unsafely stored."""


def compute_key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key id for an Ed25519 key: 4 bytes, big-endian uint32 on the wire."""
    check_key_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([SIGNATURE_TYPE_ED25519]) + public_key).digest()[:4]


def fingerprint(public_key: bytes) -> str:
    """SHA-256 hex of the raw public key: the value auditors pin."""
    return hashlib.sha256(public_key).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """Accept ``SHA256:ab:cd…``, upper case or spaced forms people paste from documents."""
    t = text.strip().lower()
    if t.startswith("sha256:"):
        t = t[len("sha256:") :]
    t = re.sub(r"[\s:]", "", t)
    if not re.fullmatch(r"[0-9a-f]{64}", t):
        raise ValueError(f"not a SHA-256 key fingerprint: {text!r}")
    return t


def check_key_name(name: str) -> None:
    """signed-note: key names are non-empty and contain no Unicode spaces and no '+'."""
    if not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise ValueError(f"invalid signed-note key name: {name!r}")


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 verification key with its signed-note name."""

    name: str
    raw: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.raw) != 32:
            raise KeyFileError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return compute_key_id(self.name, self.raw)

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    @property
    def verifier_key(self) -> str:
        """signed-note verifier key string: ``<name>+<hex id>+<base64(0x01 || key)>``."""
        material = base64.b64encode(bytes([SIGNATURE_TYPE_ED25519]) + self.raw).decode()
        return f"{self.name}+{self.key_id_hex}+{material}"

    @classmethod
    def from_verifier_key(cls, text: str) -> PublicKey:
        # The base64 part may itself contain '+', so split from the left, at most twice.
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not _HEX_ID.fullmatch(parts[1]):
            raise KeyFileError(f"malformed verifier key: {text!r}")
        name, hex_id, material = parts
        blob = _b64decode(material, "verifier key")
        if len(blob) != 33 or blob[0] != SIGNATURE_TYPE_ED25519:
            raise KeyFileError("verifier key is not an Ed25519 signed-note key")
        key = cls(name, blob[1:])
        if key.key_id_hex != hex_id:
            raise KeyFileError(f"verifier key id {hex_id} does not match its name and key material")
        return key

    def to_pem(self) -> str:
        """SubjectPublicKeyInfo PEM, for tools that do not speak signed-note (openssl, age …)."""
        key = Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @classmethod
    def from_pem(cls, name: str, pem: str | bytes) -> PublicKey:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError("PEM key is not an Ed25519 public key")
        return cls(name, key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def matches_fingerprint(self, text: str) -> bool:
        return self.fingerprint == normalize_fingerprint(text)


class Signer:
    """An Ed25519 private key with its signed-note name."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        check_key_name(name)
        self.name = name
        self._key = private_key
        raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key = PublicKey(name, raw)

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_private_key_string(cls, text: str) -> Signer:
        """Parse Go's ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`` format."""
        text = text.strip()
        if not text.startswith(_PRIVATE_PREFIX):
            raise KeyFileError("private key string does not start with PRIVATE+KEY+")
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3 or not _HEX_ID.fullmatch(parts[1]):
            raise KeyFileError("malformed private key string")
        name, hex_id, material = parts
        blob = _b64decode(material, "private key")
        if len(blob) != 33 or blob[0] != SIGNATURE_TYPE_ED25519:
            raise KeyFileError("private key is not an Ed25519 signed-note key")
        signer = cls.from_seed(name, blob[1:])
        if signer.key_id.hex() != hex_id:
            raise KeyFileError(f"private key id {hex_id} does not match its name and key material")
        return signer

    def to_private_key_string(self) -> str:
        seed = self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        material = base64.b64encode(bytes([SIGNATURE_TYPE_ED25519]) + seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{material}"

    @property
    def key_id(self) -> bytes:
        return self.public_key.key_id

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:  # never print key material
        return f"Signer(name={self.name!r}, key_id={self.key_id.hex()})"


# --- rotation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    """A verified rotation statement: ``new`` succeeds ``old`` from ``time`` (unix seconds)."""

    old: PublicKey
    new: PublicKey
    time: int
    statement: str


def make_rotation_statement(old: Signer, new: Signer, when: int | None = None) -> str:
    """Signed note naming both keys, signed by the old key and then the new one."""
    when = int(time.time()) if when is None else int(when)
    text = (
        f"{ROTATION_HEADER}\n"
        f"old {old.public_key.verifier_key}\n"
        f"new {new.public_key.verifier_key}\n"
        f"time {when}\n"
    )
    return note.sign_note(text, [old, new])


def open_rotation_statement(statement: str) -> Rotation:
    """Parse a rotation statement and check both signatures; raises ``note.NoteError``."""
    text, _ = note.parse_note(statement)
    lines = text.rstrip("\n").split("\n")
    if len(lines) != 4 or lines[0] != ROTATION_HEADER:
        raise note.NoteError("not a govtrace key rotation statement")
    fields = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key] = value
    try:
        old = PublicKey.from_verifier_key(fields["old"])
        new = PublicKey.from_verifier_key(fields["new"])
        when = int(fields["time"])
    except (KeyError, ValueError, KeyFileError) as exc:
        raise note.NoteError(f"malformed rotation statement: {exc}") from exc
    for key, role in ((old, "old"), (new, "new")):
        _, verified = note.open_note(statement, [key])
        if key not in verified:  # pragma: no cover - open_note raises first
            raise note.NoteError(f"rotation statement is not signed by its {role} key")
    return Rotation(old, new, when, statement)


def trusted_keys(pinned: Iterable[PublicKey], statements: Iterable[str]) -> list[PublicKey]:
    """Keys reachable from the pinned ones through valid rotation statements, in either direction.

    Forward (old pinned -> new) is the point of rotation. Backward (new pinned -> old) is sound
    because the statement is signed by the new key too: whoever holds the pinned key vouched for
    its predecessor. Invalid statements are ignored, never trusted.
    """
    trusted = {k.fingerprint: k for k in pinned}
    rotations = []
    for s in statements:
        try:
            rotations.append(open_rotation_statement(s))
        except note.NoteError:
            continue
    changed = True
    while changed:
        changed = False
        for r in rotations:
            if (r.old.fingerprint in trusted) != (r.new.fingerprint in trusted):
                trusted.setdefault(r.old.fingerprint, r.old)
                trusted.setdefault(r.new.fingerprint, r.new)
                changed = True
    return list(trusted.values())


# --- key directory -------------------------------------------------------------------------------


class KeyStore:
    """A directory of ledger keys (mode 0700): one ``<key id>.key`` (0600) and ``.pub`` per key,
    a ``current`` pointer, and ``rotations.jsonl``, the append-only log of rotation statements."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def load_or_create(self, name: str) -> Signer:
        """The current key; generates and stores one named ``name`` on first use."""
        if (self.directory / _CURRENT_FILE).exists():
            return self.current()
        self._ensure_directory()
        signer = Signer.generate(name)
        self._write_key(signer)
        self._write_current(signer)
        return signer

    def current(self) -> Signer:
        pointer = self.directory / _CURRENT_FILE
        if not pointer.exists():
            raise KeyFileError(f"no ledger key in {self.directory}")
        return self._read_key(pointer.read_text().strip())

    def rotate(self, new_name: str | None = None, when: int | None = None) -> tuple[Signer, str]:
        """Make a new current key and append the rotation statement; returns both.

        The retired private key stays in the directory (operators may destroy it once the last
        checkpoint it signed has been escrowed); it is never used to sign again.
        """
        old = self.current()
        new = Signer.generate(new_name or old.name)
        statement = make_rotation_statement(old, new, when)
        self._write_key(new)
        record = {
            "old": old.public_key.fingerprint,
            "new": new.public_key.fingerprint,
            "time": open_rotation_statement(statement).time,
            "statement": statement,
        }
        # The statement is logged before the pointer moves, so a crash never leaves a current key
        # without the statement that vouches for it.
        _append_line(self.directory / _ROTATION_LOG, json.dumps(record, ensure_ascii=False))
        self._write_current(new)
        return new, statement

    def rotation_statements(self) -> list[str]:
        log = self.directory / _ROTATION_LOG
        if not log.exists():
            return []
        return [json.loads(line)["statement"] for line in log.read_text().splitlines() if line.strip()]

    def public_keys(self) -> list[PublicKey]:
        """Every key this directory ever held, oldest rotation first where known."""
        return [
            PublicKey.from_verifier_key(p.read_text())
            for p in sorted(self.directory.glob("*.pub"), key=lambda p: p.stat().st_mtime_ns)
        ]

    # -- files --

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=KEY_DIR_MODE, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask and ignored for an existing directory.
        os.chmod(self.directory, KEY_DIR_MODE)

    def _write_key(self, signer: Signer) -> None:
        stem = signer.key_id.hex()
        path = self.directory / f"{stem}.key"
        # O_EXCL: never overwrite a private key; 0600 from creation, not after a window.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_KEY_FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(signer.to_private_key_string() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(path, PRIVATE_KEY_FILE_MODE)
        _write_atomic(self.directory / f"{stem}.pub", signer.public_key.verifier_key + "\n", 0o644)

    def _write_current(self, signer: Signer) -> None:
        _write_atomic(self.directory / _CURRENT_FILE, signer.key_id.hex() + "\n", PRIVATE_KEY_FILE_MODE)

    def _read_key(self, hex_id: str) -> Signer:
        if not _HEX_ID.fullmatch(hex_id):
            raise KeyFileError(f"corrupt key pointer in {self.directory}")
        path = self.directory / f"{hex_id}.key"
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            # Like ssh: refuse a private key others can read rather than silently trust it.
            raise KeyFileError(f"{path} is readable by other users (mode {mode:o}); chmod 600 it")
        return Signer.from_private_key_string(path.read_text())


def _write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with os.fdopen(fd, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError(f"{what}: invalid base64") from exc
