"""Checkpoints: C2SP tlog-checkpoint text with our extension lines, signed as a C2SP note.

Body (c2sp.org/tlog-checkpoint)::

    <origin>
    <tree size, decimal>
    <base64 root hash>
    prev <hex SHA-256 of the previous signed checkpoint note>   (absent on the first checkpoint)
    time <unix seconds>
    dropped <events dropped upstream, cumulative since the log began>

``prev`` chains checkpoints so deleting or replacing one is visible. ``dropped`` is cumulative
rather than per-interval so it must never decrease, and one lost checkpoint loses no count. The
extension lines are signed like the rest of the text; unknown extension lines are kept verbatim.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import merkle, note
from .report import ERROR, WARNING, Finding
from .signing import PublicKey, Signer


class CheckpointError(ValueError):
    """A checkpoint is malformed or not signed by a trusted key."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    prev: bytes | None = None  # SHA-256 of the previous checkpoint's full signed note
    time: int | None = None
    dropped: int | None = None
    extensions: tuple[str, ...] = ()  # extension lines we do not interpret, in order

    def text(self) -> str:
        """The note text (what gets signed), ending in a newline."""
        if not self.origin or any(c.isspace() for c in self.origin):
            raise CheckpointError(f"invalid origin: {self.origin!r}")
        if self.tree_size < 0 or len(self.root_hash) != merkle.HASH_SIZE:
            raise CheckpointError("checkpoint needs a non-negative size and a 32-byte root")
        lines = [self.origin, str(self.tree_size), base64.b64encode(self.root_hash).decode()]
        if self.prev is not None:
            lines.append(f"prev {self.prev.hex()}")
        if self.time is not None:
            lines.append(f"time {int(self.time)}")
        if self.dropped is not None:
            lines.append(f"dropped {int(self.dropped)}")
        lines += self.extensions
        if any(not line for line in lines):
            raise CheckpointError("checkpoint lines must be non-empty")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
            raise CheckpointError("checkpoint text needs origin, size and root lines, each non-empty")
        origin, size_line, root_line, *ext = lines[:-1]
        if not size_line.isdigit() or (size_line != "0" and size_line.startswith("0")):
            raise CheckpointError(f"tree size {size_line!r} is not a decimal without leading zeros")
        try:
            root_hash = base64.b64decode(root_line, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CheckpointError("root hash is not valid base64") from exc
        if len(root_hash) != merkle.HASH_SIZE:
            raise CheckpointError("root hash is not 32 bytes")
        fields: dict[str, str] = {}
        other = []
        for line in ext:
            key, _, value = line.partition(" ")
            if key in ("prev", "time", "dropped"):
                if key in fields:
                    raise CheckpointError(f"extension line {key!r} appears twice")
                fields[key] = value
            else:
                other.append(line)
        try:
            prev = bytes.fromhex(fields["prev"]) if "prev" in fields else None
            when = int(fields["time"]) if "time" in fields else None
            dropped = int(fields["dropped"]) if "dropped" in fields else None
        except ValueError as exc:
            raise CheckpointError(f"malformed extension line: {exc}") from exc
        if prev is not None and len(prev) != 32:
            raise CheckpointError("prev is not a SHA-256 hex digest")
        return cls(origin, int(size_line), root_hash, prev, when, dropped, tuple(other))


def note_hash(signed_note: str) -> bytes:
    """What the next checkpoint's ``prev`` line names: SHA-256 of the whole signed note."""
    return hashlib.sha256(signed_note.encode()).digest()


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    return note.sign_note(checkpoint.text(), [signer])


def parse_checkpoint(signed_note: str) -> Checkpoint:
    """Read a signed checkpoint without verifying its signature (for display and diagnosis)."""
    try:
        text, _ = note.parse_note(signed_note)
    except note.NoteError as exc:
        raise CheckpointError(str(exc)) from exc
    return Checkpoint.from_text(text)


def open_checkpoint(signed_note: str, keys: Iterable[PublicKey]) -> tuple[Checkpoint, list[PublicKey]]:
    """Verify a signed checkpoint against trusted keys; returns it and the keys that signed it."""
    try:
        text, signers = note.open_note(signed_note, keys)
    except note.NoteError as exc:
        raise CheckpointError(str(exc)) from exc
    return Checkpoint.from_text(text), signers


def verify_chain(
    notes: Sequence[str],
    keys: Iterable[PublicKey],
    consistency_proofs: Mapping[int, Sequence[bytes]] | None = None,
    *,
    previous: str | None = None,
    from_genesis: bool = True,
) -> list[Finding]:
    """Check a run of consecutive signed checkpoints; returns findings (none means it verifies).

    Checks every signature, that origins agree, that each ``prev`` names the note before it, that
    sizes and drop counts never decrease, and, when ``consistency_proofs`` is given, that proof
    ``consistency_proofs[i]`` shows checkpoint ``i-1`` (or ``previous`` for ``i == 0``) is a
    prefix of checkpoint ``i``; a missing proof between different sizes is then an error.
    ``previous`` is the checkpoint just before ``notes[0]`` (e.g. from an earlier evidence bundle).
    With neither ``previous`` nor ``from_genesis``, ``notes[0]``'s own ``prev`` is not checked.
    """
    keys = list(keys)
    findings: list[Finding] = []

    def add(level: str, code: str, index: int, message: str) -> None:
        findings.append(Finding(level, code, f"checkpoint {index}: {message}", checkpoint=index))

    chain: list[tuple[str, Checkpoint | None]] = []
    for i, n in enumerate(notes):
        try:
            cp, _ = open_checkpoint(n, keys)
        except CheckpointError as exc:
            add(ERROR, "signature", i, f"signature does not verify: {exc}")
            try:
                cp = parse_checkpoint(n)
            except CheckpointError as exc2:
                add(ERROR, "malformed_checkpoint", i, str(exc2))
                cp = None
        chain.append((n, cp))

    before: tuple[str, Checkpoint] | None = None
    if previous is not None:
        try:
            before = (previous, parse_checkpoint(previous))
        except CheckpointError as exc:
            findings.append(Finding(ERROR, "malformed_checkpoint", f"previous checkpoint: {exc}"))

    for i, (n, cp) in enumerate(chain):
        if cp is None:
            before = None
            continue
        if before is None:
            if i == 0 and previous is None and from_genesis and cp.prev is not None:
                add(ERROR, "prev_chain", i, "is the first checkpoint but names a predecessor")
        else:
            prev_note, prev_cp = before
            _check_link(i, prev_note, prev_cp, cp, consistency_proofs, add)
        before = (n, cp)
    return findings


def _check_link(i, prev_note, prev_cp, cp, proofs, add) -> None:
    """Checks between one checkpoint and the one before it."""
    if cp.origin != prev_cp.origin:
        add(ERROR, "origin", i, f"origin {cp.origin!r} differs from the previous {prev_cp.origin!r}")
    if cp.prev != note_hash(prev_note):
        add(ERROR, "prev_chain", i, "its prev hash does not name the checkpoint before it "
            "(a checkpoint was removed, replaced or reordered)")
    if cp.tree_size < prev_cp.tree_size:
        add(ERROR, "size_shrank", i, f"tree size went down from {prev_cp.tree_size} to {cp.tree_size}")
    if cp.dropped is not None and prev_cp.dropped is not None and cp.dropped < prev_cp.dropped:
        add(ERROR, "dropped_decreased", i, f"dropped counter went down from {prev_cp.dropped} to {cp.dropped}")
    if cp.time is not None and prev_cp.time is not None and cp.time < prev_cp.time:
        add(WARNING, "time_backwards", i, f"time {cp.time} is earlier than the previous checkpoint's {prev_cp.time}")
    if cp.tree_size < prev_cp.tree_size:
        return
    proof = None if proofs is None else proofs.get(i)
    if proof is None and cp.tree_size != prev_cp.tree_size:
        if proofs is not None:
            add(ERROR, "consistency", i, "no consistency proof from the previous checkpoint")
        return
    try:
        merkle.verify_consistency(prev_cp.tree_size, cp.tree_size, prev_cp.root_hash, cp.root_hash, proof or [])
    except merkle.ProofError as exc:
        add(ERROR, "consistency", i, f"not consistent with the previous checkpoint: {exc}")
