"""``completeness.json``: how much of what happened the bundle can vouch for.

Three kinds of fact, said apart because they are not equally strong:
- signed: the log's size, that its seqs 0..n-1 are gap-free (the exporter recomputed every leaf
  against the signed root), and the ``dropped`` counters the checkpoints sign (events lost upstream
  of the collector, cumulative);
- measured by the exporter: events of the agent in the window that no checkpoint covered yet;
- reported by the operator's collector, not covered by the ledger: its start and stop times (so its
  downtime) and the spans it rejected as malformed.
"""

from __future__ import annotations

from typing import Any

from govtrace.collector.ledger.checkpoint import Checkpoint


def build(*, head: Checkpoint, head_seq_no: int, anchor: Checkpoint | None, anchor_seq_no: int | None,
          unsealed: int, ingest_events: list[dict[str, Any]]) -> dict[str, Any]:
    dropped_before = (anchor.dropped or 0) if anchor is not None else 0
    dropped_after = head.dropped or 0
    downtime, unclean = _downtime(ingest_events)
    rejected = sum(int(e.get("count") or 0) for e in ingest_events if e.get("event") == "spans_rejected")
    return {
        "log": {"origin": head.origin, "tree_size": head.tree_size, "head_checkpoint": head_seq_no,
                "anchor_checkpoint": anchor_seq_no, "anchor_tree_size": anchor.tree_size if anchor else 0},
        "sequence": {
            "gaps": [],
            "statement": f"seqs 0..{head.tree_size - 1} are contiguous: the exporter recomputed every leaf and "
                         "rebuilt the signed root of the head checkpoint",
        },
        "dropped": {
            "at_anchor": dropped_before, "at_head": dropped_after, "during": dropped_after - dropped_before,
            "statement": (f"{dropped_after - dropped_before} events were reported dropped upstream of the collector "
                          "between the anchor and head checkpoints (signed counters; they cannot say whose "
                          "events they were)"),
        },
        "unsealed": {
            "events": unsealed,
            "statement": ("every event of the agent in the window is sealed by the head checkpoint" if not unsealed
                          else f"{unsealed} events of the agent in the window were not yet sealed by a checkpoint "
                               "and are not in the bundle; export again after the next seal"),
        },
        "collector": {
            "events": [{**e, "occurred_at": _iso(e.get("occurred_at"))} for e in ingest_events],
            "downtime": downtime,
            "unclean_restarts": unclean,
            "spans_rejected": rejected,
            "statement": "operator-reported by the collector (ingest_events), not covered by the ledger",
        },
    }


def check(document: dict[str, Any], head: Checkpoint, anchor: Checkpoint | None) -> list[str]:
    """Problems: signed facts that the document misstates."""
    problems = []
    log = document.get("log") or {}
    if log.get("tree_size") != head.tree_size or log.get("origin") != head.origin:
        problems.append("completeness.json names a different log or size than the head checkpoint")
    dropped = document.get("dropped") or {}
    want = {"at_anchor": (anchor.dropped or 0) if anchor else 0, "at_head": head.dropped or 0}
    want["during"] = want["at_head"] - want["at_anchor"]
    for key, value in want.items():
        if dropped.get(key) != value:
            problems.append(f"completeness.json says dropped {key} = {dropped.get(key)!r}, the signed checkpoints "
                            f"say {value}")
    if (document.get("sequence") or {}).get("gaps"):
        problems.append("completeness.json reports sequence gaps in the log")
    return problems


def _downtime(events: list[dict[str, Any]]) -> tuple[list[dict[str, str]], int]:
    """Intervals between a stop and the next start, and starts with no stop before them (crashes)."""
    out, unclean, stopped_at, running = [], 0, None, None
    for e in events:
        kind = e.get("event")
        if kind == "collector_stopped":
            stopped_at, running = e.get("occurred_at"), False
        elif kind == "collector_started":
            if running:
                unclean += 1  # started again without a recorded stop: it crashed or was killed
                out.append({"from": "unknown (unclean stop)", "to": _iso(e.get("occurred_at"))})
            elif stopped_at is not None:
                out.append({"from": _iso(stopped_at), "to": _iso(e.get("occurred_at"))})
            stopped_at, running = None, True
    if running is False and stopped_at is not None:
        out.append({"from": _iso(stopped_at), "to": "after the window (no start recorded)"})
    return out, unclean


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
