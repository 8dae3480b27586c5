"""The decision chain of one task as a Graphviz graph: one box per agent, one node per step.

Policy decisions colour the tool calls (allow green, escalate amber, deny red, none recorded grey
and dashed); approvals are their own nodes, joined by a dashed edge to the request they decided,
even when the decision arrived later in another trace. Rendered by ``st.graphviz_chart`` in the
browser, so no Graphviz install is needed.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

MAX_STEPS = 150

# (fill, border) per policy effect or approval outcome.
EFFECT_COLOURS = {
    "allow": ("#e7f4ea", "#2e7d32"),
    "escalate": ("#fff3e0", "#b26a00"),
    "deny": ("#fdecea", "#c62828"),
    None: ("#f3f4f6", "#8a94a6"),
}
APPROVAL_COLOURS = {
    "approved": ("#e3effb", "#1f4e79"),
    "pending": ("#fff3e0", "#b26a00"),
}
BLOCKED_APPROVAL = ("#fdecea", "#c62828")
TASK_COLOURS = ("#e8eef7", "#1f4e79")


def chain_dot(steps: pd.DataFrame) -> str:
    steps = steps.head(MAX_STEPS)
    rows = steps.to_dict("records")
    rows += _inline_approvals(rows)
    known = {row["span_id"] for row in rows}
    lines = [
        "digraph chain {",
        # ordering=out keeps each step's children in the order they happened.
        '  graph [rankdir=LR, bgcolor="transparent", fontname="Helvetica", fontsize=11, nodesep=0.18, '
        'ranksep=0.35, pad=0.2, newrank=true, ordering=out];',
        '  node [fontname="Helvetica", fontsize=10, shape=box, style="rounded,filled", penwidth=1.2, '
        'margin="0.12,0.05"];',
        '  edge [color="#8a94a6", arrowsize=0.6, fontname="Helvetica", fontsize=9];',
    ]
    decisions = _later_decisions(rows)
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_agent.setdefault(_text(row.get("agent_id")) or "unknown agent", []).append(row)
    for index, (agent, members) in enumerate(by_agent.items()):
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f'    label="{_escape(agent)}"; labeljust=l; style="rounded,filled"; fillcolor="#f7f8fa"; '
                     'color="#cfd6e0"; fontcolor="#1f2937";')
        for row in members:
            lines.append(f"    {_node(row, decisions)}")
        lines.append("  }")
    # Left to right, Graphviz stacks siblings upwards in edge order: emit the latest first so that
    # each step's children read top to bottom in the order they happened.
    for row in reversed(rows):
        parent = row.get("parent_span_id")
        if row.get("step") == "approval" and (row.get("inline") or parent in known):
            # The decision hangs beside the request it decided, joined by a dashed line.
            colour = (APPROVAL_COLOURS.get(_text(row.get("approval"))) or BLOCKED_APPROVAL)[1]
            lines.append(f'  "{parent}" -> "{row["span_id"]}" [style=dashed, color="{colour}", arrowhead=none];')
        elif isinstance(parent, str) and parent in known:
            lines.append(f'  "{parent}" -> "{row["span_id"]}";')
    lines.extend(_approval_edges(rows))
    lines.append("}")
    return "\n".join(lines)


def _node(row: dict[str, Any], decisions: dict[str, dict[str, Any]]) -> str:
    step = row.get("step")
    if step == "approval":
        outcome = _text(row.get("approval")) or "pending"
        fill, border = APPROVAL_COLOURS.get(outcome, BLOCKED_APPROVAL)
        who = _text(row.get("approver_id"))
        if outcome in ("expired", "auto_denied"):
            label = f"no human decision in time\\n{outcome}" + (f"\\nrecorded by {who}" if who else "")
        else:
            label = f"human approval\\n{outcome}\\nby {who or 'no approver recorded'}"
        if row.get("relation") not in ("task", None):
            label += "\\n(recorded later, in another trace)"
        return _attrs(row["span_id"], label, fill, border, shape="hexagon", style="filled")
    if step == "task":
        name = _text(row.get("name")).removeprefix("invoke_agent ").strip() or "task"
        label = f"task: {name}"
        if _text(row.get("acting_for")):
            label += f"\\nacting for {_text(row.get('acting_for'))}"
        return _attrs(row["span_id"], label, *TASK_COLOURS, extra='penwidth=1.8, fontname="Helvetica-Bold"')
    if step == "model call":
        return _attrs(row["span_id"], _text(row.get("name")), "#ffffff", "#b8c0cc", shape="ellipse",
                      style="filled", extra="fontsize=9")
    effect = _text(row.get("policy_effect")) or None
    fill, border = EFFECT_COLOURS.get(effect, EFFECT_COLOURS[None])
    # The step number: Graphviz may reorder siblings to avoid crossings, the number keeps the sequence.
    label = _order(row) + (_text(row.get("tool_name")) or _text(row.get("name")))
    if effect:
        tier = row.get("policy_tier")
        label += f"\\n{effect}" + (f" · tier {int(tier)}" if tier is not None and not pd.isna(tier) else "")
        if _text(row.get("policy_rule_id")):
            label += f"\\nrule {_text(row.get('policy_rule_id'))}"
    else:
        label += "\\nno policy check recorded"
    outcome = _text(row.get("outcome"))
    later = decisions.get(_text(row.get("escalation_id")))
    if later and outcome == "awaiting approval":
        outcome = f"{_text(later.get('approval'))} later"
    if outcome and outcome != "ok":
        label += f"\\n⇒ {outcome}"
    style = "rounded,filled" if effect else "rounded,filled,dashed"
    return _attrs(row["span_id"], label, fill, border, style=style)


def _order(row: dict[str, Any]) -> str:
    order = row.get("order")
    return f"{int(order)}. " if order is not None and not pd.isna(order) else ""


def _inline_approvals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A decision recorded on the request's own span becomes its own approval node beside it."""
    separate = {_text(row.get("escalation_id")) for row in rows if row.get("step") == "approval"}
    extra = []
    for row in rows:
        outcome = _text(row.get("approval"))
        if row.get("step") == "tool call" and outcome and outcome != "pending" \
                and _text(row.get("escalation_id")) not in separate:
            extra.append({"step": "approval", "span_id": f"{row['span_id']}~decision", "inline": True,
                          "parent_span_id": row["span_id"], "agent_id": row.get("agent_id"),
                          "approval": outcome, "approver_id": row.get("approver_id"), "relation": "task"})
    return extra


def _later_decisions(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Approval steps by escalation id: the decision on a request that was still pending on its span."""
    return {row["escalation_id"]: row for row in rows
            if row.get("step") == "approval" and _text(row.get("escalation_id"))}


def _approval_edges(rows: list[dict[str, Any]]) -> list[str]:
    requests = {}
    for row in rows:
        if row.get("step") == "tool call" and _text(row.get("escalation_id")):
            requests.setdefault(row["escalation_id"], row["span_id"])
    known = {row["span_id"] for row in rows}
    edges = []
    for row in rows:
        target = requests.get(_text(row.get("escalation_id")))
        if row.get("step") == "approval" and target and row.get("parent_span_id") not in known:
            outcome = _text(row.get("approval")) or "decides"
            colour = (APPROVAL_COLOURS.get(outcome) or BLOCKED_APPROVAL)[1]
            edges.append(f'  "{row["span_id"]}" -> "{target}" [style=dashed, color="{colour}", '
                         f'fontcolor="{colour}", label="{_escape(outcome)}", constraint=false];')
    return edges


def _attrs(span_id: str, label: str, fill: str, border: str, *, shape: str = "box",
           style: str = "rounded,filled", extra: str = "") -> str:
    tail = f", {extra}" if extra else ""
    return (f'"{span_id}" [label="{_escape(label)}", shape={shape}, style="{style}", fillcolor="{fill}", '
            f'color="{border}", tooltip="span {span_id}"{tail}];')


def _escape(text: str) -> str:
    # Keep the \n line breaks we put in labels; escape quotes coming from the data.
    return text.replace('"', '\\"')


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value)
