"""The agent's registry entry, read from the registry load events the bundle proves.

``govtrace agents --registry`` records each load of ``agents.yaml`` as a span (see
``analytics/registry.py``) carrying the file's version and its full content, so the entry in force
is itself a ledger event: the bundle includes the load in force at the window's start and every
load inside it, and ``registry/agent.json`` repeats the agent's entry from them. ``govtrace verify``
re-reads the entries from the proven records and compares.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

CONTENT = "govtrace.registry.content"  # analytics/registry.py REGISTRY_CONTENT
VERSION = "govtrace.registry.version"
PATH = "govtrace.registry.path"


def from_records(agent: str, loads: Iterable[tuple[int, str]]) -> dict[str, Any]:
    """``registry/agent.json`` from ``(seq, record text)`` of the registry loads, oldest first."""
    out: list[dict[str, Any]] = []
    for seq, text in loads:
        record = json.loads(text)
        attributes = record.get("attributes") or {}
        try:
            content = json.loads(attributes.get(CONTENT) or "{}")
        except ValueError:
            content = {}
        entry = next((a for a in content.get("agents") or [] if a.get("id") == agent), None)
        out.append({"seq": seq, "span_id": record.get("span_id"), "loaded_at_ns": record.get("start_ns"),
                    "version": attributes.get(VERSION), "path": attributes.get(PATH), "entry": entry})
    if not out:
        return {"recorded": False, "loads": [], "entry": None,
                "note": "no registry load is recorded in the ledger up to the window's end: the agent's owner, "
                        "grants and cost envelope are unknown to this bundle"}
    current = out[-1]
    note = None if current["entry"] is not None else "the agent is not listed in the registry in force (a shadow agent)"
    return {"recorded": True, "loads": out, "entry": current["entry"], "note": note}


def envelope(document: dict[str, Any]) -> dict[str, float] | None:
    """The cost envelope of the entry in force, as the cost answer takes it."""
    entry = document.get("entry") or {}
    env = entry.get("envelope") or entry.get("cost_envelope")
    if not env:
        return None
    return {k: v for k, v in env.items() if v is not None}
