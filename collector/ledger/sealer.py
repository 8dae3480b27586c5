"""The ledger inside the store's single writer: append leaves, persist state, seal checkpoints.

Contract with the writer (the only process that writes the DuckDB file):

1. Inside its insert transaction, after assigning gap-free ``seq`` values, the writer calls
   ``ledger.append(records, first_seq=...)`` with the stored ``record`` bytes in seq order. The
   ledger updates its compact range and writes it to ``ledger_state`` *in that same transaction*,
   so after a crash rows and ledger state are either both there or both absent.
2. If that transaction rolls back, the writer calls ``ledger.reload()``: the in-memory state had
   already advanced and must be reread from the database.
3. After committing (or on a timer) the writer calls ``ledger.maybe_seal()``, which signs a
   checkpoint when ``seal_every_events`` records or ``seal_every_seconds`` have passed since the
   last one and something is new (events, or upstream drops).

``note_dropped`` is the only method safe to call from other threads (receivers count drops there).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from . import merkle, retention_log
from .checkpoint import Checkpoint, note_hash, parse_checkpoint, sign_checkpoint
from .errors import LedgerStateError
from .merkle import CompactRange
from .note import NoteError
from .proofs import InclusionProof, RangeProof, consistency_proof, inclusion_proof, range_proof
from .records import DEFAULT_CHUNK_ROWS, count_rows, leaf_hashes_of_range, own_transaction, query_one
from .schema import CHECKPOINTS_TABLE, KEYS_TABLE, LEDGER_MIGRATIONS, STATE_TABLE, ensure_schema
from .signing import PublicKey, Signer, open_rotation_statement
from .verify import VerificationReport, trusted_keys_from_store, verify_store

# verify_store and the proof builders live in their own modules; they are re-exported here because
# this module is the store's single entry point to the ledger.
__all__ = [
    "LEDGER_MIGRATIONS",
    "InclusionProof",
    "Ledger",
    "LedgerStateError",
    "RangeProof",
    "VerificationReport",
    "consistency_proof",
    "inclusion_proof",
    "range_proof",
    "trusted_keys_from_store",
    "verify_store",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Sealed:
    """The last checkpoint, as the sealer needs it for the next one."""

    seq_no: int
    tree_size: int
    root_hash: bytes
    note: str
    note_hash: bytes
    frontier: CompactRange
    dropped: int
    time: int
    retention_entries: int = 0  # retention log entries this checkpoint seals


class Ledger:
    """The tamper-evident log over the ``spans`` rows, driven by the store's single writer.

    ``con`` is the writer's connection. ``signer``'s key name should equal ``origin`` (the C2SP
    recommendation); ``origin`` must stay the same for the life of the store. Construction applies
    the ledger migrations, records the public key(s) and reloads the persisted state (see
    ``reload``). ``clock`` is injectable so tests control sealing time.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        signer: Signer,
        origin: str,
        *,
        seal_every_events: int = 1000,
        seal_every_seconds: float = 60.0,
        rotation_statements: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        if seal_every_events < 1 or seal_every_seconds <= 0:
            raise ValueError("seal_every_events must be >= 1 and seal_every_seconds > 0")
        Checkpoint(origin, 0, merkle.EMPTY_ROOT).text()  # validates the origin line early
        self.con = con
        self.signer = signer
        self.origin = origin
        self.seal_every_events = seal_every_events
        self.seal_every_seconds = seal_every_seconds
        self._clock = clock
        self._chunk_rows = chunk_rows
        self._drop_lock = threading.Lock()
        self._dropped = 0
        self._frontier = CompactRange()
        self._pending: list[bytes] = []  # leaf hashes appended since the last checkpoint
        self._last: _Sealed | None = None
        self._last_seal_time = clock()

        ensure_schema(con)
        for statement in rotation_statements:
            rotation = open_rotation_statement(statement)
            self.register_key(rotation.old)
            self.register_key(rotation.new, statement)
        self.register_key(signer.public_key)
        self._refuse_retired_signer()
        self.reload()

    # --- state -----------------------------------------------------------------------------------

    @property
    def tree_size(self) -> int:
        return self._frontier.size

    def root(self) -> bytes:
        return self._frontier.root()

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def last_checkpoint(self) -> str | None:
        """The latest signed checkpoint note, or None before the first seal."""
        return None if self._last is None else self._last.note

    # --- writer API ------------------------------------------------------------------------------

    def append(self, records: Sequence[bytes], *, first_seq: int | None = None) -> None:
        """Add the stored records (in seq order) as leaves; persists state in the caller's transaction.

        ``first_seq``, if given, must equal the current tree size: a writer that lost track of
        its seqs fails loudly here instead of building a tree that no longer matches the rows.
        """
        self.append_leaf_hashes(merkle.leaf_hashes(records), first_seq=first_seq)

    def append_leaf_hashes(self, hashes: Sequence[bytes], *, first_seq: int | None = None) -> None:
        """``append`` for records whose leaf hashes are already computed (by the decode workers)."""
        if first_seq is not None and first_seq != self._frontier.size:
            raise LedgerStateError(f"append at seq {first_seq} but the ledger holds {self._frontier.size} leaves")
        if not hashes:
            return
        frontier = self._frontier.copy()
        frontier.extend(hashes)
        self._write_state(frontier, self._dropped)
        # Adopt the new state only once the UPDATE went through.
        self._frontier = frontier
        self._pending.extend(hashes)

    def note_dropped(self, n: int) -> None:
        """Count ``n`` events lost upstream (thread-safe); the total goes into the next checkpoint."""
        if n < 0:
            raise ValueError("dropped count must be non-negative")
        with self._drop_lock:
            self._dropped += n

    def maybe_seal(self, now: float | None = None) -> str | None:
        """Seal if enough events or time have passed; returns the new signed note, or None."""
        now = self._clock() if now is None else now
        last_size = 0 if self._last is None else self._last.tree_size
        if self._frontier.size - last_size >= self.seal_every_events:
            return self.seal(now)
        if now - self._last_seal_time >= self.seal_every_seconds:
            return self.seal(now)
        return None

    def seal(self, now: float | None = None) -> str | None:
        """Sign and store a checkpoint over everything appended; None when nothing is new."""
        now = self._clock() if now is None else now
        last, size, dropped = self._last, self._frontier.size, self._dropped
        retained, retention_head = retention_log.head(self.con)
        # Nothing new: no checkpoint, and the timer keeps running from the last real one, so the
        # next event after a quiet spell is sealed promptly rather than a full interval later.
        # A retention deletion or legal hold is news: it must be signed like an event.
        if last is None and size == 0 and dropped == 0 and retained == 0:
            return None
        if (last is not None and size == last.tree_size and dropped == last.dropped
                and retained == last.retention_entries):
            return None
        root = self._frontier.root()
        proof: list[bytes] | None = None
        if last is not None:
            proof = merkle.consistency_proof_from_parts(last.frontier, self._pending)
            # A log must never sign a checkpoint inconsistent with one it signed before.
            try:
                merkle.verify_consistency(last.tree_size, size, last.root_hash, root, proof)
            except merkle.ProofError as exc:
                raise LedgerStateError(f"refusing to sign: new tree is not an extension of the last: {exc}") from exc
        when = int(now) if last is None else max(int(now), last.time)
        extensions = (retention_log.line(retained, retention_head),) if retained else ()
        cp = Checkpoint(self.origin, size, root, prev=None if last is None else last.note_hash, time=when,
                        dropped=dropped, extensions=extensions)
        signed = sign_checkpoint(cp, self.signer)
        seq_no = 0 if last is None else last.seq_no + 1
        with own_transaction(self.con):
            self.con.execute(
                f"INSERT INTO {CHECKPOINTS_TABLE} (seq_no, tree_size, root_hash, note, note_hash, created_at, "
                "key_id, key_fingerprint, dropped, frontier, consistency_proof) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    seq_no, size, root, signed, note_hash(signed), _utc(when),
                    self.signer.key_id.hex(), self.signer.public_key.fingerprint, dropped,
                    self._frontier.to_bytes(), None if proof is None else b"".join(proof),
                ],
            )
            self._write_state(self._frontier, dropped)
        self._last = _Sealed(seq_no, size, root, signed, note_hash(signed), self._frontier.copy(), dropped, when,
                             retained)
        self._pending = []
        self._last_seal_time = now
        return signed

    def reload(self) -> None:
        """(Re)read state from the database, cross-check it and catch up with unhashed rows.

        Called at start-up and after a rolled-back writer transaction. Rows appended after the
        persisted state (possible only if a writer skipped ``append``) are hashed and added.
        Raises ``LedgerStateError`` when rows the ledger already covers are gone or changed.
        """
        con = self.con
        state = query_one(con, f"SELECT tree_size, frontier, dropped FROM {STATE_TABLE} WHERE id = 1")
        if state is None:
            con.execute(
                f"INSERT INTO {STATE_TABLE} VALUES (1, 0, ?, 0, ?)", [CompactRange().to_bytes(), _utc(self._clock())]
            )
            state = (0, CompactRange().to_bytes(), 0)
        frontier = CompactRange.from_bytes(state[1])
        if frontier.size != state[0]:
            raise LedgerStateError(f"{STATE_TABLE}.tree_size {state[0]} disagrees with its frontier ({frontier.size})")
        last = self._load_last_checkpoint()
        if last is not None and parse_checkpoint(last.note).origin != self.origin:
            raise LedgerStateError(
                f"origin {self.origin!r} differs from the stored log's {parse_checkpoint(last.note).origin!r}; "
                "a log keeps one origin for life"
            )
        base = CompactRange() if last is None else last.frontier.copy()
        if frontier.size < base.size:
            raise LedgerStateError(f"ledger state covers {frontier.size} rows, less than the last checkpoint's {base.size}")
        n_rows, top = count_rows(con)
        if n_rows != (0 if top is None else top + 1):
            raise LedgerStateError(f"spans seqs are not contiguous from 0: {n_rows} rows, largest seq {top}")
        if n_rows < frontier.size:
            raise LedgerStateError(f"spans has {n_rows} rows but the ledger already covers {frontier.size}")
        try:
            pending = leaf_hashes_of_range(con, base.size, n_rows, chunk_rows=self._chunk_rows)
        except LookupError as exc:
            raise LedgerStateError(str(exc)) from exc
        check = base.copy()
        check.extend(pending[: frontier.size - base.size])
        if check != frontier:
            raise LedgerStateError(
                f"rows seq {base.size}..{frontier.size - 1} no longer match the ledger state: changed after append"
            )
        if n_rows > frontier.size:
            log.warning("ledger catching up: hashing %d rows (seq %d..%d) missing from its state",
                        n_rows - frontier.size, frontier.size, n_rows - 1)
            frontier.extend(pending[frontier.size - base.size :])
        with self._drop_lock:
            # Drops noted in this process but not yet persisted (or rolled back) must not vanish.
            self._dropped = max(self._dropped, int(state[2]), 0 if last is None else last.dropped)
        if n_rows > state[0]:
            with own_transaction(con):
                self._write_state(frontier, self._dropped)
        self._frontier = frontier
        self._pending = pending
        self._last = last
        if last is not None:
            self._last_seal_time = last.time

    def register_key(self, key: PublicKey, rotation: str | None = None) -> None:
        """Record a public key (and the rotation statement that introduced it) for verifiers."""
        self.con.execute(
            f"INSERT INTO {KEYS_TABLE} (fingerprint, name, key_id, public_key, verifier_key, added_at, rotation) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET rotation = "
            f"COALESCE({KEYS_TABLE}.rotation, excluded.rotation)",
            [key.fingerprint, key.name, key.key_id_hex, key.raw, key.verifier_key, _utc(self._clock()), rotation],
        )

    # --- helpers ---------------------------------------------------------------------------------

    def _write_state(self, frontier: CompactRange, dropped: int) -> None:
        self.con.execute(
            f"UPDATE {STATE_TABLE} SET tree_size = ?, frontier = ?, dropped = ?, updated_at = ? WHERE id = 1",
            [frontier.size, frontier.to_bytes(), dropped, _utc(self._clock())],
        )

    def _load_last_checkpoint(self) -> _Sealed | None:
        row = query_one(
            self.con,
            f"SELECT seq_no, tree_size, root_hash, note, frontier, dropped FROM {CHECKPOINTS_TABLE} "
            "ORDER BY seq_no DESC LIMIT 1",
        )
        if row is None:
            return None
        seq_no, size, root_hash, signed, frontier_blob, dropped = row
        cp = parse_checkpoint(signed)
        frontier = CompactRange.from_bytes(frontier_blob)
        if not (cp.tree_size == size == frontier.size and cp.root_hash == bytes(root_hash) == frontier.root()):
            raise LedgerStateError(f"checkpoint {seq_no}: stored columns or frontier disagree with the signed note")
        sealed_retention = retention_log.sealed(cp)
        return _Sealed(seq_no, size, cp.root_hash, signed, note_hash(signed), frontier, int(dropped), cp.time or 0,
                       0 if sealed_retention is None else max(sealed_retention[0], 0))

    def _refuse_retired_signer(self) -> None:
        rows = self.con.execute(f"SELECT rotation FROM {KEYS_TABLE} WHERE rotation IS NOT NULL").fetchall()
        for (statement,) in rows:
            try:
                rotation = open_rotation_statement(statement)
            except NoteError:
                continue  # an invalid stored statement retires nothing; verify_store ignores it too
            if rotation.old.fingerprint == self.signer.public_key.fingerprint:
                raise LedgerStateError(
                    f"signing key {self.signer.key_id.hex()} was retired at {rotation.time} "
                    f"in favour of {rotation.new.key_id_hex}; load the current key"
                )




def _utc(seconds: float) -> datetime:
    """DuckDB TIMESTAMP is zone-less; we always store UTC."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
