"""The ledger's own DuckDB tables. The ``spans`` table belongs to the store; we only read it.

Every statement is idempotent (``IF NOT EXISTS``) so the store's migration runner can apply
``LEDGER_MIGRATIONS`` in order and ``ensure_schema`` can be called again safely.

- ``ledger_checkpoints``: one row per signed checkpoint. ``note`` is the only authoritative column;
  the others are copies for querying and are checked against it on verification. ``frontier`` (the
  compact range at ``tree_size``) and ``consistency_proof`` (from the previous checkpoint) let
  exports and the next seal build proofs without rereading the log.
- ``ledger_state``: a single row, the compact range over every appended record, updated in the
  writer's insert transaction so it can never disagree with the rows after a crash.
- ``ledger_keys``: public keys and the rotation statements that introduced them, so verifying a
  store needs no private key (trust still comes from a fingerprint pinned out of band).
- ``ledger_retention_log``: the hash-chained log of retention deletions and legal holds; every
  checkpoint signs its head (``retention`` extension line), see ``retention_log``.
- ``ledger_tombstones``: for each row whose payload retention deleted, the leaf hash that stays in
  the tree, so proofs and verification keep working without the bytes.
"""

from __future__ import annotations

CHECKPOINTS_TABLE = "ledger_checkpoints"
STATE_TABLE = "ledger_state"
KEYS_TABLE = "ledger_keys"
RETENTION_LOG_TABLE = "ledger_retention_log"
TOMBSTONES_TABLE = "ledger_tombstones"

LEDGER_MIGRATIONS: list[tuple[str, str]] = [
    (
        "ledger_0001_checkpoints",
        f"""
        CREATE TABLE IF NOT EXISTS {CHECKPOINTS_TABLE} (
            seq_no BIGINT PRIMARY KEY,
            tree_size BIGINT NOT NULL,
            root_hash BLOB NOT NULL,
            note VARCHAR NOT NULL,
            note_hash BLOB NOT NULL,
            created_at TIMESTAMP NOT NULL,
            key_id VARCHAR NOT NULL,
            key_fingerprint VARCHAR NOT NULL,
            dropped BIGINT NOT NULL,
            frontier BLOB NOT NULL,
            consistency_proof BLOB
        )
        """,
    ),
    (
        "ledger_0002_state",
        f"""
        CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            tree_size BIGINT NOT NULL,
            frontier BLOB NOT NULL,
            dropped BIGINT NOT NULL,
            updated_at TIMESTAMP NOT NULL
        )
        """,
    ),
    (
        "ledger_0003_keys",
        f"""
        CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (
            fingerprint VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            key_id VARCHAR NOT NULL,
            public_key BLOB NOT NULL,
            verifier_key VARCHAR NOT NULL,
            added_at TIMESTAMP NOT NULL,
            rotation VARCHAR
        )
        """,
    ),
    (
        "ledger_0004_retention_log",
        f"""
        CREATE TABLE IF NOT EXISTS {RETENTION_LOG_TABLE} (
            event_no BIGINT PRIMARY KEY,
            occurred_at TIMESTAMP NOT NULL,
            action VARCHAR NOT NULL,
            entry VARCHAR NOT NULL,
            entry_hash BLOB NOT NULL
        )
        """,
    ),
    (
        "ledger_0005_tombstones",
        f"""
        CREATE TABLE IF NOT EXISTS {TOMBSTONES_TABLE} (
            seq BIGINT PRIMARY KEY,
            leaf_hash BLOB NOT NULL,
            event_no BIGINT NOT NULL,
            data_class VARCHAR NOT NULL,
            agent_id VARCHAR,
            start_time TIMESTAMP_NS
        )
        """,
    ),
]


def ensure_schema(con) -> None:
    """Apply every ledger migration (idempotent); for stores without their own migration runner."""
    for _, sql in LEDGER_MIGRATIONS:
        con.execute(sql)


def split_hashes(blob: bytes | None) -> list[bytes]:
    """A BLOB of concatenated 32-byte hashes (how proofs are stored) back into a list."""
    if not blob:
        return []
    if len(blob) % 32:
        raise ValueError(f"{len(blob)}-byte blob is not a list of 32-byte hashes")
    return [bytes(blob[i : i + 32]) for i in range(0, len(blob), 32)]
