"""The ``govtrace`` command: one entry point, each subcommand in the module that owns it.

Subcommands register themselves from their own modules (``add_parser(subparsers)``); this file
only wires them, so ``govtrace --help`` lists everything and each command's code stays with its
room (collector, analytics, dashboard).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (module, description). Modules are imported lazily so that an agent-only install, without the
# server extra, still gets a clear message instead of an ImportError trace.
COMMAND_MODULES = [
    "govtrace.collector.commands.serve",
    "govtrace.collector.commands.demo",
    "govtrace.collector.commands.bench",
    "govtrace.collector.commands.ledger",
    "govtrace.analytics.commands",
    "govtrace.analytics.drift.commands",
    "govtrace.analytics.evidence.commands",
    "govtrace.dashboard.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="govtrace",
        description="OpenTelemetry-native flight recorder and audit backend for AI agents.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("govtrace"):
                continue  # that room has no commands yet
            missing = exc.name
            stub = subparsers.add_parser(name.rsplit(".", 1)[-1], help=f"(unavailable: {missing} not installed)")
            stub.set_defaults(func=lambda args, m=missing: _missing_extra(m))
            continue
        module.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except CliError as exc:
        print(f"govtrace: error: {exc}", file=sys.stderr)
        return 2


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _missing_extra(module: str | None) -> int:
    print(
        f"govtrace: this command needs the server dependencies ({module} is missing): "
        "pip install 'govtrace[server]'",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    # Run through the importable module, so that ``CliError`` raised by commands (which import
    # ``govtrace.collector.cli``) is the same class this entry point catches.
    sys.exit(importlib.import_module("govtrace.collector.cli").main())
