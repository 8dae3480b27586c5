"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and a compact range.

We implement the ~200 lines ourselves instead of depending on a Merkle package: the published
Python ones are either non-RFC (no leaf/node domain separation) or self-described as needing a
security review, and the algorithms are short enough to check line by line against RFC 9162 §2.1.

Conventions used throughout:
- a *leaf hash* is ``SHA-256(0x00 || data)`` and a *node hash* ``SHA-256(0x01 || left || right)``,
  the domain separation that stops a leaf from being passed off as an interior node;
- a tree of ``n`` leaves splits at the largest power of two strictly smaller than ``n``;
- a *range* ``(start, end)`` names the subtree over leaves ``start .. end-1`` (half-open);
- every proof is a list of 32-byte hashes.

Proof generation works in two steps: the ``*_ranges`` functions compute *which* subtrees a proof
needs from the sizes alone, and the callers resolve each range to a hash. That lets the store build
a proof by streaming leaves from disk (see ``proofs.py``) with the same code the in-memory helpers
use, so the two cannot disagree.

Verification functions raise ``ProofError`` with a reason instead of returning a bool, so a
forgotten check cannot pass silently.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
# RFC 9162 §2.1.1: the hash of an empty list is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]


class ProofError(ValueError):
    """A proof or a tree state does not verify; the message says why."""


def leaf_hash(data: bytes) -> bytes:
    """Hash of one log entry: SHA-256(0x00 || data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def leaf_hashes(records: Iterable[bytes]) -> list[bytes]:
    """Leaf hashes of many entries; a list comprehension keeps the per-leaf overhead minimal."""
    sha256 = hashlib.sha256
    return [sha256(LEAF_PREFIX + r).digest() for r in records]


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash (RFC 9162 §2.1.1) over already-hashed leaves.

    Pairing neighbours level by level, and carrying a lone last node up unchanged, yields exactly
    the RFC's "split at the largest power of two" tree; doing it with list comprehensions is much
    faster in Python than the recursive definition (checked against it in the tests).
    """
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [sha256(NODE_PREFIX + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def root(records: Iterable[bytes]) -> bytes:
    """Merkle Tree Hash over raw entries."""
    return root_from_leaf_hashes(leaf_hashes(records))


# --- inclusion (RFC 9162 §2.1.3) -----------------------------------------------------------------


def inclusion_proof_ranges(index: int, size: int) -> list[Range]:
    """Subtrees whose roots form the audit path of leaf ``index`` in a tree of ``size`` leaves.

    Ordered as the proof is: from the leaf's sibling up to the child of the root (RFC 9162
    §2.1.3.1, PATH).
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    out: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start = start + k
    out.reverse()  # collected top-down; the proof runs bottom-up
    return out


def inclusion_proof(hashes: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """Audit path for leaf ``index`` in the tree over the first ``size`` of ``hashes``."""
    size = len(hashes) if size is None else size
    _check_size(size, len(hashes))
    return [root_from_leaf_hashes(hashes[a:b]) for a, b in inclusion_proof_ranges(index, size)]


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Root implied by a leaf hash and its audit path (RFC 9162 §2.1.3.2); raises if malformed."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hashes(proof)
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> None:
    """Raise ``ProofError`` unless ``proof`` shows leaf hash ``leaf`` at ``index`` under ``root_hash``."""
    if root_from_inclusion_proof(leaf, index, size, proof) != root_hash:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the expected root")


# --- consistency (RFC 9162 §2.1.4) ---------------------------------------------------------------


def consistency_proof_ranges(old_size: int, new_size: int) -> list[Range]:
    """Subtrees whose roots prove that the tree of ``old_size`` is a prefix of ``new_size``.

    RFC 6962 §2.1.2 SUBPROOF, in proof order. Every returned range lies entirely inside
    ``[0, old_size)`` (and is then one of the old tree's compact-range nodes) or entirely inside
    ``[old_size, new_size)``; ``consistency_proof_from_parts`` relies on that.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    out: list[Range] = []
    start, end, m, whole = 0, new_size, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        out.append((start, end))
    out.reverse()
    return out


def consistency_proof(hashes: Sequence[bytes], old_size: int, new_size: int | None = None) -> list[bytes]:
    """Consistency proof between the trees over the first ``old_size`` and ``new_size`` hashes."""
    new_size = len(hashes) if new_size is None else new_size
    _check_size(new_size, len(hashes))
    return [root_from_leaf_hashes(hashes[a:b]) for a, b in consistency_proof_ranges(old_size, new_size)]


def consistency_proof_from_parts(old: CompactRange, appended: Sequence[bytes]) -> list[bytes]:
    """Consistency proof from ``old``'s tree to that tree plus the leaf hashes in ``appended``.

    Needs only the old compact range and the leaves added since, so a sealer can produce the proof
    between two checkpoints without reading the whole log.
    """
    old_nodes = dict(zip(old.ranges(), old.hashes, strict=True))
    out = []
    for a, b in consistency_proof_ranges(old.size, old.size + len(appended)):
        if b <= old.size:
            out.append(old_nodes[(a, b)])
        else:
            out.append(root_from_leaf_hashes(appended[a - old.size : b - old.size]))
    return out


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ``ProofError`` unless ``proof`` shows ``old_root`` is a prefix of ``new_root``.

    RFC 9162 §2.1.4.2, with the two edge cases spelled out the way transparency-dev handles them:
    equal sizes need an empty proof and equal roots; an empty old tree is consistent with anything.
    """
    _check_hashes(proof)
    if not 0 <= old_size <= new_size:
        raise ProofError(f"tree shrank from size {old_size} to {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same tree size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # the old tree is a complete subtree: its root is implied
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than needed")
    if fr != old_root:
        raise ProofError(f"consistency proof does not reproduce the old root at size {old_size}")
    if sr != new_root:
        raise ProofError(f"consistency proof does not reproduce the new root at size {new_size}")


# --- range proofs (ours; needed for evidence bundles) --------------------------------------------


def range_proof_ranges(first: int, last: int, size: int) -> list[Range]:
    """Subtrees needed, beside leaves ``first..last`` (inclusive), to rebuild the root of ``size``.

    Definition (this is the format an auditor implements): walk the RFC 6962 tree of ``size``
    leaves from the root, left child before right child. A subtree that lies entirely outside
    ``[first, last]`` is not entered: its root is the next proof hash. A subtree entirely inside is
    rebuilt from the given leaves. Any other subtree is split. The proof therefore lists, left to
    right, the maximal subtrees outside the range: at most two per tree level.
    """
    if not 0 <= first <= last < size:
        raise ValueError(f"range [{first}, {last}] is not inside a tree of size {size}")
    out: list[Range] = []
    _walk_outside(0, size, first, last + 1, out)
    return out


def range_proof(hashes: Sequence[bytes], first: int, last: int, size: int | None = None) -> list[bytes]:
    """Range proof for leaves ``first..last`` in the tree over the first ``size`` of ``hashes``."""
    size = len(hashes) if size is None else size
    _check_size(size, len(hashes))
    return [root_from_leaf_hashes(hashes[a:b]) for a, b in range_proof_ranges(first, last, size)]


def root_from_range_proof(range_hashes: Sequence[bytes], first: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Root implied by the contiguous leaf hashes starting at ``first`` and a range proof."""
    _check_hashes(proof)
    last = first + len(range_hashes) - 1
    if not range_hashes or not 0 <= first <= last < size:
        raise ProofError(f"{len(range_hashes)} leaves from index {first} do not fit a tree of size {size}")
    needed = range_proof_ranges(first, last, size)
    if len(proof) != len(needed):
        raise ProofError(f"range proof has {len(proof)} hashes, a tree of size {size} needs {len(needed)}")
    outside = dict(zip(needed, proof, strict=True))
    return _rebuild(0, size, first, range_hashes, outside)


def verify_range(
    range_hashes: Sequence[bytes], first: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Raise ``ProofError`` unless the leaves starting at ``first`` plus ``proof`` rebuild ``root_hash``."""
    if root_from_range_proof(range_hashes, first, size, proof) != root_hash:
        last = first + len(range_hashes) - 1
        raise ProofError(f"leaves {first}..{last} and the range proof do not lead to the expected root")


# --- compact range -------------------------------------------------------------------------------


class CompactRange:
    """The frontier of a tree: roots of its maximal complete subtrees, largest (leftmost) first.

    Holds at most one hash per bit of ``size`` (64 for any realistic log), so appending a leaf and
    computing the root are O(log n) and the log never needs to be held in memory. It always
    covers ``[0, size)``. ``to_bytes``/``to_json`` let the store persist it next to the rows.
    """

    __slots__ = ("size", "hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        hashes = list(hashes)
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a compact range of size {size} holds {size.bit_count()} hashes, got {len(hashes)}")
        _check_hashes(hashes)
        self.size = size
        self.hashes = hashes

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash: merge it with as many left neighbours as ``size`` has trailing ones."""
        size = self.size
        hashes = self.hashes
        while size & 1:
            leaf = node_hash(hashes.pop(), leaf)
            size >>= 1
        hashes.append(leaf)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add many leaf hashes in order (the inner loop is inlined: this is the ingest hot path)."""
        sha256 = hashlib.sha256
        hashes = self.hashes
        n = self.size
        for leaf in leaves:
            size = n
            while size & 1:
                leaf = sha256(NODE_PREFIX + hashes.pop() + leaf).digest()
                size >>= 1
            hashes.append(leaf)
            n += 1
        self.size = n

    def root(self) -> bytes:
        """Merkle Tree Hash of ``[0, size)``: fold the frontier from the right."""
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r

    def ranges(self) -> list[Range]:
        """The ``(start, end)`` of the subtree each hash in ``hashes`` stands for."""
        out, start = [], 0
        for bit in reversed(range(self.size.bit_length())):
            if self.size >> bit & 1:
                out.append((start, start + (1 << bit)))
                start += 1 << bit
        return out

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes)

    def to_bytes(self) -> bytes:
        """8-byte big-endian size followed by the hashes."""
        return self.size.to_bytes(8, "big") + b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        if len(data) < 8 or (len(data) - 8) % HASH_SIZE:
            raise ValueError(f"{len(data)} bytes is not a serialized compact range")
        size = int.from_bytes(data[:8], "big")
        body = data[8:]
        return cls(size, [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)])

    def to_json(self) -> str:
        return json.dumps({"size": self.size, "hashes": [h.hex() for h in self.hashes]})

    @classmethod
    def from_json(cls, text: str) -> CompactRange:
        obj = json.loads(text)
        return cls(int(obj["size"]), [bytes.fromhex(h) for h in obj["hashes"]])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompactRange) and (self.size, self.hashes) == (other.size, other.hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self.size}, root={self.root().hex()[:16]}…)"


# --- helpers -------------------------------------------------------------------------------------


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(size: int, available: int) -> None:
    if not 0 <= size <= available:
        raise ValueError(f"tree size {size} but only {available} leaf hashes given")


def _check_hashes(hashes: Iterable[bytes]) -> None:
    for h in hashes:
        if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
            raise ProofError(f"proof element is not a {HASH_SIZE}-byte hash")


def _walk_outside(start: int, end: int, lo: int, hi: int, out: list[Range]) -> None:
    """Collect, left to right, maximal subtrees of ``[start, end)`` disjoint from ``[lo, hi)``."""
    if end <= lo or start >= hi:
        out.append((start, end))
    elif lo <= start and end <= hi:
        return
    else:
        k = _split(end - start)
        _walk_outside(start, start + k, lo, hi, out)
        _walk_outside(start + k, end, lo, hi, out)


def _rebuild(start: int, end: int, first: int, inside: Sequence[bytes], outside: dict[Range, bytes]) -> bytes:
    """Root of ``[start, end)`` from the proof's outside subtrees and the given inside leaves."""
    if (start, end) in outside:
        return outside[(start, end)]
    if first <= start and end <= first + len(inside):
        return root_from_leaf_hashes(inside[start - first : end - first])
    k = _split(end - start)
    return node_hash(
        _rebuild(start, start + k, first, inside, outside), _rebuild(start + k, end, first, inside, outside)
    )
