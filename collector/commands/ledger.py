"""``govtrace verify-store`` and ``govtrace keys``: the tamper-evident ledger from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify-store", help="recompute the Merkle log from stored rows and check every signed checkpoint",
        description="Detect any edited, deleted, inserted or reordered row: leaves are recomputed from the "
        "bytes stored, roots compared with every signed checkpoint, signatures and the checkpoint chain checked. "
        "Exits 1 on any failure. Run it on a database file no collector is running on (a copy is fine).",
    )
    parser.add_argument("--db", default="govtrace.duckdb", help="DuckDB file (default ./govtrace.duckdb)")
    parser.add_argument("--key-fingerprint", metavar="FP",
                        help="trust only this ledger key (and keys it rotated to); default: the keys in --key-dir")
    parser.add_argument("--key-dir", help="ledger key directory (default <db>.keys)")
    parser.add_argument("--anchor", action="append", default=[], metavar="FILE",
                        help="an escrowed checkpoint note that must be consistent with the store (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run_verify_store)

    parser = subparsers.add_parser("keys", help="show or rotate the ledger's signing key",
                                   description="Show the ledger key's fingerprint (give it to auditors out of band) "
                                   "or rotate to a new key; rotation is signed by the old key and recorded.")
    parser.add_argument("action", choices=["show", "rotate"])
    parser.add_argument("--db", default="govtrace.duckdb", help="DuckDB file whose keys to use")
    parser.add_argument("--key-dir", help="ledger key directory (default <db>.keys)")
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.set_defaults(func=run_keys)


def run_verify_store(args: argparse.Namespace) -> int:
    import duckdb

    from govtrace.collector.cli import CliError
    from govtrace.collector.column_check import check_derived_columns
    from govtrace.collector.ledger.signing import KeyStore
    from govtrace.collector.ledger.verify import trusted_keys_from_store, verify_store

    db = Path(args.db)
    if not db.exists():
        raise CliError(f"no database at {db}")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.IOException as exc:
        raise CliError(f"cannot open {db} read-only ({exc}); stop the collector or verify a copy of the file") from None
    try:
        if args.key_fingerprint:
            try:
                keys = trusted_keys_from_store(con, args.key_fingerprint)
            except LookupError as exc:
                raise CliError(str(exc)) from None
        else:
            keys = KeyStore(Path(args.key_dir) if args.key_dir else Path(str(db) + ".keys")).public_keys()
            if not keys:
                raise CliError("no ledger keys found: pass --key-fingerprint or --key-dir")
        anchors = [Path(a).read_text() for a in args.anchor]
        report = verify_store(con, keys, anchors=anchors, progress=_progress(args.json, "ledger"))
        columns_checked, mismatching, mismatches = check_derived_columns(con, _progress(args.json, "columns"))
    finally:
        con.close()
    ok = report.ok and mismatching == 0
    if args.json:
        print(json.dumps({**report.to_dict(), "ok": ok, "ledger_ok": report.ok,
                          "columns_checked": columns_checked, "column_mismatches": mismatching,
                          "column_findings": [str(m) for m in mismatches]}, default=str))
    else:
        print(report.summary())
        verdict = "OK" if mismatching == 0 else f"FAILED: {mismatching} cells differ from their records"
        print(f"typed columns re-derived from stored records: {verdict} ({columns_checked} rows)")
        for mismatch in mismatches:
            print(f"  {mismatch}")
    return 0 if ok else 1


def run_keys(args: argparse.Namespace) -> int:
    from govtrace.collector.ledger.signing import KeyStore

    store = KeyStore(Path(args.key_dir) if args.key_dir else Path(str(args.db) + ".keys"))
    if args.action == "rotate":
        signer, _ = store.rotate()
    else:
        signer = store.load_or_create("govtrace")
    info = {"name": signer.name, "key_id": signer.public_key.key_id.hex() if isinstance(
        signer.public_key.key_id, bytes) else signer.public_key.key_id,
            "fingerprint": signer.public_key.fingerprint, "key_dir": str(store.directory)}
    print(json.dumps(info) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return 0


def _progress(quiet: bool, label: str):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(desc=f"verifying {label}", unit="rows", file=sys.stderr)

    def update(done: int, total: int | None = None, *_: object) -> None:
        if total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update
