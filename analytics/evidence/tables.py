"""The typed tables and the figures of a bundle, and ``reports/queries.sql`` that makes both.

Every table is one SELECT over ``spans`` (the bundle's events), every figure one SELECT over the
tables; ``queries.sql`` holds them all with their parameters written in, so it runs as is in the
DuckDB shell from the bundle's directory. The exporter runs exactly that file to write the tables
and the figures, and ``govtrace verify`` runs it again and compares: the report cannot say a number
the bundle's own data does not give.

Five tables are the readiness answers' own SQL (``Answer.sql``); decisions, oversight and delegation
are defined here, on the documented views of ``analytics/views.sql``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from govtrace.analytics.views import Scope, compose

SETUP = """CREATE OR REPLACE VIEW bundle_events AS SELECT * FROM read_parquet('data/events.parquet');
CREATE OR REPLACE VIEW spans AS SELECT * EXCLUDE (included_as, disclosure) FROM bundle_events"""

# readiness question -> (table, what a row is)
ANSWER_TABLES = {
    "actions": ("actions", "every tool call of the agent in the window, with its final outcome"),
    "authorization": ("authorizations", "who authorized each tool call: identity, credential, delegation, policy, "
                                        "approver"),
    "data": ("data_access", "every data access (and every tool call, to count those that record none)"),
    "cost": ("costs", "cost per task against the agent's envelope"),
    "boundaries": ("boundaries", "every policy boundary triggered (deny, escalate, rate limit, envelope) and its "
                                 "resolution"),
}

DECISIONS = """
SELECT start_time, trace_id AS task, span_id, agent_id, tool_name, policy_decision_id AS decision_id, policy_id,
       policy_rule_id AS rule_id, policy_version, policy_effect AS effect, policy_tier AS tier, policy_mode AS mode,
       policy_boundary AS boundary, escalation_id
FROM canonical_spans
WHERE policy_decision_id IS NOT NULL OR policy_effect IS NOT NULL
ORDER BY start_time, span_id
"""

OVERSIGHT = """
SELECT * FROM escalations ORDER BY requested_at, escalation_id
"""

DELEGATION = """
SELECT start_time, trace_id AS task, span_id, agent_id, operation, tool_name, acting_for, delegating_agent,
       delegation_depth, principal, agent_credential, identity_mismatch
FROM canonical_spans
WHERE acting_for IS NOT NULL OR delegating_agent IS NOT NULL OR delegation_depth IS NOT NULL
ORDER BY start_time, span_id
"""

# Decisions on the agent's escalations, recorded by anyone from the window's start on (an approval
# may come later, in another trace): what the bundle holds as "resolution" events.
RESOLUTIONS = ("SELECT * FROM spans WHERE start_time >= CAST($1 AS TIMESTAMP) AND escalation_id IN ("
               "SELECT escalation_id FROM spans WHERE start_time >= CAST($1 AS TIMESTAMP) "
               "AND start_time < CAST($2 AS TIMESTAMP) AND agent_id = $3 AND escalation_id IS NOT NULL)")

OWN_TABLES = {
    "decisions": (DECISIONS, "every policy decision on the agent's spans: policy, rule, version, effect, tier, mode"),
    "oversight": (OVERSIGHT, "every escalation the agent raised, with its decision, approver and time to decide"),
    "delegation": (DELEGATION, "every span acting for someone: principal, delegating agent, depth"),
}

FIGURES: dict[str, str] = {
    "events": """SELECT count(*) AS events,
       count(*) FILTER (WHERE included_as = 'subject') AS agent_events,
       count(*) FILTER (WHERE included_as = 'resolution') AS decisions_recorded_elsewhere,
       count(*) FILTER (WHERE included_as = 'unattributed') AS unattributed_tool_calls,
       count(*) FILTER (WHERE included_as = 'registry') AS registry_loads,
       count(*) FILTER (WHERE disclosure = 'full') AS disclosed,
       count(*) FILTER (WHERE disclosure = 'withheld') AS withheld,
       count(*) FILTER (WHERE disclosure = 'erased') AS erased_by_retention,
       min(seq) AS first_seq, max(seq) AS last_seq
FROM bundle_events""",
    "actions": """SELECT count(*) AS tool_calls, count(DISTINCT task) AS tasks,
       count(*) FILTER (WHERE starts_with(outcome, 'ok')) AS ok,
       count(*) FILTER (WHERE starts_with(outcome, 'blocked')) AS blocked,
       count(*) FILTER (WHERE starts_with(outcome, 'error')) AS failed,
       count(*) FILTER (WHERE outcome = 'pending approval') AS awaiting_approval,
       count(*) FILTER (WHERE policy_effect IS NULL) AS without_policy_check
FROM actions""",
    "decisions": """SELECT count(*) AS decisions,
       count(*) FILTER (WHERE effect = 'allow') AS allowed,
       count(*) FILTER (WHERE effect = 'deny') AS denied,
       count(*) FILTER (WHERE effect = 'escalate') AS escalated,
       count(*) FILTER (WHERE mode = 'log_only') AS log_only,
       count(DISTINCT policy_id || '@' || policy_version) AS policy_versions
FROM decisions""",
    "oversight": """SELECT count(*) AS escalations,
       count(*) FILTER (WHERE outcome = 'approved') AS approved,
       count(*) FILTER (WHERE outcome = 'denied') AS denied,
       count(*) FILTER (WHERE outcome IN ('expired', 'auto_denied')) AS expired_or_auto_denied,
       count(*) FILTER (WHERE outcome = 'open') AS open,
       count(*) FILTER (WHERE time_to_decision_s <= sla_seconds) AS decided_within_sla,
       count(*) FILTER (WHERE time_to_decision_s > sla_seconds) AS decided_after_sla,
       count(DISTINCT approver_id) AS approvers,
       max(time_to_decision_s) AS slowest_decision_s
FROM oversight""",
    "delegation": """SELECT count(*) AS delegated_spans, max(delegation_depth) AS max_depth,
       count(DISTINCT acting_for) AS principals, count(DISTINCT delegating_agent) AS delegating_agents
FROM delegation""",
    "data_access": """SELECT count(*) AS accesses, count(DISTINCT resource) AS resources,
       sum(record_count) FILTER (WHERE operation = 'read') AS records_read,
       sum(record_count) FILTER (WHERE operation = 'write') AS records_written,
       sum(record_count) FILTER (WHERE operation = 'delete') AS records_deleted,
       sum(record_count) FILTER (WHERE operation = 'send') AS records_sent,
       count(*) FILTER (WHERE classification IN ('pii', 'restricted')) AS sensitive_accesses
FROM data_access WHERE resource IS NOT NULL""",
    "costs": """SELECT count(*) AS tasks, sum(cost) AS total_cost, max(cost) AS max_task_cost,
       string_agg(DISTINCT currency, ',' ORDER BY currency) AS currency,
       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
FROM costs""",
    "boundaries": """SELECT count(*) AS boundaries,
       count(*) FILTER (WHERE resolution = 'denied by policy') AS denied_by_policy,
       count(*) FILTER (WHERE resolution = 'approved') AS approved,
       count(*) FILTER (WHERE resolution IN ('denied', 'expired', 'auto_denied')) AS refused_or_expired,
       count(*) FILTER (WHERE resolution = 'open') AS open,
       count(*) FILTER (WHERE resolution = 'logged only (not enforced)') AS logged_only
FROM boundaries""",
}


@dataclass(frozen=True)
class Block:
    kind: str  # "setup" | "table" | "figure"
    name: str
    description: str
    sql: str  # runnable as is (no parameters left)


def table_blocks(answers: Mapping[str, Any], scope: Scope) -> list[Block]:
    """The table statements: the answers' SQL and our own, parameters written in."""
    blocks = []
    for question, (name, description) in ANSWER_TABLES.items():
        answer = answers.get(question)
        if answer is None or not answer.sql:
            continue
        params = list(getattr(answer, "params", None) or scope.params)
        blocks.append(Block("table", name, description, inline(answer.sql, params)))
    sources = {"canonical_spans": scope.spans(), "escalation_resolutions": RESOLUTIONS}
    for name, (query, description) in OWN_TABLES.items():
        blocks.append(Block("table", name, description, inline(compose(query, sources), scope.params)))
    return blocks


def figure_blocks(tables: Sequence[str]) -> list[Block]:
    """One figure per table present (plus ``events``), in a fixed order."""
    return [Block("figure", name, f"figures of {name}", sql) for name, sql in FIGURES.items()
            if name == "events" or name in tables]


def render(blocks: Sequence[Block], header: str) -> str:
    parts = [header.rstrip() + "\n", "-- setup: views\n" + SETUP + ";\n"]
    for b in blocks:
        body = f"CREATE OR REPLACE TABLE {b.name} AS\n{b.sql.strip()}" if b.kind == "table" else b.sql.strip()
        parts.append(f"-- {b.kind}: {b.name}\n-- {b.description}\n{body};\n")
    return "\n".join(parts)


def parse(text: str) -> list[Block]:
    """The blocks of a queries.sql written by ``render`` (table bodies keep their CREATE)."""
    blocks = []
    for chunk in re.split(r"^-- (?=(?:setup|table|figure): )", text, flags=re.MULTILINE)[1:]:
        head, _, rest = chunk.partition("\n")
        kind, _, name = head.partition(": ")
        lines = rest.splitlines()
        description = lines[0][3:].strip() if lines and lines[0].startswith("-- ") and kind != "setup" else ""
        sql = "\n".join(line for line in lines if not line.startswith("--")).strip().rstrip(";").strip()
        blocks.append(Block(kind, name.strip(), description, sql))
    return blocks


def run_setup(con, bundle_dir: str) -> None:
    """The setup views, reading the bundle at ``bundle_dir`` (an absolute path: views outlive the
    session setting ``file_search_path`` and are read from other cursors)."""
    absolute = str(Path(bundle_dir).resolve() / "data" / "events.parquet").replace("'", "''")
    for statement in SETUP.split(";"):
        if statement.strip():
            con.execute(statement.replace("'data/events.parquet'", f"'{absolute}'"))


def figure(con, sql: str) -> dict[str, Any]:
    """A figure's one row as JSON-ready values."""
    table = con.sql(sql).to_arrow_table()
    row = table.to_pylist()[0] if table.num_rows else {c: None for c in table.column_names}
    return {k: _plain(v) for k, v in row.items()}


def same_figure(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Differences between two figures, as sentences (empty when they agree)."""
    out = []
    for key in sorted(set(expected) | set(actual)):
        a, b = expected.get(key), actual.get(key)
        if isinstance(a, float) or isinstance(b, float):
            if a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9):
                continue
        if a != b:
            out.append(f"{key}: report says {a!r}, the data gives {b!r}")
    return out


def inline(sql: str, params: Sequence[Any]) -> str:
    """``sql`` with ``$1``, ``$2`` … replaced by SQL literals of ``params``."""
    def literal(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        if not 0 <= index < len(params):
            raise ValueError(f"query uses ${index + 1} but only {len(params)} parameters are known")
        return _literal(params[index])
    return re.sub(r"\$(\d+)(?!\d)", literal, sql)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        value = value.isoformat(sep=" ")
    return "'" + str(value).replace("'", "''") + "'"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):  # sums of BIGINT come back as HUGEINT decimals
        return int(value) if value == value.to_integral_value() else float(value)
    return value
