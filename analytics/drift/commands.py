"""``govtrace drift fit | score | report | evaluate``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from govtrace.analytics.commands import add_source_arguments, parse_time


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "drift", help="behavioural drift and anomaly detection per agent (IsolationForest baselines)",
        description="Fit per-agent baselines of task behaviour, score new tasks against them, and report alerts, "
        "drift alarms and model version changes. Results live in a side file next to the database.",
    )
    commands = parser.add_subparsers(dest="drift_command", metavar="ACTION")

    fit = commands.add_parser("fit", help="fit a baseline per agent on a window of tasks",
                              description="Fit and store a new baseline version for each agent on its tasks "
                              "in [--since, --until). Fewer than --min-tasks tasks is a cold start.")
    _agent_arguments(fit)
    fit.add_argument("--since", type=parse_time, help="baseline window start (default: the beginning)")
    fit.add_argument("--until", type=parse_time, help="baseline window end, exclusive (default: now)")
    fit.add_argument("--exclude-model", action="append", default=[], metavar="MODEL",
                     help="leave tasks of this model version out of the baseline (repeatable)")
    fit.add_argument("--min-tasks", type=int, default=30, help="fewer baseline tasks is a cold start (default 30)")
    fit.add_argument("--seed", type=int, default=0, help="seed of folds, forests and calibration (default 0)")
    fit.add_argument("--trees", type=int, default=200, help="trees per IsolationForest (default 200)")
    fit.add_argument("--alert-fpr", type=float, default=0.01,
                     help="share of baseline-like tasks allowed to alert; sets the threshold (default 0.01)")
    _common(fit)
    fit.set_defaults(func=run_fit)

    score = commands.add_parser("score", help="score tasks since each agent's baseline and store alerts",
                                description="Score every task after the baseline window (or --since) against the "
                                "agent's latest baseline; store scores, alerts, drift and model-change events.")
    _agent_arguments(score)
    score.add_argument("--since", type=parse_time, help="score tasks from here (default: the baseline's end)")
    score.add_argument("--until", type=parse_time, help="score tasks before this (default: now)")
    _common(score)
    score.set_defaults(func=run_score)

    report = commands.add_parser("report", help="baselines, alerts with the features that moved, drift, models",
                                 description="Report per agent: baseline (version, window, cold start), model "
                                 "version changes, top task alerts naming the features that moved and by how "
                                 "much, drift alarms, and behaviour per hour or day.")
    _agent_arguments(report)
    report.add_argument("--window", choices=("hour", "day"), default="day", help="window of the time table")
    report.add_argument("--limit", type=int, default=10, help="task alerts to show per agent (default 10)")
    report.add_argument("--db", metavar="PATH", help="the database whose drift side file to read")
    report.add_argument("--drift-file", metavar="PATH", help="the drift side file (default <db>.drift.duckdb)")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.set_defaults(func=run_report)

    evaluate = commands.add_parser(
        "evaluate", help="replay AgentDojo, tau-bench and ODDS through a real collector and measure the detector",
        description="Replay the recorded runs as OTLP into an in-process collector on a temporary database, read "
        "features back through its read API, and report ROC-AUC, PR-AUC, TPR at 1%% FPR (leave one model out), "
        "model-update detection delay, the tau-bench false-positive rate and the ODDS sanity check.")
    evaluate.add_argument("--data", metavar="PATH", help="datasets folder (default ../shared/datasets from the repo root)")
    evaluate.add_argument("--workdir", metavar="PATH", help="keep the replay database and labels here (default: a temp dir)")
    evaluate.add_argument("--quick", action="store_true", help="a slice of each scenario: a smoke run, not figures")
    evaluate.add_argument("--splits", type=int, default=10, help="random task splits of the model-update stream")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--no-odds", action="store_true", help="skip the ODDS sanity check")
    evaluate.add_argument("--out", metavar="FILE", help="also write the full JSON result here")
    evaluate.add_argument("--json", action="store_true", help="print the full result as JSON")
    evaluate.set_defaults(func=run_evaluate)
    parser.set_defaults(func=lambda args: _help(parser))


def _agent_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", action="append", metavar="AGENT_ID",
                        help="only this agent (repeatable; default: every agent)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drift-file", metavar="PATH",
                        help="where baselines and scores are kept (default <db>.drift.duckdb, or "
                        "govtrace.drift.duckdb when reading through a collector)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_source_arguments(parser)


def run_fit(args: argparse.Namespace) -> int:
    from govtrace.analytics.drift.detector import DetectorParams
    from govtrace.analytics.drift.jobs import fit_agents

    params = DetectorParams(trees=args.trees, seed=args.seed, min_tasks=args.min_tasks, alert_fpr=args.alert_fpr)
    reader = _reader(args, "drift fit")
    with _store(args) as store:
        fitted = _guard(lambda: fit_agents(reader, store, args.agent, since=args.since, until=args.until,
                                           exclude_models=tuple(args.exclude_model), params=params,
                                           progress=_progress(args)))
    if args.json:
        print(json.dumps({"drift_file": store.path, "baselines": fitted}, indent=2, default=str))
        return 0
    if not fitted:
        print("no agents with tasks in that window")
        return 1
    for base in fitted:
        state = (f"threshold {base['threshold']:.3f}" if base["status"] == "ready"
                 else f"COLD START (fewer than {base['min_tasks']} tasks: no alerts until refitted)")
        print(f"{base['agent_id']}: baseline v{base['version']} on {base['tasks']} tasks, seed {base['seed']}, {state}; "
              f"models {', '.join(base['models']) or 'none recorded'}")
    print(f"stored in {store.path}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from govtrace.analytics.drift.jobs import score_agents

    reader = _reader(args, "drift score")
    with _store(args) as store:
        summaries = _guard(lambda: score_agents(reader, store, args.agent, since=args.since, until=args.until,
                                                progress=_progress(args)))
    if args.json:
        print(json.dumps({"drift_file": store.path, "agents": summaries}, indent=2, default=str))
        return 0
    for item in summaries:
        if item["status"] == "no_baseline":
            print(f"{item['agent_id']}: {item['message']}")
            continue
        line = (f"{item['agent_id']} (baseline v{item['version']}): {item['tasks_scored']} tasks scored, "
                f"{item['alerts']} alerts, {item['drift_alarms']} drift alarms")
        print(line)
        if item["message"]:
            print(f"  ! {item['message']}")
        for change in item["model_changes"]:
            print(f"  ! model version change: {change['model']} ({change['tasks']} tasks), baseline had "
                  f"{', '.join(change['baseline_models']) or 'none'}")
    print(f"details: govtrace drift report --drift-file {store.path}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from govtrace.analytics.drift.report import build_report, render
    from govtrace.analytics.drift.store import DriftStore
    from govtrace.collector.cli import CliError

    try:
        store = DriftStore(_drift_path(args), read_only=True)
    except (FileNotFoundError, OSError) as exc:
        raise CliError(str(exc)) from None
    from govtrace.analytics.drift.store import StaleBaseline

    with store:
        try:
            reports = build_report(store, args.agent, window=args.window, limit=args.limit)
        except StaleBaseline as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(reports, indent=2, default=str))
    else:
        sys.stdout.write(render(reports))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from govtrace.analytics.drift.detector import DetectorParams
    from govtrace.analytics.drift.evaluate import DEFAULT_DATA, evaluate, render_summary
    from govtrace.collector.cli import CliError

    data = Path(args.data) if args.data else DEFAULT_DATA
    if not (data / "agentdojo").is_dir():
        raise CliError(f"no datasets at {data}: pass --data PATH (the folder holding agentdojo/, tau_bench/, odds/)")
    result = evaluate(data, workdir=Path(args.workdir) if args.workdir else None, params=DetectorParams(seed=args.seed),
                      quick=args.quick, splits=args.splits, progress=sys.stderr.isatty(), odds=not args.no_odds)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str) if args.json else render_summary(result))
    return 0


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _drift_path(args: argparse.Namespace) -> str:
    from govtrace.analytics.drift.store import default_path

    return args.drift_file or os.environ.get("GOVTRACE_DRIFT_FILE") or default_path(
        getattr(args, "db", None) or (None if getattr(args, "server", None) else os.environ.get("GOVTRACE_DB")))


def _store(args: argparse.Namespace):
    from govtrace.analytics.drift.store import DriftStore
    from govtrace.collector.cli import CliError

    try:
        return DriftStore(_drift_path(args))
    except Exception as exc:  # a locked or unreadable side file: say which, no traceback
        raise CliError(f"cannot open the drift file {_drift_path(args)}: {exc}") from None


def _reader(args: argparse.Namespace, purpose: str):
    from govtrace.analytics.reader import ReaderError, open_reader
    from govtrace.collector.cli import CliError

    try:
        return open_reader(args.db, args.server, purpose=purpose)
    except ReaderError as exc:
        raise CliError(str(exc)) from None


def _guard(job) -> Any:
    from govtrace.analytics.drift.store import StaleBaseline
    from govtrace.analytics.reader import ReaderError
    from govtrace.collector.cli import CliError

    try:
        return job()
    except (ReaderError, StaleBaseline) as exc:
        raise CliError(str(exc)) from None


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()
