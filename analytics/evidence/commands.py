"""``govtrace export`` and ``govtrace verify`` (and, for now, ``govtrace retention``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    from govtrace.analytics.commands import add_source_arguments, parse_time
    from govtrace.analytics.evidence.redaction import PROFILES

    parser = subparsers.add_parser(
        "export", help="write a signed evidence bundle for one agent and window",
        description="Export one agent's events in [--since, --until) with their Merkle proofs against signed "
        "checkpoints, typed tables as Parquet, the readiness answers (HTML and OSCAL assessment-results), the SQL that "
        "reproduces every number, the registry entry and policies in force, completeness and redaction manifests, "
        "all under a DSSE-signed in-toto Statement. The export is recorded in the store's access log first.")
    parser.add_argument("--agent", required=True, help="the agent id (gen_ai.agent.id)")
    parser.add_argument("--since", required=True, type=parse_time, help="window start, inclusive (ISO 8601, or 7d ago)")
    parser.add_argument("--until", required=True, type=parse_time, help="window end, exclusive (ISO 8601, now, 1d)")
    parser.add_argument("--out", required=True, help="bundle directory to create, or a path ending in .zip")
    add_source_arguments(parser)
    parser.add_argument("--key-dir", help="ledger key directory that signs the bundle (default <db>.keys, or "
                                          "$GOVTRACE_KEY_DIR with --server)")
    parser.add_argument("--policy", action="append", default=[], metavar="FILE",
                        help="a policy file that was in force (repeatable); matched to decisions by version")
    parser.add_argument("--prices", metavar="FILE", help="price table for computed costs (default: the bundled one)")
    parser.add_argument("--redact", choices=sorted(PROFILES), default="none",
                        help="redaction profile: none (default) or content (withhold events carrying captured content)")
    parser.add_argument("--by", help="who exports (recorded; default $GOVTRACE_USER or the login name)")
    parser.add_argument("--wait-seal", type=float, default=None, metavar="SECONDS",
                        help="wait up to this long for a checkpoint to seal the window's latest events "
                             "(default 15 with --server, 0 with --db)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run_export)

    parser = subparsers.add_parser(
        "verify", help="verify an evidence bundle offline and print a pass/fail table",
        description="Check an evidence bundle with nothing but the ledger key's fingerprint, obtained out of band: "
        "signature, digests, checkpoints and their consistency, the inclusion proof of every event, sequence, typed "
        "columns, every table and figure re-run from queries.sql, readiness answers, OSCAL validity, registry, "
        "policies, completeness and redactions. Exits 1 on any failure. Needs no network.")
    parser.add_argument("bundle", help="bundle directory or .zip")
    parser.add_argument("--key-fingerprint", required=True, metavar="FP",
                        help="SHA-256 fingerprint of the ledger key you trust (from the operator, out of band)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.set_defaults(func=run_verify)

    from govtrace.collector import retention

    retention.add_parsers(subparsers)


def run_export(args: argparse.Namespace) -> int:
    import duckdb

    from govtrace.analytics.evidence.collect import StoreError
    from govtrace.analytics.evidence.export import ExportError, export_bundle
    from govtrace.analytics.reader import CollectorReader, ConnectionReader, ReaderError
    from govtrace.collector.cli import CliError
    from govtrace.collector.ledger.signing import KeyFileError, KeyStore

    by = args.by or os.environ.get("GOVTRACE_USER") or _login()
    server = args.server or (None if args.db else os.environ.get("GOVTRACE_SERVER"))
    con = None
    if server:
        reader = CollectorReader(server, user=by, purpose=f"evidence export agent {args.agent}")
        key_dir = args.key_dir or os.environ.get("GOVTRACE_KEY_DIR")
        if not key_dir:
            raise CliError("exporting through --server needs --key-dir (the ledger key directory) to sign the bundle")
    else:
        db = Path(args.db or os.environ.get("GOVTRACE_DB", "govtrace.duckdb"))
        if not db.exists():
            raise CliError(f"no database at {db}")
        try:
            # Read-write: the export is recorded in the access log before anything is read.
            con = duckdb.connect(str(db))
        except duckdb.IOException as exc:
            raise CliError(f"cannot open {db} ({exc}); a collector runs on it: export with --server URL") from None
        reader = ConnectionReader(con, source=f"file {db}")
        key_dir = args.key_dir or str(db) + ".keys"
    try:
        signer = KeyStore(key_dir).current()
    except (KeyFileError, OSError) as exc:
        raise CliError(f"cannot load the ledger key from {key_dir}: {exc}") from None
    wait = args.wait_seal if args.wait_seal is not None else (15.0 if server else 0.0)
    progress = None if args.json or not sys.stderr.isatty() else (lambda m: print(f"  {m}", file=sys.stderr))
    try:
        result = export_bundle(reader, args.agent, args.since, args.until, args.out, signer=signer,
                               policy_files=args.policy, redaction=args.redact, exported_by=by,
                               prices_file=args.prices, wait_seal_seconds=wait, progress=progress)
    except (ExportError, StoreError, ReaderError, FileExistsError, LookupError) as exc:
        raise CliError(str(exc)) from None
    finally:
        if con is not None:
            con.close()
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"wrote {result.path}: {result.events} events ({result.agent_events} of agent {args.agent}), "
              f"{result.files} files, {result.bytes / 1e6:.1f} MB in {result.seconds:.1f} s")
        if result.unsealed:
            print(f"warning: {result.unsealed} events of the agent in the window were not sealed yet and are not in "
                  "the bundle", file=sys.stderr)
        print(f"verify with: govtrace verify {result.path} --key-fingerprint {signer.public_key.fingerprint}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from govtrace.analytics.evidence.verify import verify_bundle
    from govtrace.collector.cli import CliError

    try:
        result = verify_bundle(args.bundle, args.key_fingerprint)
    except ValueError as exc:  # a fingerprint that is not one
        raise CliError(str(exc)) from None
    print(json.dumps(result.to_dict()) if args.json else result.table())
    return 0 if result.ok else 1


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
