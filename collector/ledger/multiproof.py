"""Multi-leaf inclusion proofs: many leaves, anywhere in the tree, against one signed root.

An evidence bundle holds one agent's events, which sit among other agents' events in the log, so
their seqs are not contiguous. One RFC 9162 audit path per event would repeat the shared upper
levels a million times; this proof lists each needed subtree root once.

Definition (the format an auditor implements; it generalizes ``merkle.range_proof_ranges``): walk
the RFC 6962 tree of ``size`` leaves from the root, left child before right child. A subtree that
holds none of the proven leaf indices is not entered: its root is the next proof hash. A subtree of
one leaf that is proven is that leaf's hash. Any other subtree is split. The proof is therefore
the roots of the maximal subtrees holding no proven leaf, left to right.

Size: about ``k * log2(n / k)`` hashes for ``k`` spread-out leaves of ``n``, and a handful when the
leaves are dense. Building it needs every leaf hash (the proven ones are simply not used);
verifying needs only the proven leaves and the proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .merkle import (
    EMPTY_ROOT,
    NODE_PREFIX,
    ProofError,
    Range,
    _check_hashes,
    node_hash,
    root_from_leaf_hashes,
)


def multi_proof_ranges(indices: Sequence[int], size: int) -> list[Range]:
    """Subtrees whose roots, beside the leaves at ``indices``, rebuild the root of ``size`` leaves.

    ``indices`` must be strictly increasing and inside ``[0, size)``. Returned left to right.
    """
    _check_indices(indices, size, ValueError)
    return [_range(h, p, size) for h, p in _ordered(_missing(indices, size), size)]


def multi_proof(leaf_hashes: Sequence[bytes], indices: Sequence[int], size: int | None = None) -> list[bytes]:
    """The proof hashes for ``indices`` in the tree over the first ``size`` of ``leaf_hashes``."""
    return multi_proof_and_root(leaf_hashes, indices, size)[0]


def multi_proof_and_root(leaf_hashes: Sequence[bytes], indices: Sequence[int],
                         size: int | None = None) -> tuple[list[bytes], bytes]:
    """The proof hashes and the tree's root, from one pass.

    Hashes the whole tree once, level by level, keeping only the nodes the proof needs: O(n) hashes
    and one level of memory, whatever the number or spread of proven leaves. The root comes out of
    the same pass, so a caller can check the leaves against a signed root without a second one.
    """
    size = len(leaf_hashes) if size is None else size
    if not 0 <= size <= len(leaf_hashes):
        raise ValueError(f"tree size {size} but only {len(leaf_hashes)} leaf hashes given")
    _check_indices(indices, size, ValueError)
    needed = _ordered(_missing(indices, size), size)
    wanted: dict[int, list[int]] = {}
    for h, p in needed:
        wanted.setdefault(h, []).append(p)
    found: dict[tuple[int, int], bytes] = {}
    level = list(leaf_hashes[:size])
    h = 0
    sha256 = hashlib.sha256
    while True:
        for p in wanted.get(h, ()):
            found[(h, p)] = level[p]
        if len(level) <= 1:
            break
        paired = [sha256(NODE_PREFIX + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)]
        if len(level) % 2:
            paired.append(level[-1])  # the lone last node is carried up unchanged (RFC 6962 split)
        level = paired
        h += 1
    root = level[0] if level else EMPTY_ROOT
    return [found[node] for node in needed], root


def root_from_multi_proof(
    leaves: Sequence[bytes], indices: Sequence[int], size: int, proof: Sequence[bytes]
) -> bytes:
    """Root implied by the leaf hashes at ``indices`` (same order) and a multi-leaf proof."""
    _check_indices(indices, size, ProofError)
    if len(leaves) != len(indices):
        raise ProofError(f"{len(leaves)} leaf hashes given for {len(indices)} proven positions")
    if not indices:
        raise ProofError("a multi-leaf proof must prove at least one leaf")
    _check_hashes(leaves)
    _check_hashes(proof)
    needed = _ordered(_missing(indices, size), size)
    if len(proof) != len(needed):
        raise ProofError(f"multi-leaf proof has {len(proof)} hashes, these {len(indices)} leaves in a tree "
                         f"of size {size} need {len(needed)}")
    sibling = dict(zip(needed, proof, strict=True))
    positions, hashes, length, h = list(indices), list(leaves), size, 0
    while length > 1:
        if len(positions) == length:  # every node of this level is known: hash the rest in one go
            return root_from_leaf_hashes(hashes)
        next_positions: list[int] = []
        next_hashes: list[bytes] = []
        i, m = 0, len(positions)
        while i < m:
            p = positions[i]
            if p & 1:
                parent = node_hash(sibling[(h, p - 1)], hashes[i])
                i += 1
            elif i + 1 < m and positions[i + 1] == p + 1:
                parent = node_hash(hashes[i], hashes[i + 1])
                i += 2
            elif p + 1 < length:
                parent = node_hash(hashes[i], sibling[(h, p + 1)])
                i += 1
            else:
                parent = hashes[i]  # lone last node, carried up
                i += 1
            next_positions.append(p >> 1)
            next_hashes.append(parent)
        positions, hashes, length, h = next_positions, next_hashes, (length + 1) // 2, h + 1
    return hashes[0]


def verify_multi(
    leaves: Sequence[bytes], indices: Sequence[int], size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Raise ``ProofError`` unless the leaves at ``indices`` plus ``proof`` rebuild ``root_hash``."""
    if root_from_multi_proof(leaves, indices, size, proof) != root_hash:
        raise ProofError(f"the {len(indices)} proven leaves and the multi-leaf proof do not lead to the expected root")


# --- helpers -------------------------------------------------------------------------------------
#
# The tree is walked bottom-up: level 0 holds the leaves, level h+1 pairs the nodes of level h and
# carries a lone last node up unchanged, which builds exactly the RFC 6962 tree. Node (h, p) covers
# leaves [p * 2**h, min((p + 1) * 2**h, size)). A proof hash is a node whose parent holds a proven
# leaf but which holds none itself: a maximal subtree outside the proven set. Sorting those nodes
# by their first leaf gives the left-to-right order of the definition above.


def _missing(indices: Sequence[int], size: int) -> list[tuple[int, int]]:
    """The (level, position) of every sibling a proof must supply, bottom-up."""
    out: list[tuple[int, int]] = []
    positions, length, h = list(indices), size, 0
    while length > 1 and len(positions) < length:
        next_positions: list[int] = []
        i, m = 0, len(positions)
        while i < m:
            p = positions[i]
            if p & 1:
                out.append((h, p - 1))
                i += 1
            elif i + 1 < m and positions[i + 1] == p + 1:
                i += 2
            else:
                if p + 1 < length:
                    out.append((h, p + 1))
                i += 1
            next_positions.append(p >> 1)
        positions, length, h = next_positions, (length + 1) // 2, h + 1
    return out


def _ordered(nodes: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    return sorted(nodes, key=lambda node: node[1] << node[0])


def _range(h: int, p: int, size: int) -> Range:
    return (p << h, min((p + 1) << h, size))


def _check_indices(indices: Sequence[int], size: int, error: type[Exception]) -> None:
    previous = -1
    for i in indices:
        if not isinstance(i, int) or isinstance(i, bool):
            raise error(f"leaf index {i!r} is not an integer")
        if i <= previous:
            raise error(f"leaf indices must be strictly increasing: {i} follows {previous}")
        previous = i
    if indices and not (0 <= indices[0] and indices[-1] < size):
        raise error(f"leaf indices {indices[0]}..{indices[-1]} are not all inside a tree of size {size}")
