"""The documented SQL views of ``views.sql`` and the scope every analytic narrows them to.

Analytics never query the views by name: a reader may be a read-only file, a collector's read API
or a sealed copy that lacks them. Instead ``compose`` inlines the views a query needs as common
table expressions, with each ``FROM spans`` narrowed to the agent and window asked about (a filter
pushed below the views' aggregates and window functions, which DuckDB cannot do by itself). The SQL kept on an
answer is therefore self-contained: it runs on any table with the ``spans`` columns.
"""

from __future__ import annotations

import functools
import re
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

VIEWS_FILE = Path(__file__).with_name("views.sql")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_FROM_SPANS = re.compile(r"\bFROM spans\b")


@dataclass(frozen=True)
class View:
    name: str
    doc: str
    body: str  # the SELECT, reading ``FROM spans``


@functools.cache
def definitions() -> dict[str, View]:
    """Every view of views.sql, in file order (which is also dependency order)."""
    views = {}
    for block in VIEWS_FILE.read_text().split("\n-- view: ")[1:]:
        name, rest = block.split("\n", 1)
        lines = rest.splitlines()
        doc = [line[2:].strip() for line in lines if line.startswith("--")]
        code = "\n".join(line for line in lines if not line.startswith("--"))
        header = f"CREATE OR REPLACE VIEW {name} AS"
        if not code.startswith(header):
            raise ValueError(f"views.sql: view {name} must start with '{header}'")
        views[name] = View(name, " ".join(doc), code[len(header):].strip().rstrip(";").strip())
    return views


# Columns each view reads from ``spans``: analytics fetch only what a question needs, since in a
# column store every extra column of a scattered agent's rows costs a full decompression.
DEDUP_COLUMNS = ("trace_id", "span_id", "operation", "tool_call_id", "input_tokens", "output_tokens",
                 "flavor", "scope_name", "cost_amount")
DECISION_COLUMNS = ("escalation_id", "escalation_outcome", "approver_id", "approver_role", "decided_at",
                    "start_time", "end_time", "span_id", "trace_id", "seq")
DECISION_HORIZON_DAYS = 1.0


@dataclass(frozen=True)
class Scope:
    """An agent (or the fleet) and a window [since, until): the subject of every answer.

    Parameters are numbered (``$1`` since, ``$2`` until, ``$3`` agent) so one list serves every
    statement of a query, whatever the reader (file, read API, connection).
    """

    agent: str | None
    since: datetime
    until: datetime

    @classmethod
    def of(cls, agent: str | None = None, since: datetime | None = None, until: datetime | None = None) -> Scope:
        until = until or datetime.now(UTC) + timedelta(days=1)
        return cls(agent or None, _aware(since or EARLIEST), _aware(until))

    @property
    def params(self) -> list[Any]:
        params: list[Any] = [naive(self.since), naive(self.until)]
        return params + [self.agent] if self.agent else params

    def spans(self, where: str = "", columns: tuple[str, ...] | None = None, *, agent: bool = True) -> str:
        """The scope's spans as a relation, with only ``columns`` (default all); ``where`` adds a
        condition, ``agent=False`` keeps every agent."""
        projection = ", ".join(dict.fromkeys(columns)) if columns else "*"
        sql = (f"SELECT {projection} FROM spans WHERE start_time >= CAST($1 AS TIMESTAMP) "
               "AND start_time < CAST($2 AS TIMESTAMP)")
        if agent and self.agent:
            sql += " AND agent_id = $3"
        return sql + (f" AND ({where})" if where else "")

    def decisions(self, horizon_days: float = DECISION_HORIZON_DAYS) -> str:
        """Decisions on the scope's escalations, recorded by anyone from the window's start until
        ``horizon_days`` after its end: an approval may come later than the call, and an answer
        reports what is known when it is asked."""
        return (f"SELECT {', '.join(DECISION_COLUMNS)} FROM spans WHERE start_time >= CAST($1 AS TIMESTAMP) "
                f"AND start_time < CAST($2 AS TIMESTAMP) + INTERVAL {float(horizon_days)} DAY "
                "AND escalation_outcome IS NOT NULL AND escalation_outcome <> 'pending' "
                f"AND escalation_id IN ({self.spans('escalation_id IS NOT NULL', ('escalation_id',))})")


def compose(query: str, sources: dict[str, str] | None = None, before: dict[str, str] | None = None,
            after: dict[str, str] | None = None) -> str:
    """``query`` prefixed with the views it uses (and theirs), each reading ``sources[name]``
    instead of the whole ``spans`` table. ``before`` are named relations the views read (such as
    ``model_prices``), ``after`` named relations built on the views."""
    sources, before, after = sources or {}, before or {}, after or {}
    views = definitions()
    needed: list[str] = []

    def visit(text: str) -> None:
        for name, view in views.items():
            if name not in needed and re.search(rf"\b{name}\b", text):
                needed.append(name)
                visit(view.body)

    for text in (query, *after.values()):
        visit(text)
    ordered = [name for name in views if name in needed]  # file order is dependency order
    parts = [f"{name} AS (\n{sql}\n)" for name, sql in before.items()]
    for name in ordered:
        body = views[name].body
        if name in sources:
            body = _FROM_SPANS.sub(f"FROM ({sources[name]}) AS spans", body)
        parts.append(f"{name} AS (\n{body}\n)")
    parts += [f"{name} AS (\n{sql.strip()}\n)" for name, sql in after.items()]
    if not parts:
        return query
    return "WITH " + ",\n".join(parts) + "\n" + query.strip()


def install_views(con: Any, extra: dict[str, str] | None = None) -> list[str]:
    """Create every documented view (and ``extra`` relations such as ``model_prices``) in a
    DuckDB connection that holds a ``spans`` table. Returns the names created."""
    created = []
    for name, sql in (extra or {}).items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        created.append(name)
    for view in definitions().values():
        con.execute(f"CREATE OR REPLACE VIEW {view.name} AS {view.body}")
        created.append(view.name)
    return created


_COLUMNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def store_columns(reader: Any) -> frozenset[str]:
    """The store's span columns, asked once per reader: the analytics use the proposed typed
    columns (``link_trace_ids``, ``trace_key``) when the store has them."""
    try:
        return _COLUMNS[reader]
    except (KeyError, TypeError):
        pass
    found = frozenset(reader.query("SELECT column_name FROM information_schema.columns "
                                   "WHERE table_name = 'spans'")["column_name"])
    try:
        _COLUMNS[reader] = found
    except TypeError:
        pass
    return found


def naive(moment: datetime) -> str:
    """A UTC timestamp literal for DuckDB's zone-less TIMESTAMP columns."""
    return _aware(moment).astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
