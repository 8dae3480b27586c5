"""Render the ``govtrace`` command tree as Markdown: ``python -m govtrace.collector.cli_reference``.

docs/cli.md is this output, committed; a test fails when a command or option is missing from it,
so regenerate with ``make docs`` after changing the CLI.
"""

from __future__ import annotations

import argparse

from govtrace.collector.cli import build_parser


def render() -> str:
    parser = build_parser()
    lines = [
        "# Command reference",
        "",
        "Generated from the code by `make docs`; every command accepts `--help`.",
        "",
    ]
    for name, sub in _subcommands(parser).items():
        lines += [f"## `govtrace {name}`", "", (sub.description or sub.format_usage()).strip(), "", "```"]
        lines.append(sub.format_usage().strip().replace("usage: ", ""))
        lines.append("```")
        rows = [_row(action) for action in sub._actions if not isinstance(action, argparse._HelpAction)]
        rows = [row for row in rows if row]
        if rows:
            lines += ["", "| argument | meaning |", "|---|---|", *rows]
        lines.append("")
    return "\n".join(lines)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _row(action: argparse.Action) -> str:
    name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
    meaning = (action.help or "").replace("|", "\\|")
    if action.choices and not action.option_strings:
        meaning = f"one of {', '.join(map(str, action.choices))}. {meaning}".strip()
    elif action.choices:
        meaning += f" (one of {', '.join(map(str, action.choices))})"
    if action.default not in (None, False, argparse.SUPPRESS) and "default" not in meaning:
        meaning += f" (default {action.default})"
    return f"| {name} | {meaning} |"


if __name__ == "__main__":
    print(render())
