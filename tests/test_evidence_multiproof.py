"""Multi-leaf inclusion proofs: one proof for all of an agent's events, scattered in the log."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govtrace.collector.ledger import merkle
from govtrace.collector.ledger.checkpoint import Checkpoint, sign_checkpoint
from govtrace.collector.ledger.multiproof import (
    multi_proof,
    multi_proof_ranges,
    root_from_multi_proof,
    verify_multi,
)
from govtrace.collector.ledger.proofs import MultiProof, build_multi_proof, verify_multi_proof
from govtrace.collector.ledger.signing import Signer


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"event {i}".encode()) for i in range(n)]


def outside_subtrees(indices: list[int], size: int) -> list[tuple[int, int]]:
    """The definition, written independently: maximal subtrees holding no proven leaf, left to right."""
    found = []

    def walk(start: int, end: int) -> None:
        inside = [i for i in indices if start <= i < end]
        if not inside:
            found.append((start, end))
        elif len(inside) < end - start:
            k = 1 << ((end - start - 1).bit_length() - 1)
            walk(start, start + k)
            walk(start + k, end)

    walk(0, size)
    return found


def test_every_subset_of_every_small_tree_rebuilds_the_root_with_exactly_the_defined_subtrees():
    for size in range(1, 11):
        hashes = leaves(size)
        root = merkle.root_from_leaf_hashes(hashes)
        for k in range(1, size + 1):
            for subset in itertools.combinations(range(size), k):
                indices = list(subset)
                assert multi_proof_ranges(indices, size) == outside_subtrees(indices, size)
                proof = multi_proof(hashes, indices)
                assert proof == [merkle.root_from_leaf_hashes(hashes[a:b]) for a, b in outside_subtrees(indices, size)]
                assert root_from_multi_proof([hashes[i] for i in indices], indices, size, proof) == root


def test_for_one_leaf_the_proof_holds_the_same_hashes_as_its_rfc_9162_audit_path():
    hashes = leaves(37)
    for index in (0, 17, 31, 32, 36):
        assert sorted(multi_proof(hashes, [index])) == sorted(merkle.inclusion_proof(hashes, index))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=2, max_value=300).flatmap(
    lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1), min_size=1, max_size=n))))
def test_an_edited_dropped_or_swapped_leaf_never_rebuilds_the_root(case):
    size, chosen = case
    indices = sorted(chosen)
    hashes = leaves(size)
    root = merkle.root_from_leaf_hashes(hashes)
    proof = multi_proof(hashes, indices)
    proven = [hashes[i] for i in indices]
    verify_multi(proven, indices, size, proof, root)

    edited = proven[:]
    edited[len(edited) // 2] = merkle.leaf_hash(b"edited")
    with pytest.raises(merkle.ProofError):
        verify_multi(edited, indices, size, proof, root)
    if len(indices) > 1:
        with pytest.raises(merkle.ProofError):
            verify_multi(proven[1:], indices[1:], size, proof, root)
        swapped = proven[:]
        swapped[0], swapped[-1] = swapped[-1], swapped[0]
        with pytest.raises(merkle.ProofError):
            verify_multi(swapped, indices, size, proof, root)


def test_indices_out_of_order_or_outside_the_tree_are_refused():
    hashes = leaves(8)
    proof = multi_proof(hashes, [1, 5])
    for bad in ([5, 1], [1, 1], [1, 8]):
        with pytest.raises(merkle.ProofError):
            root_from_multi_proof([hashes[0], hashes[1]], bad, 8, proof)


def test_a_multi_proof_carries_its_signed_checkpoint_and_verifies_offline_only_with_the_trusted_key():
    signer = Signer.generate("govtrace.test/log")
    hashes = leaves(100)
    note = sign_checkpoint(Checkpoint("govtrace.test/log", 100, merkle.root_from_leaf_hashes(hashes)), signer)
    seqs = [3, 4, 5, 40, 41, 99]
    proof = MultiProof.from_dict(json.loads(json.dumps(build_multi_proof(hashes, seqs, note).to_dict())))
    assert verify_multi_proof([hashes[s] for s in seqs], proof, [signer.public_key]).tree_size == 100
    with pytest.raises(merkle.ProofError, match="checkpoint does not verify"):
        verify_multi_proof([hashes[s] for s in seqs], proof, [Signer.generate("govtrace.test/log").public_key])


def test_no_proof_is_built_from_leaves_that_do_not_match_the_signed_root():
    from govtrace.collector.ledger.errors import LedgerStateError

    signer = Signer.generate("govtrace.test/log")
    hashes = leaves(20)
    note = sign_checkpoint(Checkpoint("govtrace.test/log", 20, merkle.root_from_leaf_hashes(hashes)), signer)
    hashes[7] = merkle.leaf_hash(b"changed afterwards")
    with pytest.raises(LedgerStateError, match="no longer match"):
        build_multi_proof(hashes, [2, 9], note)
