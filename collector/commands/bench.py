"""``govtrace bench``: benchmarks whose figures go into the notes, never into timed tests.

Each benchmark lives with the room it measures; this module only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics

# name -> (module, function, help). Each function takes the parsed args and returns a dict of figures.
BENCHMARKS = {
    "ingest": ("govtrace.collector.commands.bench", "_ingest", "durable spans/s end to end over gRPC"),
    "ingest-bare": ("govtrace.collector.commands.bench", "_ingest_bare", "the same with redaction off"),
    "ingest-hardened": ("govtrace.collector.commands.bench", "_ingest_hardened",
                        "the same with bearer-token authentication and every redaction detector on"),
    "overload": ("govtrace.collector.commands.bench", "_overload",
                 "far more load than the collector takes: refusals and peak memory against memory_limit_bytes"),
    "queries": ("govtrace.analytics.bench", "run_bench", "readiness, chain and fleet-cost query latency"),
    "instrumentation": ("govtrace.collector.commands.bench", "_instrumentation",
                        "overhead per tool call of instrumentation plus policy evaluation"),
    "drift": ("govtrace.analytics.drift.bench", "run_bench", "drift scoring time for 1M spans"),
    "export": ("govtrace.analytics.evidence.bench", "run_bench", "evidence export of 1M events"),
}


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark and print its figures",
                                   description="Benchmarks of this machine; print figures (--json for one object).")
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--seconds", type=float, default=20.0, help="ingest/overload: measuring time (default 20)")
    parser.add_argument("--senders", type=int, default=2, help="ingest/overload: sender processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="ingest/overload: requests in flight per sender (default 8; overload 64)")
    parser.add_argument("--spans-per-request", type=int, default=None,
                        help="ingest/overload: spans per Export (default 512; overload 4096)")
    parser.add_argument("--spans", type=int, default=None, help="queries/drift/export: data size in spans")
    parser.add_argument("--db", help="DuckDB file to use (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions for median figures")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from govtrace.collector.cli import CliError

    module_name, function, _ = BENCHMARKS[args.benchmark]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise CliError(f"benchmark {args.benchmark} is not available: {exc}") from None
    figures = getattr(module, function)(args)
    if args.json:
        print(json.dumps(figures, default=str))
    else:
        for key, value in figures.items():
            print(f"{key:>32}: {value}")
    return 0


def _ingest(args: argparse.Namespace, mode: str = "plain") -> dict:
    from govtrace.collector.bench_ingest import run_ingest_bench

    runs = [run_ingest_bench(seconds=args.seconds, senders=args.senders, concurrency=args.concurrency or 8,
                             spans_per_request=args.spans_per_request or 512, db=args.db if args.repeat is None else None,
                             progress=not args.json, mode=mode)
            for _ in range(args.repeat or 1)]
    if len(runs) == 1:
        return runs[0]
    # Repeated runs on a shared machine: the median of each figure, and every run's throughput.
    figures = {key: _median([run[key] for run in runs]) for key in runs[0]}
    figures["runs_durable_spans_per_second"] = [run["durable_spans_per_second"] for run in runs]
    return figures


def _ingest_bare(args: argparse.Namespace) -> dict:
    return _ingest(args, "bare")


def _ingest_hardened(args: argparse.Namespace) -> dict:
    return _ingest(args, "hardened")


def _overload(args: argparse.Namespace) -> dict:
    from govtrace.collector.bench_ingest import run_overload_bench

    return run_overload_bench(seconds=args.seconds, senders=args.senders, concurrency=args.concurrency or 64,
                              spans_per_request=args.spans_per_request or 4096, db=args.db, progress=not args.json)


def _median(values: list) -> object:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return statistics.median(numbers) if len(numbers) == len(values) else values[0]


def _instrumentation(args: argparse.Namespace) -> dict:
    from govtrace.instrumentation.policy.bench import bench_policy_overhead

    return bench_policy_overhead(n=args.repeat or 20_000)
