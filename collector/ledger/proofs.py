"""Proofs from the store for evidence bundles, and their offline verification.

Each proof carries the signed checkpoint it is relative to, so an auditor holding only the
proof, the event bytes and a trusted public key can check it (``verify_*_proof``).

``MultiProof`` proves many leaves at once (an agent's events, scattered among others'); it is built
from every leaf hash in one pass (``multiproof.py``).

Building a proof needs the roots of O(log n) subtrees; without stored interior nodes each one is
recomputed by streaming its rows from ``spans`` (one bounded-memory range scan per subtree). An
inclusion proof therefore reads the whole log up to the checkpoint; a range proof reads everything
except the range itself. That is fine for exports; storing interior nodes (tlog "tiles") would make
it O(log n) if exports ever become frequent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import merkle, multiproof
from .checkpoint import Checkpoint, CheckpointError, open_checkpoint, parse_checkpoint
from .errors import LedgerStateError
from .merkle import CompactRange, ProofError
from .records import DEFAULT_CHUNK_ROWS, iter_leaf_batches, query_one
from .schema import CHECKPOINTS_TABLE
from .signing import PublicKey

INCLUSION_TYPE = "govtrace/inclusion-proof/v1"
RANGE_TYPE = "govtrace/range-proof/v1"
CONSISTENCY_TYPE = "govtrace/consistency-proof/v1"
MULTI_TYPE = "govtrace/multi-inclusion-proof/v1"


@dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 audit path for the leaf at ``seq`` in the tree of ``tree_size`` leaves."""

    seq: int
    tree_size: int
    hashes: list[bytes]
    checkpoint: str  # the signed note whose root the path leads to

    def to_dict(self) -> dict:
        return {"type": INCLUSION_TYPE, "seq": self.seq, "tree_size": self.tree_size,
                "hashes": [h.hex() for h in self.hashes], "checkpoint": self.checkpoint}

    @classmethod
    def from_dict(cls, d: dict) -> InclusionProof:
        _expect_type(d, INCLUSION_TYPE)
        return cls(int(d["seq"]), int(d["tree_size"]), _hashes(d["hashes"]), d["checkpoint"])


@dataclass(frozen=True)
class RangeProof:
    """Subtree roots that, with leaves ``first..last`` (inclusive), rebuild the checkpoint root.

    ``hashes`` are the roots of the maximal subtrees lying outside the range, left to right, in
    the RFC 6962 tree of ``tree_size`` leaves; see ``merkle.range_proof_ranges``.
    """

    first: int
    last: int
    tree_size: int
    hashes: list[bytes]
    checkpoint: str

    def to_dict(self) -> dict:
        return {"type": RANGE_TYPE, "first": self.first, "last": self.last, "tree_size": self.tree_size,
                "hashes": [h.hex() for h in self.hashes], "checkpoint": self.checkpoint}

    @classmethod
    def from_dict(cls, d: dict) -> RangeProof:
        _expect_type(d, RANGE_TYPE)
        return cls(int(d["first"]), int(d["last"]), int(d["tree_size"]), _hashes(d["hashes"]), d["checkpoint"])


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 consistency proof between two signed checkpoints of the same log."""

    old_size: int
    new_size: int
    hashes: list[bytes]
    old_checkpoint: str
    new_checkpoint: str

    def to_dict(self) -> dict:
        return {"type": CONSISTENCY_TYPE, "old_size": self.old_size, "new_size": self.new_size,
                "hashes": [h.hex() for h in self.hashes],
                "old_checkpoint": self.old_checkpoint, "new_checkpoint": self.new_checkpoint}

    @classmethod
    def from_dict(cls, d: dict) -> ConsistencyProof:
        _expect_type(d, CONSISTENCY_TYPE)
        return cls(int(d["old_size"]), int(d["new_size"]), _hashes(d["hashes"]),
                   d["old_checkpoint"], d["new_checkpoint"])


@dataclass(frozen=True)
class MultiProof:
    """Leaves at ``seqs`` (strictly increasing) are in the tree of ``tree_size`` leaves whose root
    the signed ``checkpoint`` names; ``hashes`` per ``multiproof.multi_proof_ranges``."""

    seqs: list[int]
    tree_size: int
    hashes: list[bytes]
    checkpoint: str

    def to_dict(self) -> dict:
        return {"type": MULTI_TYPE, "tree_size": self.tree_size, "seqs": list(self.seqs),
                "hashes": [h.hex() for h in self.hashes], "checkpoint": self.checkpoint}

    @classmethod
    def from_dict(cls, d: dict) -> MultiProof:
        _expect_type(d, MULTI_TYPE)
        seqs = d["seqs"]
        if not isinstance(seqs, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seqs):
            raise ProofError("seqs must be a list of integers")
        return cls(seqs, int(d["tree_size"]), _hashes(d["hashes"]), d["checkpoint"])


def build_multi_proof(leaf_hashes: Sequence[bytes], seqs: Sequence[int], checkpoint: str) -> MultiProof:
    """Multi-leaf proof for ``seqs`` from every leaf hash of the checkpoint's tree (``leaf_hashes[i]``
    is leaf ``i``); refuses to hand out a proof that does not reach the signed root."""
    cp = parse_checkpoint(checkpoint)
    if len(leaf_hashes) != cp.tree_size:
        raise ValueError(f"{len(leaf_hashes)} leaf hashes given for a checkpoint of tree size {cp.tree_size}")
    hashes, root = multiproof.multi_proof_and_root(leaf_hashes, seqs, cp.tree_size)
    if root != cp.root_hash:
        raise LedgerStateError("stored rows no longer match the signed checkpoint (the leaves do not rebuild its "
                               "root); run verify_store")
    return MultiProof(list(seqs), cp.tree_size, hashes, checkpoint)


# --- building from the store ---------------------------------------------------------------------


def inclusion_proof(
    con, seq: int, checkpoint_seq_no: int | None = None, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> InclusionProof:
    """Inclusion proof of row ``seq`` against a checkpoint (default: the latest one)."""
    signed, cp, _ = _checkpoint(con, checkpoint_seq_no)
    if not 0 <= seq < cp.tree_size:
        raise LookupError(f"seq {seq} is not covered by the checkpoint (tree size {cp.tree_size})")
    ranges = merkle.inclusion_proof_ranges(seq, cp.tree_size)
    hashes = [_subtree_root(con, a, b, chunk_rows) for a, b in ranges]
    leaf = _subtree_root(con, seq, seq + 1, chunk_rows)
    proof = InclusionProof(seq, cp.tree_size, hashes, signed)
    _self_check(lambda: merkle.verify_inclusion(leaf, seq, cp.tree_size, hashes, cp.root_hash))
    return proof


def range_proof(
    con, first: int, last: int, checkpoint_seq_no: int | None = None, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> RangeProof:
    """Range proof for rows ``first..last`` (inclusive) against a checkpoint (default: the latest)."""
    signed, cp, _ = _checkpoint(con, checkpoint_seq_no)
    if not 0 <= first <= last < cp.tree_size:
        raise LookupError(f"range {first}..{last} is not covered by the checkpoint (tree size {cp.tree_size})")
    ranges = merkle.range_proof_ranges(first, last, cp.tree_size)
    hashes = [_subtree_root(con, a, b, chunk_rows) for a, b in ranges]
    proof = RangeProof(first, last, cp.tree_size, hashes, signed)
    inside = _leaf_hashes(con, first, last + 1, chunk_rows)
    _self_check(lambda: merkle.verify_range(inside, first, cp.tree_size, hashes, cp.root_hash))
    return proof


def consistency_proof(
    con, old_seq_no: int, new_seq_no: int | None = None, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> ConsistencyProof:
    """Consistency proof between two stored checkpoints (default new: the latest)."""
    old_note, old_cp, old_frontier = _checkpoint(con, old_seq_no)
    new_note, new_cp, _ = _checkpoint(con, new_seq_no)
    if new_cp.tree_size < old_cp.tree_size:
        raise LookupError("the new checkpoint is smaller than the old one")
    old_nodes = dict(zip(old_frontier.ranges(), old_frontier.hashes, strict=True))
    hashes = [
        old_nodes[(a, b)] if b <= old_cp.tree_size else _subtree_root(con, a, b, chunk_rows)
        for a, b in merkle.consistency_proof_ranges(old_cp.tree_size, new_cp.tree_size)
    ]
    _self_check(lambda: merkle.verify_consistency(
        old_cp.tree_size, new_cp.tree_size, old_cp.root_hash, new_cp.root_hash, hashes))
    return ConsistencyProof(old_cp.tree_size, new_cp.tree_size, hashes, old_note, new_note)


# --- offline verification ------------------------------------------------------------------------


def verify_inclusion_proof(record: bytes, proof: InclusionProof, keys: Iterable[PublicKey]) -> Checkpoint:
    """Check that ``record`` is entry ``proof.seq`` of a log whose checkpoint a trusted key signed."""
    cp = _open(proof.checkpoint, keys, proof.tree_size)
    merkle.verify_inclusion(merkle.leaf_hash(record), proof.seq, proof.tree_size, proof.hashes, cp.root_hash)
    return cp


def verify_range_proof(records: Sequence[bytes], proof: RangeProof, keys: Iterable[PublicKey]) -> Checkpoint:
    """Check that ``records`` are exactly entries ``first..last`` of a trusted checkpoint's log."""
    if len(records) != proof.last - proof.first + 1:
        raise ProofError(f"{len(records)} records given for the range {proof.first}..{proof.last}")
    cp = _open(proof.checkpoint, keys, proof.tree_size)
    merkle.verify_range(merkle.leaf_hashes(records), proof.first, proof.tree_size, proof.hashes, cp.root_hash)
    return cp


def verify_multi_proof(leaf_hashes: Sequence[bytes], proof: MultiProof, keys: Iterable[PublicKey]) -> Checkpoint:
    """Check that the leaf hashes (one per ``proof.seqs``, same order) are in a trusted checkpoint's log.

    Leaf hashes rather than records, so that a bundle can prove an event is present while withholding
    its bytes; callers hash the records they do hold with ``merkle.leaf_hash``.
    """
    cp = _open(proof.checkpoint, keys, proof.tree_size)
    multiproof.verify_multi(leaf_hashes, proof.seqs, proof.tree_size, proof.hashes, cp.root_hash)
    return cp


def verify_consistency_proof(proof: ConsistencyProof, keys: Iterable[PublicKey]) -> tuple[Checkpoint, Checkpoint]:
    """Check that the old trusted checkpoint's log is a prefix of the new one's."""
    keys = list(keys)
    old = _open(proof.old_checkpoint, keys, proof.old_size)
    new = _open(proof.new_checkpoint, keys, proof.new_size)
    if old.origin != new.origin:
        raise ProofError(f"checkpoints of different logs: {old.origin!r} and {new.origin!r}")
    merkle.verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof.hashes)
    return old, new


# --- helpers -------------------------------------------------------------------------------------


def _checkpoint(con, seq_no: int | None) -> tuple[str, Checkpoint, CompactRange]:
    if seq_no is None:
        row = query_one(con, f"SELECT note, frontier FROM {CHECKPOINTS_TABLE} ORDER BY seq_no DESC LIMIT 1")
    else:
        row = query_one(con, f"SELECT note, frontier FROM {CHECKPOINTS_TABLE} WHERE seq_no = ?", [seq_no])
    if row is None:
        raise LookupError("no such checkpoint" if seq_no is not None else "the ledger has no checkpoint yet")
    return row[0], parse_checkpoint(row[0]), CompactRange.from_bytes(row[1])


def _subtree_root(con, start: int, end: int, chunk_rows: int) -> bytes:
    """Root over rows ``start..end-1`` streamed in batches; the rows must be exactly those seqs."""
    frontier = CompactRange()
    expected = start
    for batch in iter_leaf_batches(con, start, end, chunk_rows=chunk_rows):
        _check_seqs(batch.seqs, expected, batch.null_seqs)
        expected += len(batch.seqs)
        frontier.extend(batch.hashes)
    if expected != end:
        raise LedgerStateError(f"rows seq {expected}..{end - 1} are missing from the store")
    return frontier.root()


def _leaf_hashes(con, start: int, end: int, chunk_rows: int) -> list[bytes]:
    out: list[bytes] = []
    for batch in iter_leaf_batches(con, start, end, chunk_rows=chunk_rows):
        _check_seqs(batch.seqs, start + len(out), batch.null_seqs)
        out += batch.hashes
    if len(out) != end - start:
        raise LedgerStateError(f"rows seq {start + len(out)}..{end - 1} are missing from the store")
    return out


def _check_seqs(seqs: list[int], expected: int, null_seqs: list[int]) -> None:
    if seqs != list(range(expected, expected + len(seqs))):
        raise LedgerStateError(f"seqs from {expected} are not contiguous in the store; run verify_store")
    if null_seqs:
        raise LedgerStateError(f"seq {null_seqs[0]} has a NULL record")


def _self_check(check) -> None:
    """Never hand out a proof that does not verify: that means the stored rows were altered."""
    try:
        check()
    except ProofError as exc:
        raise LedgerStateError(f"stored rows no longer match the signed checkpoint ({exc}); run verify_store") from exc


def _open(signed: str, keys: Iterable[PublicKey], tree_size: int) -> Checkpoint:
    try:
        cp, _ = open_checkpoint(signed, keys)
    except CheckpointError as exc:
        raise ProofError(f"checkpoint does not verify: {exc}") from exc
    if cp.tree_size != tree_size:
        raise ProofError(f"proof is for tree size {tree_size} but the checkpoint is for {cp.tree_size}")
    return cp


def _hashes(items: Sequence[str]) -> list[bytes]:
    out = [bytes.fromhex(h) for h in items]
    if any(len(h) != merkle.HASH_SIZE for h in out):
        raise ProofError("proof hashes must be 32 bytes")
    return out


def _expect_type(d: dict, kind: str) -> None:
    if d.get("type") != kind:
        raise ProofError(f"expected a {kind} object, got {d.get('type')!r}")
