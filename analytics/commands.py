"""Subcommands owned by analytics: ``ask`` and ``chain``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from govtrace.analytics.reader import ReaderError, open_reader
from govtrace.analytics.readiness import QUESTIONS, Answer, ask

_RELATIVE = re.compile(r"^-?(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str | None) -> datetime | None:
    """ISO 8601 (``2026-11-21``, ``2026-11-21T10:00Z``), ``now``, or relative (``24h``, ``-7d``: ago)."""
    if text is None:
        return None
    text = text.strip()
    if text == "now":
        return datetime.now(UTC)
    match = _RELATIVE.match(text)
    if match:
        return datetime.now(UTC) - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-21T10:00Z), 'now', or relative like 24h or 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where to read")
    group.add_argument("--db", metavar="PATH", help="read this DuckDB file (only when no collector runs on it)")
    group.add_argument("--server", metavar="URL",
                       help="read through a running collector (default: http://127.0.0.1:4318 when it answers)")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ask", help="answer a readiness question: actions, authorization, data, cost, boundaries",
        description="Answer one of the five readiness questions for an agent (or the fleet) over a window.",
    )
    parser.add_argument("question", choices=QUESTIONS)
    parser.add_argument("--agent", help="agent id (default: the whole fleet)")
    parser.add_argument("--since", type=parse_time, help="window start, inclusive (default: the beginning)")
    parser.add_argument("--until", type=parse_time, help="window end, exclusive (default: now)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the answer as JSON")
    output.add_argument("--csv", action="store_true", help="print the answer's rows as CSV")
    parser.add_argument("--limit", type=int, default=50, help="rows to print in the table view (default 50)")
    add_source_arguments(parser)
    parser.set_defaults(func=run_ask)

    parser = subparsers.add_parser(
        "chain", help="show the decision chain of one task (trace) across agents",
        description="Who delegated to whom, each tool call with its policy decision, approvals and outcome.",
    )
    parser.add_argument("trace_id")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the chain as JSON")
    output.add_argument("--csv", action="store_true", help="print the steps as CSV")
    add_source_arguments(parser)
    parser.set_defaults(func=run_chain)


def _reader(args: argparse.Namespace, purpose: str):
    from govtrace.collector.cli import CliError

    try:
        return open_reader(args.db, args.server, purpose=purpose)
    except ReaderError as exc:
        raise CliError(str(exc)) from None


def run_ask(args: argparse.Namespace) -> int:
    from govtrace.collector.cli import CliError

    reader = _reader(args, f"ask {args.question} {args.agent or 'fleet'}")
    try:
        answer = ask(args.question, reader, agent=args.agent, since=args.since, until=args.until)
    except ReaderError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2, default=str))
    elif args.csv:
        answer.rows.to_csv(sys.stdout, index=False)
    else:
        print(render_answer(answer, args.limit))
    return 0


def run_chain(args: argparse.Namespace) -> int:
    from govtrace.analytics.chain import chain
    from govtrace.collector.cli import CliError

    reader = _reader(args, f"chain {args.trace_id}")
    try:
        result = chain(reader, args.trace_id)
    except ReaderError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 0 if len(result.steps) else 1
    if args.csv:
        result.steps.to_csv(sys.stdout, index=False)
        return 0 if len(result.steps) else 1
    print(f"Decision chain of task {result.trace_id}")
    if result.delegations:
        print("Delegations:")
        for d in result.delegations:
            print(f"  {d['from']} -> {d['to']} (acting for {d['acting_for'] or 'unknown'}, depth {d['depth']})")
    if len(result.steps):
        view = result.steps.copy()
        view["name"] = ["  " * int(d) + str(n) for d, n in zip(view["depth"], view["name"], strict=True)]
        print(_table(view[["order", "start_time", "agent_id", "name", "policy_effect", "policy_tier", "approval",
                           "approver_id", "outcome", "span_id"]]))
    for note in result.coverage:
        print(f"  ! {note}")
    return 0 if len(result.steps) else 1


def render_answer(answer: Answer, limit: int = 50) -> str:
    lines = [f"[{answer.question}] {answer.verdict}", f"  status: {answer.status}"]
    for note in answer.coverage:
        lines.append(f"  ! {note}")
    if len(answer.rows):
        shown = answer.rows.head(limit)
        lines.append(_table(shown.drop(columns=[c for c in ("arguments_digest",) if c in shown.columns])))
        if len(answer.rows) > limit:
            lines.append(f"  … {len(answer.rows) - limit} more rows (--json or --csv for all)")
    breaches = answer.extra.get("breaches") if answer.extra else None
    if breaches:
        lines.append("  envelope breaches:")
        lines.extend(f"    {b['agent_id']} {b['period']} {b['at']}: {b['cost']:.4f} > {b['limit']}" for b in breaches)
    lines.append(f"  evidence: {len(answer.evidence)} span ids (--json lists them)")
    return "\n".join(lines)


def _table(frame: pd.DataFrame) -> str:
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    return frame.to_string(index=False, na_rep="-", max_colwidth=40)


def jsonable(value: Any) -> Any:
    from govtrace.analytics.readiness import _jsonable

    return _jsonable(value)
