"""Tamper-evident ledger: RFC 6962 Merkle log over stored records, sealed by signed checkpoints.

Modules, one job each:
- ``merkle``: RFC 6962/9162 hashing, inclusion/consistency/range proofs, ``CompactRange``;
- ``signing``: Ed25519 keys, C2SP key ids, fingerprints, key directory and rotation;
- ``note``: the C2SP signed-note envelope;
- ``checkpoint``: C2SP tlog-checkpoint text with our ``prev``/``time``/``dropped`` lines, chains;
- ``schema`` / ``records``: the ledger's DuckDB tables and streaming leaf hashes from ``spans``;
- ``sealer``: ``Ledger``, used by the store's single writer;
- ``verify``: ``verify_store``; ``proofs``: proofs for evidence bundles and their offline checks;
- ``multiproof``: one inclusion proof for many scattered leaves (an agent's events in a bundle);
- ``retention_log``: the hash-chained log of payload deletions and legal holds, and the tombstones
  that keep deleted payloads' leaves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from govtrace.instrumentation.lazy import lazy_exports

if TYPE_CHECKING:
    from .checkpoint import (
        Checkpoint,
        CheckpointError,
        open_checkpoint,
        parse_checkpoint,
        sign_checkpoint,
        verify_chain,
    )
    from .errors import LedgerStateError
    from .merkle import CompactRange, ProofError
    from .note import NoteError
    from .proofs import (
        ConsistencyProof,
        InclusionProof,
        MultiProof,
        RangeProof,
        build_multi_proof,
        consistency_proof,
        inclusion_proof,
        range_proof,
        verify_consistency_proof,
        verify_inclusion_proof,
        verify_multi_proof,
        verify_range_proof,
    )
    from .report import Finding, VerificationReport
    from .schema import LEDGER_MIGRATIONS, ensure_schema
    from .sealer import Ledger
    from .signing import KeyFileError, KeyStore, PublicKey, Rotation, Signer, trusted_keys
    from .verify import trusted_keys_from_store, verify_store

# Loaded on first use: the decode workers import ``leaves`` and must not pay for DuckDB and signing.
_EXPORTS = {
    "Checkpoint": ".checkpoint",
    "CheckpointError": ".checkpoint",
    "open_checkpoint": ".checkpoint",
    "parse_checkpoint": ".checkpoint",
    "sign_checkpoint": ".checkpoint",
    "verify_chain": ".checkpoint",
    "LedgerStateError": ".errors",
    "CompactRange": ".merkle",
    "ProofError": ".merkle",
    "NoteError": ".note",
    "ConsistencyProof": ".proofs",
    "InclusionProof": ".proofs",
    "MultiProof": ".proofs",
    "RangeProof": ".proofs",
    "build_multi_proof": ".proofs",
    "consistency_proof": ".proofs",
    "inclusion_proof": ".proofs",
    "range_proof": ".proofs",
    "verify_consistency_proof": ".proofs",
    "verify_inclusion_proof": ".proofs",
    "verify_multi_proof": ".proofs",
    "verify_range_proof": ".proofs",
    "Finding": ".report",
    "VerificationReport": ".report",
    "LEDGER_MIGRATIONS": ".schema",
    "ensure_schema": ".schema",
    "Ledger": ".sealer",
    "KeyFileError": ".signing",
    "KeyStore": ".signing",
    "PublicKey": ".signing",
    "Rotation": ".signing",
    "Signer": ".signing",
    "trusted_keys": ".signing",
    "trusted_keys_from_store": ".verify",
    "verify_store": ".verify",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "LEDGER_MIGRATIONS",
    "Checkpoint",
    "CheckpointError",
    "CompactRange",
    "ConsistencyProof",
    "Finding",
    "InclusionProof",
    "KeyFileError",
    "KeyStore",
    "Ledger",
    "LedgerStateError",
    "MultiProof",
    "NoteError",
    "ProofError",
    "PublicKey",
    "RangeProof",
    "Rotation",
    "Signer",
    "VerificationReport",
    "build_multi_proof",
    "consistency_proof",
    "ensure_schema",
    "inclusion_proof",
    "open_checkpoint",
    "parse_checkpoint",
    "range_proof",
    "sign_checkpoint",
    "trusted_keys",
    "trusted_keys_from_store",
    "verify_chain",
    "verify_consistency_proof",
    "verify_inclusion_proof",
    "verify_multi_proof",
    "verify_range_proof",
    "verify_store",
]
