"""Retention per data class and legal holds: delete payloads, never leaves.

An event's data class is its ``data_classification`` (``unclassified`` when the span names none).
Once an event is older than its class's period, counted from when the collector received it,
``apply_retention`` deletes its payload: the row keeps its seq, every other column and the stored
record become NULL, and a tombstone keeps the leaf hash, so every proof and checkpoint still
verifies (see ``ledger/retention_log.py``). Only sealed rows are eligible: a leaf is never deleted
before a signed checkpoint vouches for it.

A legal hold names a case and, optionally, an agent and an event-time window; while it is active no
event it covers is deleted. Every deletion, hold and release is an entry in the ledger's retention
log, which each following checkpoint signs.

The collector's writer calls ``apply_retention`` on its own connection (``ledger/wiring.py``);
``govtrace retention apply|hold|release|status`` does the same on a database file no collector is
running on, and seals the result with the ledger key.

Policy file (YAML)::

    default: 400d          # classes not listed; omit or null to keep them forever
    classes:
      pii: 30d
      restricted: 2y
    minimum_days: 183      # optional: refuse any period shorter than this
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from govtrace.collector.ledger import retention_log as rlog
from govtrace.collector.ledger.leaves import arrow_leaf_hashes
from govtrace.collector.ledger.records import own_transaction
from govtrace.collector.ledger.schema import CHECKPOINTS_TABLE, TOMBSTONES_TABLE, ensure_schema

UNCLASSIFIED = "unclassified"
AI_ACT_MINIMUM_DAYS = 183  # Art. 19(1) and 26(6): logs of high-risk systems kept at least six months
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([hdwy]?)\s*$")
_UNIT_DAYS = {"h": 1 / 24, "d": 1, "w": 7, "y": 365, "": 1}
_CHUNK_ROWS = 100_000


class RetentionError(ValueError):
    """A retention policy or hold request that cannot be used; the message says which setting."""


@dataclass(frozen=True)
class RetentionPolicy:
    """Retention period in days per data class; None keeps a class forever."""

    classes: dict[str, float | None] = field(default_factory=dict)
    default: float | None = None
    digest: str = ""  # sha256 of the policy file, recorded with each deletion
    source: str = "<policy>"

    def days_for(self, data_class: str) -> float | None:
        return self.classes.get(data_class, self.default)

    def warnings(self) -> list[str]:
        """Periods under the AI Act's six-month floor for logs: allowed, but said out loud."""
        out = []
        for name, days in sorted({**self.classes, "(default)": self.default}.items()):
            if days is not None and days < AI_ACT_MINIMUM_DAYS:
                out.append(f"class {name} keeps events {days:g} days, less than the six months the EU AI Act "
                           "(Art. 19(1), 26(6)) asks for logs of high-risk AI systems")
        return out

    def describe(self) -> dict[str, Any]:
        return {"classes": self.classes, "default": self.default, "sha256": self.digest, "source": self.source}


def load_policy(path: str | Path) -> RetentionPolicy:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RetentionError(f"cannot read retention policy {path}: {exc}") from None
    return parse_policy(raw, str(path))


def parse_policy(raw: bytes | str, source: str = "<policy>") -> RetentionPolicy:
    raw = raw.encode() if isinstance(raw, str) else raw
    try:
        doc = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise RetentionError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise RetentionError(f"{source}: expected a mapping with 'default' and/or 'classes'")
    unknown = set(doc) - {"default", "classes", "minimum_days"}
    if unknown:
        raise RetentionError(f"{source}: unknown keys {sorted(unknown)}; expected default, classes, minimum_days")
    classes_raw = doc.get("classes") or {}
    if not isinstance(classes_raw, dict):
        raise RetentionError(f"{source}: classes must map a data class to a period such as 30d")
    classes = {str(k): _days(v, f"{source}: classes.{k}") for k, v in classes_raw.items()}
    default = _days(doc.get("default"), f"{source}: default")
    floor = doc.get("minimum_days")
    if floor is not None:
        for name, days in {**classes, "default": default}.items():
            if days is not None and days < float(floor):
                raise RetentionError(f"{source}: {name} keeps {days:g} days, under minimum_days {floor}")
    return RetentionPolicy(classes, default, hashlib.sha256(raw).hexdigest(), source)


@dataclass
class RetentionResult:
    deleted: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # case -> events a hold kept
    unsealed_skipped: int = 0
    event_no: int | None = None  # the retention log entry recording the deletion

    def to_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "by_class": self.by_class, "held": self.held,
                "unsealed_skipped": self.unsealed_skipped, "event_no": self.event_no}


def apply_retention(con, policy: RetentionPolicy, now: float | None = None, *, actor: str = "retention",
                    dry_run: bool = False) -> RetentionResult:
    """Delete the payload of every sealed event past its class's period that no hold covers.

    Runs on the connection it is given (the collector's writer, or a file no collector runs on),
    in one transaction with the retention log entry that records it.
    """
    now = time.time() if now is None else float(now)
    ensure_schema(con)
    result = RetentionResult()
    sealed = _sealed_size(con)
    holds = rlog.active_holds(rlog.entries(con))
    expired = _expired_predicate(policy)
    if expired is None:
        return result
    now_ns = int(now * 1e9)
    result.unsealed_skipped = int(con.execute(
        f"SELECT count(*) FROM spans WHERE record IS NOT NULL AND seq >= ? AND {expired}",
        [sealed, now_ns]).fetchall()[0][0])
    doomed: list[rlog.Tombstone] = []
    for batch in _candidates(con, sealed, expired, now_ns):
        hashes = arrow_leaf_hashes(batch.column("record"))
        for i, row in enumerate(batch.drop_columns(["record"]).to_pylist()):
            t = rlog.Tombstone(row["seq"], hashes[i], row["data_class"], row["agent_id"], row["start_ns"])
            covering = sorted(h.case for h in holds.values() if h.covers(t.agent_id, t.start_ns))
            for case in covering:
                result.held[case] = result.held.get(case, 0) + 1
            if not covering:
                doomed.append(t)
    for t in doomed:
        result.by_class[t.data_class] = result.by_class.get(t.data_class, 0) + 1
    result.deleted = len(doomed)
    if dry_run or not doomed:
        return result
    entry = {"action": rlog.DELETE, "time": int(now), "actor": actor, "count": len(doomed),
             "tombstones": rlog.tombstones_digest(doomed), "by_class": result.by_class, "held": result.held,
             "first_seq": doomed[0].seq, "last_seq": doomed[-1].seq, "policy": policy.describe()}
    with own_transaction(con):
        result.event_no = rlog.append_entry(con, entry)
        _write_tombstones(con, doomed, result.event_no)
    return result


def place_hold(con, case: str, *, reason: str, actor: str, agent: str | None = None,
               since: datetime | None = None, until: datetime | None = None, now: float | None = None) -> int:
    """Start a legal hold; returns its retention log entry number."""
    ensure_schema(con)
    if not case or not case.strip():
        raise RetentionError("a legal hold needs a case id")
    if not reason.strip():
        raise RetentionError("a legal hold needs a reason (it is part of the audit record)")
    if case in rlog.active_holds(rlog.entries(con)):
        raise RetentionError(f"legal hold {case!r} is already active; release it first to change its scope")
    entry = {"action": rlog.HOLD, "time": int(time.time() if now is None else now), "case": case,
             "agent": agent, "since_ns": _ns(since), "until_ns": _ns(until), "reason": reason, "actor": actor}
    with own_transaction(con):
        return rlog.append_entry(con, entry)


def release_hold(con, case: str, *, reason: str, actor: str, now: float | None = None) -> int:
    """End a legal hold; returns its retention log entry number."""
    ensure_schema(con)
    if case not in rlog.active_holds(rlog.entries(con)):
        raise RetentionError(f"no active legal hold {case!r}")
    entry = {"action": rlog.RELEASE, "time": int(time.time() if now is None else now), "case": case,
             "reason": reason, "actor": actor}
    with own_transaction(con):
        return rlog.append_entry(con, entry)


def status(con) -> dict[str, Any]:
    """Active holds, the log and how many payloads were deleted, for ``govtrace retention status``."""
    log = rlog.entries(con)
    holds = rlog.active_holds(log)
    try:
        deleted = int(con.execute(f"SELECT count(*) FROM {TOMBSTONES_TABLE}").fetchall()[0][0])
    except duckdb.CatalogException:  # a store from before retention existed has deleted nothing
        deleted = 0
    return {"active_holds": {c: {"agent": h.agent, "since_ns": h.since_ns, "until_ns": h.until_ns}
                             for c, h in holds.items()},
            "payloads_deleted": deleted, "log": log}


# --- helpers -------------------------------------------------------------------------------------


def _days(value: Any, where: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "forever", "never")):
        return None
    if isinstance(value, bool):
        raise RetentionError(f"{where}: expected a period such as 30d, 12w or 2y, got {value!r}")
    if isinstance(value, int | float):
        days = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise RetentionError(f"{where}: expected a period such as 30d, 12w or 2y, got {value!r}")
        days = float(m.group(1)) * _UNIT_DAYS[m.group(2)]
    if days <= 0:
        raise RetentionError(f"{where}: a retention period must be positive, got {value!r}")
    return days


def _expired_predicate(policy: RetentionPolicy) -> str | None:
    """SQL condition on a spans row (``?`` = now in ns) that its class's period has passed."""
    def ns(days: float | None) -> str:
        return "NULL" if days is None else str(int(days * 86_400 * 1e9))

    if policy.default is None and all(days is None for days in policy.classes.values()):
        return None  # everything is kept forever
    whens = " ".join(f"WHEN {_literal(name)} THEN {ns(days)}" for name, days in sorted(policy.classes.items()))
    period = (f"CASE coalesce(data_classification, '{UNCLASSIFIED}') {whens} ELSE {ns(policy.default)} END"
              if whens else ns(policy.default))
    return f"epoch_ns(received_at) + ({period}) < ?"


def _candidates(con, sealed: int, expired: str, now_ns: int) -> Iterator[pa.RecordBatch]:
    lo = 0
    while lo < sealed:
        hi = min(lo + _CHUNK_ROWS, sealed)
        sql = (f"SELECT seq, coalesce(data_classification, '{UNCLASSIFIED}') AS data_class, agent_id, "
               f"epoch_ns(start_time) AS start_ns, record FROM spans "
               f"WHERE seq >= ? AND seq < ? AND record IS NOT NULL AND {expired} ORDER BY seq")
        for p in ("lo", "hi", "now"):
            sql = sql.replace("?", f"${p}", 1)
        table = con.sql(sql, params={"lo": lo, "hi": hi, "now": now_ns}).to_arrow_table()
        yield from table.to_batches()
        lo = hi


def _write_tombstones(con, doomed: list[rlog.Tombstone], event_no: int) -> None:
    table = pa.table({
        "seq": pa.array([t.seq for t in doomed], pa.int64()),
        "leaf_hash": pa.array([t.leaf_hash for t in doomed], pa.binary()),
        "event_no": pa.array([event_no] * len(doomed), pa.int64()),
        "data_class": pa.array([t.data_class for t in doomed], pa.string()),
        "agent_id": pa.array([t.agent_id for t in doomed], pa.string()),
        "start_time": pa.array([t.start_ns for t in doomed], pa.timestamp("ns")),
    })
    con.register("_tombstones", table)
    try:
        con.execute(f"INSERT INTO {TOMBSTONES_TABLE} SELECT * FROM _tombstones")
        columns = [r[1] for r in con.execute("PRAGMA table_info('spans')").fetchall() if r[1] != "seq"]
        # Every column but seq goes: the typed columns are derived from the payload, so keeping them
        # would keep the payload's governance facts without anything left to check them against.
        assignments = ", ".join(f'"{c}" = NULL' for c in columns)
        con.execute(f"UPDATE spans SET {assignments} WHERE seq IN (SELECT seq FROM _tombstones)")
    finally:
        con.unregister("_tombstones")


def _sealed_size(con) -> int:
    rows = con.execute(f"SELECT max(tree_size) FROM {CHECKPOINTS_TABLE}").fetchall()
    return int(rows[0][0] or 0)


def _ns(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"




# --- command line --------------------------------------------------------------------------------


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retention", help="apply retention, place or release legal holds, show retention status",
        description="Retention deletes payloads, never leaves: proofs keep verifying. Works on a database file no "
        "collector is running on (a running collector applies its own --retention-policy); every deletion, hold "
        "and release is recorded in the ledger's retention log and sealed with the ledger key.")
    parser.add_argument("action", choices=["apply", "hold", "release", "status"])
    parser.add_argument("--db", default="govtrace.duckdb", help="DuckDB file (default ./govtrace.duckdb)")
    parser.add_argument("--key-dir", help="ledger key directory used to seal (default <db>.keys)")
    parser.add_argument("--policy", help="apply: retention policy YAML")
    parser.add_argument("--dry-run", action="store_true", help="apply: report what would be deleted, delete nothing")
    parser.add_argument("--now", help="apply: the time to judge ages against (ISO 8601; default now)")
    parser.add_argument("--case", help="hold/release: the case id")
    parser.add_argument("--agent", help="hold: only this agent's events")
    parser.add_argument("--since", help="hold: events from this time (ISO 8601)")
    parser.add_argument("--until", help="hold: events before this time (ISO 8601)")
    parser.add_argument("--reason", default="", help="hold/release: why (recorded)")
    parser.add_argument("--by", help="hold/release/apply: who (default $GOVTRACE_USER or the login name)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from govtrace.collector.cli import CliError

    db = Path(args.db)
    if not db.exists():
        raise CliError(f"no database at {db}")
    try:
        con = duckdb.connect(str(db), read_only=args.action == "status")
    except duckdb.IOException as exc:
        raise CliError(f"cannot open {db} ({exc}); a running collector owns it: stop it, or let it apply "
                       "its retention policy") from None
    actor = args.by or _user()
    try:
        if args.action == "status":
            out: dict[str, Any] = status(con)
        elif args.action == "apply":
            if not args.policy:
                raise CliError("retention apply needs --policy FILE")
            policy = load_policy(args.policy)
            now = _parse_time(args.now).timestamp() if args.now else None
            result = apply_retention(con, policy, now, actor=actor, dry_run=args.dry_run)
            out = {**result.to_dict(), "dry_run": args.dry_run, "warnings": policy.warnings()}
            if result.event_no is not None:
                out["sealed"] = _seal(con, db, args.key_dir)
        else:
            if not args.case:
                raise CliError(f"retention {args.action} needs --case")
            if args.action == "hold":
                event_no = place_hold(con, args.case, reason=args.reason, actor=actor, agent=args.agent,
                                      since=_parse_time(args.since), until=_parse_time(args.until))
            else:
                event_no = release_hold(con, args.case, reason=args.reason, actor=actor)
            out = {"action": args.action, "case": args.case, "event_no": event_no,
                   "sealed": _seal(con, db, args.key_dir)}
    except RetentionError as exc:
        raise CliError(str(exc)) from None
    finally:
        con.close()
    print(json.dumps(out, default=str) if args.json else _render(out))
    return 0


def _seal(con, db: Path, key_dir: str | None) -> str:
    """Sign a checkpoint over the new retention log head with the ledger key, when it is here."""
    from govtrace.collector.ledger.checkpoint import parse_checkpoint
    from govtrace.collector.ledger.sealer import Ledger
    from govtrace.collector.ledger.signing import KeyFileError, KeyStore

    keys = KeyStore(Path(key_dir) if key_dir else Path(str(db) + ".keys"))
    try:
        signer = keys.current()
    except (KeyFileError, OSError) as exc:
        return f"not sealed ({exc}): the collector's next checkpoint will seal it"
    last = con.execute(f"SELECT note FROM {CHECKPOINTS_TABLE} ORDER BY seq_no DESC LIMIT 1").fetchall()
    origin = parse_checkpoint(last[0][0]).origin if last else signer.name
    ledger = Ledger(con, signer, origin, rotation_statements=keys.rotation_statements())
    note = ledger.seal()
    return "sealed by checkpoint over tree size " + str(ledger.tree_size) if note else "nothing new to seal"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RetentionError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _user() -> str:
    import getpass
    import os

    return os.environ.get("GOVTRACE_USER") or getpass.getuser()


def _render(out: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {json.dumps(v, default=str) if isinstance(v, dict | list) else v}" for k, v in out.items())
