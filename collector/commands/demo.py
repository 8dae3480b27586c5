"""``govtrace demo``: a collector on the default database, fed by a fleet of instrumented agents.

Starts the collector, drives the scripted fleet through one round of governed work, prints where
the data is, the five readiness answers for one agent and how to query more, then keeps the fleet
working gently until interrupted.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from importlib import resources
from pathlib import Path


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a collector fed by a demo fleet of six governed agents",
        description="Start the collector on the default DuckDB file, drive a fleet of instrumented agents through "
        "realistic governed work, and print the five readiness answers for one agent.",
    )
    parser.add_argument("--db", default="govtrace.duckdb", help="DuckDB file (default ./govtrace.duckdb)")
    parser.add_argument("--grpc", default="127.0.0.1:4317", metavar="HOST:PORT")
    parser.add_argument("--http", default="127.0.0.1:4318", metavar="HOST:PORT")
    parser.add_argument("--once", action="store_true", help="run one round of work, print, and exit")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between rounds of fleet work")
    parser.add_argument("--dashboard", action="store_true", help="also start the dashboard and print its URL")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from govtrace.analytics.commands import render_answer
    from govtrace.analytics.reader import ConnectionReader
    from govtrace.analytics.readiness import QUESTIONS, ask
    from govtrace.analytics.registry import envelopes, load_registry, record_load
    from govtrace.collector.cli import CliError
    from govtrace.collector.config import ConfigError, load_config
    from govtrace.collector.server import Collector
    from govtrace.instrumentation.demo_fleet import FOCUS_AGENT, Fleet, trickle

    try:
        config = load_config(None, {"db": args.db, "grpc": args.grpc, "http": args.http})
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        collector = Collector(config)
        collector.start()
    except OSError as exc:
        raise CliError(f"cannot start the collector ({exc}); is another collector running? "
                       "Stop it or pass --grpc/--http with free ports (port 0 picks one).") from None
    dashboard = None
    try:
        print(f"govtrace collector: db={config.db} grpc={collector.grpc_endpoint} http={collector.http_url}")
        registry = load_registry(EXAMPLE_REGISTRY)
        record_load(registry, server=collector.http_url, loaded_by="govtrace demo")
        fleet = Fleet(endpoint=f"http://{collector.grpc_endpoint}")
        traces = fleet.run_once()
        fleet.flush()
        reader = ConnectionReader(collector.store, source=config.db)
        _wait_visible(reader, traces)
        agent_envelopes = envelopes(reader)
        print(f"\nThe fleet's spans are stored durably in {config.db}.")
        print(f"Readiness answers for agent {FOCUS_AGENT}:\n")
        for question in QUESTIONS:
            print(render_answer(ask(question, reader, agent=FOCUS_AGENT, envelopes=agent_envelopes), limit=12))
            print()
        print("Query more (while this runs, commands read through the collector):")
        print(f"  govtrace ask boundaries --agent {FOCUS_AGENT} --server {collector.http_url}")
        print("  govtrace ask cost --since 24h --json")
        print(f"  govtrace agents --registry {EXAMPLE_REGISTRY}")
        print(f"  govtrace chain {traces.get('month_end_close', '<trace id>')}")
        if args.dashboard:
            from govtrace.dashboard.launch import start_dashboard

            dashboard = start_dashboard(collector.http_url, key_dir=str(config.key_path))
            print(f"\nDashboard: {dashboard.url}")
        if args.once:
            return 0
        print("\nThe fleet keeps working every few seconds. Press Ctrl-C to stop.", flush=True)
        worker = threading.Thread(target=trickle, args=(fleet, stop.is_set, args.every), daemon=True)
        worker.start()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            stop.set()
        worker.join(timeout=10)
        return 0
    finally:
        if dashboard is not None:
            dashboard.stop()
        try:
            fleet.shutdown()
        except Exception:  # noqa: BLE001 - shutting down; the collector must still close cleanly
            pass
        collector.stop()


EXAMPLE_REGISTRY = Path(str(resources.files("govtrace.analytics") / "examples" / "agents.yaml"))


def _wait_visible(reader, traces: dict[str, str], timeout: float = 15.0) -> None:
    """The exporters are asynchronous: wait until the round's last trace is readable."""
    target = traces.get("late_approval") or next(iter(traces.values()), None)
    deadline = time.monotonic() + timeout
    while target and time.monotonic() < deadline:
        if reader.query("SELECT count(*) AS n FROM spans WHERE trace_id = ?", [target]).iloc[0, 0]:
            return
        time.sleep(0.1)
