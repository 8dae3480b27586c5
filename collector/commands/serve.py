"""``govtrace serve``: run the collector until interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from govtrace.collector.config import ConfigError, load_config


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the collector: OTLP/gRPC and OTLP/HTTP in, durable DuckDB store, read API",
        description="Receive OTLP traces over gRPC and HTTP and store them durably in one DuckDB file. "
        "Settings come from flags, GOVTRACE_* environment variables and --config, in that precedence.",
    )
    parser.add_argument("--db", help="DuckDB file to own (default ./govtrace.duckdb)")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="OTLP/gRPC listen address (default 127.0.0.1:4317)")
    parser.add_argument("--http", metavar="HOST:PORT", help="OTLP/HTTP and read API address (default 127.0.0.1:4318)")
    parser.add_argument("--config", metavar="FILE", help="YAML file of settings (see docs/configuration.md)")
    parser.add_argument("--json", action="store_true", help="print the listening addresses as one JSON line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from govtrace.collector.cli import CliError
    from govtrace.collector.server import Collector

    try:
        config = load_config(args.config, {"db": args.db, "grpc": args.grpc, "http": args.http})
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    collector = Collector(config)
    try:
        collector.start()
    except ConfigError as exc:
        collector.stop()
        raise CliError(str(exc)) from None
    except OSError as exc:
        collector.stop()
        raise CliError(f"cannot start the collector: {exc}") from None
    try:
        ready = {"db": config.db, "grpc": collector.grpc_endpoint, "http": collector.http_url}
        if args.json:
            print(json.dumps(ready), flush=True)
        else:
            print(f"govtrace collector ready: db={config.db} grpc={ready['grpc']} http={ready['http']}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        collector.stop()
    return 0
