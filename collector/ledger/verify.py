"""Verify a whole store from its stored bytes: rows, checkpoints, signatures, chain, state.

One streaming pass over ``spans`` in seq order (Arrow batches, bounded memory) recomputes every
leaf from the stored ``record`` text, the root at every checkpoint's size, and the subtrees each
checkpoint's consistency proof attests for the rows it newly sealed. Everything else (checkpoint
rows, keys, state) is small and read up front. Nothing here needs a private key.

The consistency-proof subtrees are what let a report say *which* sealing window was altered rather
than only "the first mismatching checkpoint and everything after": a verified consistency proof
from checkpoint j-1 to j carries signed-root-backed hashes of subtrees that exactly cover the
rows j added, so each window can be checked on its own.

Rows whose payload retention deleted are hashed from their tombstones (``records.py``); the
retention log that justifies each tombstone is checked by ``retention_log.check_retention``.

What this can and cannot show: any change to a sealed row (edit, delete, insert, reorder) changes
a recomputed root and is reported. Rows after the last checkpoint are only as safe as
``ledger_state``. And a key holder who rewrites rows, re-signs every checkpoint and fixes the state
goes unnoticed unless an earlier checkpoint was kept elsewhere: pass such escrowed checkpoints as
``anchors``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from . import merkle, note
from .checkpoint import (
    Checkpoint,
    CheckpointError,
    note_hash,
    open_checkpoint,
    parse_checkpoint,
    verify_chain,
)
from .merkle import CompactRange
from .records import DEFAULT_CHUNK_ROWS, SPANS_TABLE, iter_leaf_batches, query_one
from .report import ERROR, INFO, WARNING, VerificationReport
from .retention_log import check_retention
from .schema import CHECKPOINTS_TABLE, KEYS_TABLE, STATE_TABLE, split_hashes
from .signing import PublicKey, normalize_fingerprint, open_rotation_statement, trusted_keys

ProgressCallback = Callable[[int, int], None]  # (rows done, rows total)

MAX_FINDINGS_PER_CODE = 20  # a table with a million gaps needs a count, not a million lines


@dataclass
class _Target:
    """A tree size at which the recomputed tree is compared with what was signed or persisted."""

    size: int
    label: str
    expected_root: bytes | None = None
    seq_no: int | None = None
    expected_frontier: CompactRange | None = None  # for the ledger state


@dataclass
class _Window:
    """Rows ``start..end-1`` that checkpoint ``seq_no`` newly sealed, with the subtree hashes its
    verified consistency proof (or, for the first checkpoint, its root) vouches for."""

    seq_no: int
    start: int
    end: int
    nodes: dict[tuple[int, int], bytes] = field(default_factory=dict)


def verify_store(
    con,
    public_keys: Iterable[PublicKey],
    *,
    anchors: Sequence[str] = (),
    progress: ProgressCallback | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> VerificationReport:
    """Recompute and check everything the ledger claims about the rows in ``spans``.

    ``public_keys`` are the keys the caller trusts (see ``trusted_keys_from_store``).
    ``anchors`` are signed checkpoints kept outside the store (escrow, an earlier export) that the
    stored rows must still match. ``progress(rows_done, rows_total)`` is called after each batch.
    """
    keys = list(public_keys)
    report = VerificationReport()
    if not keys:
        report.add(ERROR, "no_trusted_keys", "no trusted public key was given, so no signature can be checked")
    missing = _missing_tables(con)
    if missing:
        report.add(ERROR, "ledger_tables_missing",
                   f"table(s) {', '.join(missing)} do not exist: the store has no ledger or it was dropped")
        return report

    rows = con.execute(
        f"SELECT seq_no, tree_size, root_hash, note, note_hash, key_id, key_fingerprint, dropped, "
        f"consistency_proof FROM {CHECKPOINTS_TABLE} ORDER BY seq_no"
    ).fetchall()
    state = query_one(con, f"SELECT tree_size, frontier FROM {STATE_TABLE} WHERE id = 1")
    retired = _retirements(con)
    # Rows without a usable seq are outside the log entirely: report them, stream the rest.
    null_seq, negative_seq, total_rows = query_one(
        con,
        f"SELECT count(*) FILTER (WHERE seq IS NULL), count(*) FILTER (WHERE seq < 0), "
        f"count(*) FILTER (WHERE seq >= 0) FROM {SPANS_TABLE}",
    )
    if null_seq:
        report.add(ERROR, "seq_null", f"{null_seq} row(s) have a NULL seq: they were inserted outside the log")
    if negative_seq:
        report.add(ERROR, "seq_negative", f"{negative_seq} row(s) have a negative seq: they were inserted "
                   "outside the log")

    checkpoints, proofs = _check_checkpoint_rows(rows, keys, retired, report)
    report.checkpoints_checked = len(rows)
    targets = [_Target(cp.tree_size, f"checkpoint {no}", cp.root_hash, no) for no, cp in checkpoints if cp]
    targets += _anchor_targets(anchors, keys, report)
    state_frontier = None
    if state is None:
        if total_rows or rows:
            report.add(ERROR, "state_missing", f"{STATE_TABLE} has no row: the ledger state was deleted")
    else:
        try:
            state_frontier = CompactRange.from_bytes(bytes(state[1]))
        except ValueError as exc:
            report.add(ERROR, "state_corrupt", f"{STATE_TABLE} holds no valid compact range: {exc}")
        else:
            targets.append(_Target(state_frontier.size, "ledger state", expected_frontier=state_frontier))
    windows = _windows(checkpoints, proofs)

    computed, subtrees = _stream(con, targets, windows, total_rows, report, progress, chunk_rows)
    _compare(targets, windows, computed, subtrees, total_rows, report)
    beyond = 0
    if state_frontier is not None:
        beyond = query_one(con, f"SELECT count(*) FROM {SPANS_TABLE} WHERE seq >= ?", [state_frontier.size])[0]
    _check_coverage(checkpoints, state_frontier, total_rows, beyond, report)
    check_retention(con, checkpoints, report)
    return report


def trusted_keys_from_store(con, key_fingerprint: str) -> list[PublicKey]:
    """The key pinned by ``key_fingerprint`` plus every key linked to it by stored rotations.

    Trust comes only from the fingerprint, which the auditor got out of band; the table just saves
    them from needing the key files. Raises ``LookupError`` if no stored key has that fingerprint.
    """
    fp = normalize_fingerprint(key_fingerprint)
    stored = con.execute(f"SELECT verifier_key, rotation FROM {KEYS_TABLE}").fetchall()
    keys = {k.fingerprint: k for k in (PublicKey.from_verifier_key(v) for v, _ in stored)}
    if fp not in keys:
        raise LookupError(f"no ledger key with fingerprint {fp} in {KEYS_TABLE}")
    return trusted_keys([keys[fp]], [r for _, r in stored if r])


# --- checkpoint rows -----------------------------------------------------------------------------


def _check_checkpoint_rows(rows, keys, retired, report):
    """Signatures, the prev chain, stored consistency proofs, and columns against the signed note.

    Returns ``[(seq_no, Checkpoint | None)]`` and the decoded consistency proofs by position.
    """
    proofs: dict[int, list[bytes]] = {}
    for i, r in enumerate(rows):
        if i > 0 and r[8] is not None:
            try:
                proofs[i] = split_hashes(r[8])
            except ValueError:
                pass  # verify_chain reports the missing proof
    for f in verify_chain([r[3] for r in rows], keys, proofs, from_genesis=True):
        seq_no = None if f.checkpoint is None else rows[f.checkpoint][0]
        message = f.message
        if seq_no != f.checkpoint:
            message = message.replace(f"checkpoint {f.checkpoint}:", f"checkpoint {seq_no}:", 1)
        report.add(f.level, f.code, message, checkpoint=seq_no)

    out = []
    for i, (seq_no, size, root_hash, signed, stored_hash, key_id, key_fp, dropped, _) in enumerate(rows):
        if seq_no != i:
            report.add(ERROR, "checkpoint_numbering",
                       f"checkpoint numbers are not 0, 1, 2 …: found {seq_no} at position {i} "
                       "(a checkpoint row was deleted or inserted)", checkpoint=seq_no)
        try:
            cp = parse_checkpoint(signed)
        except CheckpointError:
            out.append((seq_no, None))  # verify_chain already reported it as malformed
            continue
        mismatched = [
            name for name, column, signed_value in (
                ("tree_size", size, cp.tree_size),
                ("root_hash", bytes(root_hash), cp.root_hash),
                ("dropped", dropped, cp.dropped),
                ("note_hash", bytes(stored_hash), note_hash(signed)),
            ) if column != signed_value
        ]
        if mismatched:
            report.add(ERROR, "column_mismatch",
                       f"checkpoint {seq_no}: column(s) {', '.join(mismatched)} differ from the signed note",
                       checkpoint=seq_no)
        _check_signer(seq_no, signed, cp, key_id, key_fp, keys, retired, report)
        out.append((seq_no, cp))
    return out, proofs


def _check_signer(seq_no, signed, cp, key_id, key_fp, keys, retired, report) -> None:
    """The key columns name the key that signed, and that key was not retired by then."""
    try:
        _, signers = note.open_note(signed, keys)
    except note.NoteError:
        return  # already reported as a signature finding
    if not any(k.key_id_hex == key_id and k.fingerprint == key_fp for k in signers):
        report.add(ERROR, "column_mismatch",
                   f"checkpoint {seq_no}: key_id/key_fingerprint columns do not name the key that signed it",
                   checkpoint=seq_no)
    for key in signers:
        when = retired.get(key.fingerprint)
        if when is not None and cp.time is not None and cp.time > when:
            report.add(ERROR, "retired_key",
                       f"checkpoint {seq_no}: signed at {cp.time} by key {key.key_id_hex}, "
                       f"which was retired at {when}", checkpoint=seq_no)


def _anchor_targets(anchors, keys, report) -> list[_Target]:
    out = []
    for i, a in enumerate(anchors):
        try:
            cp, _ = open_checkpoint(a, keys)
        except CheckpointError as exc:
            report.add(ERROR, "anchor_signature", f"anchor {i}: not a checkpoint signed by a trusted key: {exc}")
            continue
        out.append(_Target(cp.tree_size, f"anchored checkpoint {i}", cp.root_hash))
    return out


def _windows(checkpoints, proofs) -> list[_Window]:
    """Per checkpoint, the rows it newly sealed and the subtree hashes vouching for them.

    Only windows whose evidence is sound are kept: a consistency proof that verifies between the
    two signed roots, and sizes that grow (so windows are disjoint and in order).
    """
    out: list[_Window] = []
    prev: Checkpoint | None = None
    for i, (seq_no, cp) in enumerate(checkpoints):
        if cp is not None and out and prev is not None and prev.tree_size < out[-1].end:
            prev = cp  # after a shrink, windows would overlap: stop localizing past it
            continue
        if cp is None:
            prev = None
            continue
        if i == 0 and cp.tree_size > 0:
            out.append(_Window(seq_no, 0, cp.tree_size, {(0, cp.tree_size): cp.root_hash}))
        elif prev is not None and cp.tree_size > prev.tree_size and i in proofs:
            m, n, proof = prev.tree_size, cp.tree_size, proofs[i]
            try:
                merkle.verify_consistency(m, n, prev.root_hash, cp.root_hash, proof)
            except merkle.ProofError:
                prev = cp
                continue
            ranges = merkle.consistency_proof_ranges(m, n)
            nodes = {r: h for r, h in zip(ranges, proof, strict=True) if r[0] >= m}
            out.append(_Window(seq_no, m, n, nodes))
        prev = cp
    return out


# --- the pass over the rows ----------------------------------------------------------------------


def _stream(con, targets, windows, total_rows, report, progress, chunk_rows):
    """Seq contiguity, NULL records, the tree at every target size and every window subtree."""
    capped = _Capper(report)
    sizes = sorted({t.size for t in targets})
    computed: dict[int, CompactRange] = {}
    subtrees = _SubtreeRoots(sorted(r for w in windows for r in w.nodes))
    frontier = CompactRange()
    ti = 0
    while ti < len(sizes) and sizes[ti] == 0:
        computed[0] = frontier.copy()
        ti += 1
    expected = tombstoned = 0
    for batch in iter_leaf_batches(con, chunk_rows=chunk_rows):
        for s in batch.seqs:
            if s == expected:
                expected += 1
            elif s < expected:
                capped.add("seq_duplicate", f"seq {s} appears more than once (a row was inserted)", seq=s)
            else:
                gap = f"seq {expected} is" if s == expected + 1 else f"seqs {expected}..{s - 1} are"
                capped.add("seq_gap", f"{gap} missing: rows were deleted", seq=expected)
                expected = s + 1
        for s in batch.null_seqs:
            capped.add("null_record", f"seq {s} has a NULL record", seq=s)
        tombstoned += len(batch.tombstoned)
        subtrees.feed(frontier.size, batch.hashes)
        hashes, i = batch.hashes, 0
        while ti < len(sizes) and sizes[ti] <= frontier.size + len(hashes) - i:
            take = sizes[ti] - frontier.size
            frontier.extend(hashes[i : i + take])
            i += take
            computed[sizes[ti]] = frontier.copy()
            ti += 1
        frontier.extend(hashes[i:])
        report.rows_checked = frontier.size
        if progress is not None:
            progress(frontier.size, total_rows)
    report.root_hash = frontier.root()
    capped.flush()
    if tombstoned:
        report.add(INFO, "tombstoned", f"{tombstoned} row(s) had their payload deleted by retention; their leaves "
                   "are kept as tombstones and were checked like any other")
    return computed, subtrees.roots


def _compare(targets, windows, computed, subtrees, total_rows, report) -> None:
    """Turn recomputed roots into findings, naming the altered sealing windows where possible."""
    window_ok = {
        w.seq_no: all(subtrees.get(r) == h for r, h in w.nodes.items()) for w in windows
    }
    window_of = {w.seq_no: w for w in windows}
    shifted = bool({"seq_gap", "seq_duplicate"} & report.codes())
    last_good = 0
    for t in sorted(targets, key=lambda t: (t.expected_frontier is not None, t.size)):
        got = computed.get(t.size)
        where = {} if t.seq_no is None else {"checkpoint": t.seq_no}
        if got is None:
            report.add(ERROR, "beyond_table",
                       f"{t.label} covers {t.size} rows but the table holds only {total_rows}: rows were deleted",
                       **where)
            continue
        if t.expected_frontier is not None:
            if got != t.expected_frontier:
                report.add(ERROR, "state_mismatch",
                           f"the ledger state over seq 0..{t.size - 1} does not match the stored rows: a row "
                           "changed after it was appended (an unsealed one, if no checkpoint mismatch is reported)")
            continue
        if got.root() == t.expected_root:
            if t.seq_no is not None and last_good == _size_before(t, targets):
                last_good = t.size
            continue
        w = window_of.get(t.seq_no)
        if w is not None and window_ok[t.seq_no]:
            detail = (f"its own rows, seq {w.start}..{w.end - 1}, still match what it sealed, so the cause "
                      "is in earlier rows")
        elif w is not None:
            detail = (f"the rows it sealed, seq {w.start}..{w.end - 1}, do not match what it sealed: a record "
                      "there was edited, deleted, inserted or reordered")
        else:
            detail = (f"everything up to seq {last_good - 1} still matches, so a record from seq {last_good} on "
                      "was edited, deleted, inserted or reordered" if last_good else
                      "a record was edited, deleted, inserted or reordered")
        if shifted:
            detail += " (rows after a missing or duplicated seq sit at shifted positions, so they count as changed)"
        report.add(ERROR, "root_mismatch",
                   f"{t.label} (tree size {t.size}): the root recomputed from the stored records differs from "
                   f"the signed root; {detail}", **where)


def _size_before(t: _Target, targets: list[_Target]) -> int:
    """Size of the checkpoint target just before ``t`` (0 if none): keeps ``last_good`` contiguous."""
    smaller = [u.size for u in targets if u.seq_no is not None and u.size < t.size]
    return max(smaller, default=0)


def _check_coverage(checkpoints, state_frontier, total_rows, beyond, report) -> None:
    """How the rows relate to what is sealed and to what the ledger appended.

    ``beyond`` counts rows whose seq is at or past the end of the ledger state.
    """
    sealed = max((cp.tree_size for _, cp in checkpoints if cp is not None), default=0)
    if not checkpoints and total_rows:
        report.add(WARNING, "no_checkpoints", "the store has rows but no signed checkpoint")
    if state_frontier is None:
        return
    covered = state_frontier.size
    if beyond:
        report.add(ERROR, "rows_beyond_state",
                   f"{beyond} row(s) from seq {covered} on were not appended through the ledger "
                   "(its state stops before them): written behind the writer's back", seq=covered)
    if covered < sealed:
        report.add(ERROR, "state_behind",
                   f"the ledger state covers {covered} rows, fewer than the {sealed} already sealed")
    unsealed = min(covered, total_rows) - sealed
    if unsealed > 0:
        report.add(INFO, "unsealed",
                   f"{unsealed} row(s), seq {sealed}..{sealed + unsealed - 1}, are not sealed by a checkpoint yet; "
                   "only the ledger state covers them", seq=sealed)


def _missing_tables(con) -> list[str]:
    present = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return [t for t in (SPANS_TABLE, CHECKPOINTS_TABLE, STATE_TABLE, KEYS_TABLE) if t not in present]


def _retirements(con) -> dict[str, int]:
    """fingerprint -> time its key was retired, from the stored (and signature-checked) rotations."""
    out: dict[str, int] = {}
    for (statement,) in con.execute(f"SELECT rotation FROM {KEYS_TABLE} WHERE rotation IS NOT NULL").fetchall():
        try:
            r = open_rotation_statement(statement)
        except note.NoteError:
            continue
        out[r.old.fingerprint] = min(r.time, out.get(r.old.fingerprint, r.time))
    return out


class _SubtreeRoots:
    """Roots of disjoint, sorted leaf ranges, computed while the leaves stream past once."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges
        self.i = 0
        self.acc = CompactRange()
        self.roots: dict[tuple[int, int], bytes] = {}

    def feed(self, pos: int, hashes: list[bytes]) -> None:
        """``hashes`` are the leaves at positions ``pos, pos+1, …``."""
        j, n = 0, len(hashes)
        while self.i < len(self.ranges) and j < n:
            a, b = self.ranges[self.i]
            if pos + j < a:
                j = min(n, a - pos)
                continue
            take = min(b, pos + n) - (pos + j)
            self.acc.extend(hashes[j : j + take])
            j += take
            if self.acc.size == b - a:
                self.roots[(a, b)] = self.acc.root()
                self.acc = CompactRange()
                self.i += 1


class _Capper:
    """Adds at most MAX_FINDINGS_PER_CODE row-level findings per code, then one summary line."""

    def __init__(self, report: VerificationReport) -> None:
        self.report = report
        self.counts: dict[str, int] = {}

    def add(self, code: str, message: str, seq: int) -> None:
        n = self.counts[code] = self.counts.get(code, 0) + 1
        if n <= MAX_FINDINGS_PER_CODE:
            self.report.add(ERROR, code, message, seq=seq)

    def flush(self) -> None:
        for code, n in self.counts.items():
            if n > MAX_FINDINGS_PER_CODE:
                self.report.add(ERROR, code, f"… and {n - MAX_FINDINGS_PER_CODE} more {code} findings not listed")
