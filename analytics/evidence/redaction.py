"""Redaction profiles: which events a bundle withholds, and the JSON Pointers that say why.

A leaf is the hash of an event's exact bytes, so an event cannot be partly shown and still proven:
redaction here means withholding the whole record. A withheld event stays in the proof by its leaf
hash (it is proven present, at its place in the log); its typed governance columns stay in
``events.parquet`` so the answers still count it, marked ``withheld`` because nothing in the bundle
can re-derive them. ``redactions.json`` lists each withheld seq with the pointers (OPA decision-log
style ``erased`` paths) of the content that caused it.

Profiles:
- ``none``: every record disclosed (content capture is off by default in the instrumentation, and
  instrumentation redacts secrets before export when it is on);
- ``content``: withhold events that carry captured content: tool arguments and results, prompts,
  completions and messages, in any of the conventions the collector understands.
"""

from __future__ import annotations

from typing import Any

PROFILES = {
    "none": "every event's record is disclosed.",
    "content": "events carrying captured content (tool arguments and results, prompts, completions, messages) "
               "are withheld: proven present by their leaf hash, their bytes not disclosed.",
}

CONTENT_KEYS = (
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.input.messages", "gen_ai.output.messages",
    "gen_ai.system_instructions", "input.value", "output.value", "traceloop.entity.input",
    "traceloop.entity.output",
)
CONTENT_PREFIXES = ("gen_ai.prompt.", "gen_ai.completion.", "llm.input_messages.", "llm.output_messages.")


def content_pointers(record: dict[str, Any], profile: str) -> list[str]:
    """JSON Pointers to the content in ``record`` the profile withholds (empty: disclose it)."""
    if profile == "none":
        return []
    out = []
    for where in ("attributes",):
        for key in sorted(record.get(where) or {}):
            if key in CONTENT_KEYS or key.startswith(CONTENT_PREFIXES):
                out.append(f"/{where}/{_escape(key)}")
    for i, event in enumerate(record.get("events") or []):
        for key in sorted(event.get("attributes") or {}):
            if key in CONTENT_KEYS or key.startswith(CONTENT_PREFIXES):
                out.append(f"/events/{i}/attributes/{_escape(key)}")
    return out


def _escape(key: str) -> str:
    """RFC 6901: ``~`` becomes ``~0`` and ``/`` becomes ``~1``."""
    return key.replace("~", "~0").replace("/", "~1")
