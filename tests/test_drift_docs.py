"""docs/drift.md keeps up with the code: every drift action, option and feature is documented."""

from __future__ import annotations

import argparse
from pathlib import Path

from govtrace.analytics.drift.detector import FEATURES
from govtrace.collector.cli import build_parser

DOC = Path(__file__).resolve().parent.parent / "docs" / "drift.md"


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_drift_action_and_option_is_documented():
    doc = DOC.read_text()
    missing = []
    for action, parser in _children(_children(build_parser())["drift"]).items():
        if f"govtrace drift {action}" not in doc:
            missing.append(action)
        missing += [f"{action} {option}" for a in parser._actions for option in a.option_strings
                    if option.startswith("--") and option != "--help" and f"`{option}" not in doc]
    assert missing == [], f"undocumented in docs/drift.md: {missing}"


def test_every_feature_is_documented():
    doc = DOC.read_text()
    assert [name for name in FEATURES if f"`{name}`" not in doc] == []
