"""``govtrace dashboard``: the investigator's dashboard against a running collector."""

from __future__ import annotations

import argparse
import getpass
import signal
import sys
import threading


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard", help="open the investigator's dashboard on a running collector",
        description="Start the Streamlit dashboard. It reads only through the collector's read API (never the "
        "live database file) and records every view and export in the collector's access log.",
    )
    parser.add_argument("--server", metavar="URL",
                        help="the collector's HTTP URL (default: $GOVTRACE_SERVER or http://127.0.0.1:4318)")
    parser.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--users", metavar="FILE",
                        help="YAML list of users with roles (viewer, investigator, compliance); enables sign-in")
    parser.add_argument("--key-dir", metavar="DIR",
                        help="the ledger's key directory (<db>.keys), so the Evidence view exports signed bundles")
    parser.add_argument("--hash-password", action="store_true",
                        help="read a password and print its hash for the users file, then exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from govtrace.analytics.reader import DEFAULT_SERVER, collector_is_up
    from govtrace.collector.cli import CliError
    from govtrace.dashboard.auth import UsersFileError, hash_password, load_users
    from govtrace.dashboard.launch import DashboardError, start_dashboard

    if args.hash_password:
        password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if not password:
            raise CliError("an empty password cannot be hashed")
        print(hash_password(password))
        return 0
    server = (args.server or os.environ.get("GOVTRACE_SERVER") or DEFAULT_SERVER).rstrip("/")
    if not collector_is_up(server, timeout=2.0):
        raise CliError(f"no collector answers at {server}: start one with 'govtrace serve' (or 'make demo'), "
                       "or pass --server URL")
    if args.users:
        try:
            users = load_users(args.users)
        except UsersFileError as exc:
            raise CliError(str(exc)) from None
        print(f"Sign-in enabled for {len(users)} users from {args.users}")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be between 0 and 65535, got {args.port}")
    try:
        dashboard = start_dashboard(server, port=args.port, host=args.host, users_file=args.users,
                                    key_dir=args.key_dir)
    except DashboardError as exc:
        raise CliError(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"govtrace dashboard: {dashboard.url} (reading through {server}); Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(0.5):
            if dashboard.process.poll() is not None:
                raise CliError(f"the dashboard stopped unexpectedly:\n{dashboard.log_tail()}")
    except KeyboardInterrupt:
        pass
    finally:
        dashboard.stop()
    return 0
