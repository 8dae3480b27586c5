"""Subcommands owned by analytics: ``ask``, ``readiness``, ``chain``, ``agents``, ``escalations``, ``views``.

Every command reads through a running collector (``--server``, or the local one when it answers)
or a database file no collector runs on (``--db``), prints a human table by default, and the full
answer with its evidence span ids and SQL with ``--json`` (or the rows with ``--csv``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from govtrace.analytics.reader import DEFAULT_DB, DEFAULT_SERVER, ReaderError, collector_is_up, open_reader
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
    _subject_arguments(parser)
    _registry_arguments(parser)
    _output_arguments(parser, "the answer")
    parser.add_argument("--limit", type=int, default=50, help="rows to print in the table view (default 50)")
    add_source_arguments(parser)
    parser.set_defaults(func=run_ask)

    parser = subparsers.add_parser(
        "readiness", help="the five readiness answers for an agent (or the fleet), with a verdict per question",
        description="Actions, authorization, data, cost and boundaries for one agent or the fleet over a window: "
        "a verdict per question, what the telemetry covers and what it misses, and the evidence span ids.",
    )
    _subject_arguments(parser)
    _registry_arguments(parser)
    _output_arguments(parser, "the report", csv_help="print the per-question summary as CSV")
    parser.add_argument("--limit", type=int, default=10, help="rows to print per question (default 10)")
    add_source_arguments(parser)
    parser.set_defaults(func=run_readiness)

    parser = subparsers.add_parser(
        "chain", help="show the decision chain of one task across agents and traces",
        description="Who delegated to whom, each tool call with its policy decision, approvals (also those "
        "recorded later in other traces) and outcome, in order.",
    )
    parser.add_argument("trace_id")
    parser.add_argument("--horizon-days", type=float, default=1.0,
                        help="how long after the task to look for related traces (default 1)")
    _output_arguments(parser, "the chain", csv_help="print the steps as CSV")
    add_source_arguments(parser)
    parser.set_defaults(func=run_chain)

    parser = subparsers.add_parser(
        "agents", help="agent inventory: registry (agents.yaml) against telemetry, with findings",
        description="Shadow, abandoned, ownerless and overdue agents, unused grants (removal candidates) and "
        "ungranted use (violations). Each run records the registry version it loaded in the store.",
    )
    parser.add_argument("--registry", metavar="FILE", help="agent registry (default ./agents.yaml when present, "
                        "else the last registry recorded in the store)")
    parser.add_argument("--now", type=parse_time, help="judge as of this time (default now)")
    parser.add_argument("--since", type=parse_time, help="judge tool use from this time (default now - unused days)")
    parser.add_argument("--silent-days", type=int, default=30, help="silence that makes an agent abandoned (30)")
    parser.add_argument("--review-days", type=int, default=90, help="review interval (90)")
    parser.add_argument("--unused-days", type=int, default=30, help="unused grants become removal candidates (30)")
    parser.add_argument("--no-record", action="store_true", help="do not record this registry load in the store")
    parser.add_argument("--history", action="store_true", help="list the registry versions recorded in the store")
    parser.add_argument("--table", choices=("findings", "agents"), default="findings",
                        help="what --csv prints (default findings)")
    _output_arguments(parser, "the inventory")
    add_source_arguments(parser)
    parser.set_defaults(func=run_agents)

    parser = subparsers.add_parser(
        "escalations", help="escalations per tier: time to decision, SLA breaches, approvers, still open",
        description="Per tier: time to decision, SLA breaches, auto-denies, approvers and decisions per approver, "
        "and the escalations still open.",
    )
    _subject_arguments(parser)
    parser.add_argument("--now", type=parse_time, help="judge open escalations as of this time (default now)")
    parser.add_argument("--table", choices=("tiers", "escalations", "approvers", "open"), default="tiers",
                        help="what --csv prints (default tiers)")
    _output_arguments(parser, "the answer")
    add_source_arguments(parser)
    parser.set_defaults(func=run_escalations)

    parser = subparsers.add_parser(
        "views", help="print the documented SQL views behind every answer",
        description="Print analytics/views.sql: the documented views (canonical spans, actions, escalations, "
        "data access, span costs, agent activity, permission use, span links) that the answers are built on.",
    )
    parser.add_argument("--list", action="store_true", help="print only each view's name and what a row means")
    parser.set_defaults(func=run_views)


def _subject_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", help="agent id (default: the whole fleet)")
    parser.add_argument("--since", type=parse_time, help="window start, inclusive (default: the beginning)")
    parser.add_argument("--until", type=parse_time, help="window end, exclusive (default: now)")


def _registry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", metavar="FILE", help="agent registry with cost envelopes (default "
                        "./agents.yaml when present, else the last registry recorded in the store)")
    parser.add_argument("--prices", metavar="FILE", help="model price table (default analytics/prices.yaml)")


def _output_arguments(parser: argparse.ArgumentParser, what: str, csv_help: str = "print the rows as CSV") -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help=f"print {what} as JSON, with evidence and SQL")
    output.add_argument("--csv", action="store_true", help=csv_help)


# --- commands ---------------------------------------------------------------------------------------

def run_ask(args: argparse.Namespace) -> int:
    reader = _reader(args, f"ask {args.question} {args.agent or 'fleet'}")
    kwargs: dict[str, Any] = {"agent": args.agent, "since": args.since, "until": args.until}
    if args.question == "cost":
        kwargs.update(_cost_inputs(args, reader))
    answer = _guard(lambda: ask(args.question, reader, **kwargs))
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2, default=str))
    elif args.csv:
        answer.rows.to_csv(sys.stdout, index=False)
    else:
        print(render_answer(answer, args.limit))
    return 0


def run_readiness(args: argparse.Namespace) -> int:
    from govtrace.analytics.readiness import readiness

    reader = _reader(args, f"readiness {args.agent or 'fleet'}")
    inputs = _cost_inputs(args, reader)
    report = _guard(lambda: readiness(reader, args.agent, args.since, args.until, **inputs))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return 0
    if args.csv:
        report.summary.to_csv(sys.stdout, index=False)
        return 0
    who = f"agent {args.agent}" if args.agent else "the fleet"
    print(f"Readiness of {who}, {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC: {report.status}")
    for question, answer in report.answers.items():
        print(f"  {question:<14} {answer.status:<9} {answer.verdict}")
    print()
    for answer in report.answers.values():
        print(render_answer(answer, args.limit))
        print()
    return 0


def run_chain(args: argparse.Namespace) -> int:
    from govtrace.analytics.chain import chain

    reader = _reader(args, f"chain {args.trace_id}")
    result = _guard(lambda: chain(reader, args.trace_id, horizon_days=args.horizon_days))
    found = 0 if len(result.steps) else 1
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return found
    if args.csv:
        result.steps.to_csv(sys.stdout, index=False)
        return found
    print(render_chain(result))
    return found


def run_agents(args: argparse.Namespace) -> int:
    from govtrace.analytics import registry as reg
    from govtrace.analytics.inventory import inventory
    from govtrace.collector.cli import CliError

    if args.history:
        frame = _guard(lambda: reg.history(_reader(args, "agents history")))
        _print_frame(frame, args)
        return 0
    try:
        loaded = reg.find_registry(args.registry)
    except reg.RegistryError as exc:
        raise CliError(str(exc)) from None
    if loaded is not None and not args.no_record:
        kind, target = _target(args)
        if kind == "db" and not os.path.exists(target):
            raise CliError(f"no govtrace database at {target}: run 'govtrace serve' or 'make demo' first")
        try:
            span_id = reg.record_load(loaded, **{kind: target})
        except (reg.RegistryError, OSError, RuntimeError) as exc:
            raise CliError(f"could not record the registry load in {target}: {exc} (--no-record skips it)") from None
        print(f"registry {loaded.path} version {loaded.version[:12]} recorded (span {span_id})", file=sys.stderr)
    reader = _reader(args, "agents inventory")
    if loaded is None:
        loaded = _guard(lambda: reg.registry_at(reader))
        if loaded is None:
            raise CliError("no registry: pass --registry agents.yaml (none in this folder, none recorded in the store)")
        print(f"using the registry recorded at {loaded.loaded_at:%Y-%m-%d %H:%M} (version {loaded.version[:12]})",
              file=sys.stderr)
    answer = _guard(lambda: inventory(reader, loaded, now=args.now, since=args.since, silent_days=args.silent_days,
                                      review_days=args.review_days, unused_days=args.unused_days))
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2, default=str))
    elif args.csv:
        (answer.rows if args.table == "findings" else answer.tables["agents"]).to_csv(sys.stdout, index=False)
    else:
        print(f"[agents] {answer.verdict}")
        print(f"  registry {loaded.path or '(recorded)'} version {loaded.version[:12]}")
        for note in answer.coverage:
            print(f"  ! {note}")
        print(_table(answer.tables["agents"].drop(columns=["sponsor", "first_seen"])))
        if len(answer.rows):
            print("\nFindings:")
            print(_table(answer.rows[["severity", "finding", "agent_id", "detail"]]))
    return 0


def run_escalations(args: argparse.Namespace) -> int:
    from govtrace.analytics.escalations import escalations

    reader = _reader(args, f"escalations {args.agent or 'fleet'}")
    answer = _guard(lambda: escalations(reader, args.agent, args.since, args.until, now=args.now))
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2, default=str))
    elif args.csv:
        (answer.rows if args.table == "tiers" else answer.tables[args.table]).to_csv(sys.stdout, index=False)
    else:
        print(render_answer(answer))
        for name in ("approvers", "open"):
            if len(answer.tables[name]):
                print(f"  {name}:")
                print(_table(answer.tables[name].drop(columns=[c for c in ("task", "resolution_trace_id", "age_s")
                                                               if c in answer.tables[name]])))
    return 0


def run_views(args: argparse.Namespace) -> int:
    from govtrace.analytics.costs import load_prices
    from govtrace.analytics.views import VIEWS_FILE, definitions

    if args.list:
        for view in definitions().values():
            print(f"{view.name}\n    {view.doc}\n")
        return 0
    prices = load_prices()
    print(f"-- view: model_prices\n-- The offline price table, version {prices.version} (as of {prices.as_of}); "
          f"the analytics also match dated\n-- and provider-prefixed model names (docs/analytics.md).\n"
          f"CREATE OR REPLACE VIEW model_prices AS\n{prices.relation()};\n")
    print(VIEWS_FILE.read_text(), end="")
    return 0


# --- rendering ----------------------------------------------------------------------------------------

def render_answer(answer: Answer, limit: int = 50) -> str:
    lines = [f"[{answer.question}] {answer.verdict}", f"  status: {answer.status}",
             f"  {answer.coverage_statement()}"]
    for note in answer.coverage:
        lines.append(f"  ! {note}")
    if len(answer.rows):
        shown = answer.rows.head(limit)
        hidden = [c for c in ("arguments_digest", "evidence", "span_ids", "recorded_by") if c in shown.columns]
        lines.append(_table(shown.drop(columns=hidden)))
        if len(answer.rows) > limit:
            lines.append(f"  ... {len(answer.rows) - limit} more rows (--json or --csv for all)")
    extra = answer.extra or {}
    if extra.get("breaches"):
        lines.append("  envelope breaches:")
        lines.extend(f"    {b['agent_id']} {b['period']} {b['at']}: {b['cost']:.4f} > {b['limit']:g}"
                     for b in extra["breaches"])
    if extra.get("anomalies"):
        lines.append("  cost anomalies (cost per task above the agent's baseline):")
        lines.extend(f"    {a['agent_id']} {str(a['day'])[:10]}: {a['cost_per_task']:.4f} per task, baseline "
                     f"{a['baseline_cost_per_task']:.4f}" for a in extra["anomalies"])
    if extra.get("prices") and answer.completeness.get("computed"):
        p = extra["prices"]
        lines.append(f"  computed costs use price table {p['version']} (as of {p['as_of']}; {p['source']})")
    lines.append(f"  evidence: {len(answer.evidence)} span ids (--json lists them)")
    return "\n".join(lines)


def render_chain(result) -> str:
    lines = [f"Decision chain of task {result.trace_id}"]
    if len(result.traces) > 1:
        lines.append(f"  {len(result.traces)} traces: " + ", ".join(
            f"{t['trace_id'][:12]}… ({t['relation']})" for t in result.traces))
    if result.delegations:
        lines.append("Delegations:")
        for d in result.delegations:
            how = " (inferred)" if d.get("inferred") else ""
            acting = f", acting for {d['acting_for']}" if d.get("acting_for") and d["acting_for"] != d["from"] else ""
            depth = f", depth {d['depth']}" if d.get("depth") is not None else ""
            lines.append(f"  {d['from']} -> {d['to']}{acting}{depth}{how}")
    if len(result.steps):
        view = result.steps.copy()
        view["what"] = ["  " * int(d) + str(n) for d, n in zip(view["depth"], _what(view), strict=True)]
        view["policy"] = [_policy(r) for r in view.to_dict("records")]
        lines.append(_table(view[["order", "start_time", "agent_id", "what", "policy", "approval", "approver_id",
                                  "outcome", "span_id"]]))
    for note in result.coverage:
        lines.append(f"  ! {note}")
    return "\n".join(lines)


def _what(steps: pd.DataFrame) -> list[str]:
    out = []
    for row in steps.to_dict("records"):
        if row["step"] == "tool call" and isinstance(row["tool_name"], str):
            out.append(f"tool {row['tool_name']}")
        elif row["step"] == "approval":
            out.append(f"approval {row['escalation_id'] or ''}".strip())
        else:
            out.append(str(row["name"]))
    return out


def _policy(row: dict[str, Any]) -> str:
    if not isinstance(row.get("policy_effect"), str):
        return "no policy check" if row["step"] == "tool call" else ""
    tier = row.get("policy_tier")
    tier_text = f" t{int(tier)}" if tier is not None and not pd.isna(tier) else ""
    rule = f" {row['policy_rule_id']}" if isinstance(row.get("policy_rule_id"), str) else ""
    return f"{row['policy_effect']}{tier_text}{rule}"


def _table(frame: pd.DataFrame) -> str:
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    return frame.to_string(index=False, na_rep="-", max_colwidth=48)


def _print_frame(frame: pd.DataFrame, args: argparse.Namespace) -> None:
    if args.json:
        from govtrace.analytics.readiness import _records

        print(json.dumps(_records(frame), indent=2, default=str))
    elif args.csv:
        frame.to_csv(sys.stdout, index=False)
    else:
        print(_table(frame) if len(frame) else "no registry load recorded")


# --- inputs -----------------------------------------------------------------------------------------------

def _cost_inputs(args: argparse.Namespace, reader) -> dict[str, Any]:
    """Envelopes (--registry, ./agents.yaml, else the last registry recorded) and the price table."""
    from govtrace.analytics import registry as reg
    from govtrace.analytics.costs import PriceError, load_prices
    from govtrace.collector.cli import CliError

    try:
        loaded = reg.find_registry(getattr(args, "registry", None))
        prices = load_prices(getattr(args, "prices", None))
    except (reg.RegistryError, PriceError) as exc:
        raise CliError(str(exc)) from None
    if loaded is None:
        loaded = _guard(lambda: reg.registry_at(reader))
    return {"envelopes": loaded.envelopes() if loaded else None, "prices": prices}


def _reader(args: argparse.Namespace, purpose: str):
    from govtrace.collector.cli import CliError

    try:
        return open_reader(args.db, args.server, purpose=purpose)
    except ReaderError as exc:
        raise CliError(str(exc)) from None


def _target(args: argparse.Namespace) -> tuple[str, str]:
    """Where a write (a registry load event) goes: the same place ``open_reader`` would read."""
    if args.server:
        return "server", args.server
    if args.db:
        return "db", args.db
    if os.environ.get("GOVTRACE_SERVER"):
        return "server", os.environ["GOVTRACE_SERVER"]
    if collector_is_up(DEFAULT_SERVER):
        return "server", DEFAULT_SERVER
    return "db", os.environ.get("GOVTRACE_DB", DEFAULT_DB)


def _guard(call):
    from govtrace.collector.cli import CliError

    try:
        return call()
    except ReaderError as exc:
        raise CliError(str(exc)) from None

