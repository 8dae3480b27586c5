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
