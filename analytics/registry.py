"""The agent registry, ``agents.yaml``: governance as code.

One entry per agent: id, name, business process owner, sponsor, purpose, risk tier, status, last
review date, the tools, resources and operations granted, the cost envelope and rate limits (format
in docs/analytics.md). Loading validates strictly (a typo is an error that names the entry and the
key) and fingerprints the file's bytes: the sha256 is the registry's version.

Each load is stored as a versioned audit event. Only the collector writes to the store, so a load
is recorded the way every other event is: as an OTLP span (``govtrace.registry.load``) carrying the
version and the registry's full content, sent to the running collector, or, when no collector runs
on the database file, to a collector started on it for the occasion. The span then sits in the
tamper-evident ledger like any other; ``history`` lists the versions loaded and ``registry_at``
rebuilds the registry in force at any time, so an answer judged against envelopes can name the
version it used.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from govtrace.analytics.costs import Envelope
from govtrace.analytics.reader import Reader

DEFAULT_FILE = "agents.yaml"
RISK_TIERS = ("low", "medium", "high", "critical")
STATUSES = ("proposed", "active", "suspended", "retired")
REVIEW_EVERY = timedelta(days=90)

# Attributes of the load event. To be moved to instrumentation/attributes.py (and docs/attributes.md).
from govtrace.instrumentation.attributes import (  # noqa: E402 - keys are defined once, there
    OP_REGISTRY_LOAD,
    REGISTRY_AGENTS,
    REGISTRY_CONTENT,
    REGISTRY_LOADED_BY,
    REGISTRY_PATH,
    REGISTRY_VERSION,
)

_ENTRY_KEYS = {"id", "name", "owner", "sponsor", "purpose", "risk_tier", "status", "last_review", "granted",
               "cost_envelope", "rate_limits"}
_GRANT_KEYS = {"tools", "resources", "operations"}
_ENVELOPE_KEYS = {"per_task", "per_hour", "per_day", "currency"}
_RATE_KEYS = {"calls", "per_seconds", "tools"}


class RegistryError(ValueError):
    """agents.yaml is unusable; the message names the file, the entry and the key."""


@dataclass(frozen=True)
class RateLimit:
    calls: int
    per_seconds: float
    tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentEntry:
    id: str
    name: str | None = None
    owner: str | None = None  # business process owner
    sponsor: str | None = None
    purpose: str | None = None
    risk_tier: str | None = None
    status: str = "active"
    last_review: date | None = None
    tools: tuple[str, ...] = ()  # granted; shell-style patterns ("invoice.*")
    resources: tuple[str, ...] = ()
    operations: tuple[str, ...] = ()
    envelope: Envelope | None = None
    rate_limits: tuple[RateLimit, ...] = ()

    @property
    def review_due(self) -> date | None:
        return self.last_review + REVIEW_EVERY if self.last_review else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["last_review"] = self.last_review.isoformat() if self.last_review else None
        out["review_due"] = self.review_due.isoformat() if self.review_due else None
        out["tools"], out["resources"], out["operations"] = list(self.tools), list(self.resources), list(self.operations)
        out["envelope"] = asdict(self.envelope) if self.envelope else None
        out["rate_limits"] = [{**asdict(r), "tools": list(r.tools)} for r in self.rate_limits]
        return out


@dataclass(frozen=True)
class Registry:
    agents: dict[str, AgentEntry]
    version: str  # sha256 of the source bytes
    path: str = ""
    loaded_at: datetime | None = None  # when a stored load was recorded
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, agent_id: str) -> AgentEntry | None:
        return self.agents.get(agent_id)

    def envelopes(self) -> dict[str, Envelope]:
        return {a: e.envelope for a, e in self.agents.items() if e.envelope is not None}

    def content(self) -> str:
        """Canonical JSON of the entries: what a load event stores and ``from_content`` reads."""
        return json.dumps({"agents": [e.as_dict() for e in self.agents.values()]}, sort_keys=True,
                          separators=(",", ":"))


# --- loading -------------------------------------------------------------------------------------------

def load_registry(path: str | Path) -> Registry:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc}") from None
    return parse_registry(raw, str(path))


def parse_registry(raw: bytes | str, path: str = "<text>") -> Registry:
    raw = raw.encode() if isinstance(raw, str) else raw
    try:
        document = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("agents"), list):
        raise RegistryError(f"{path}: expected a mapping with an 'agents' list")
    unknown = set(document) - {"agents", "version"}
    if unknown:
        raise RegistryError(f"{path}: unknown top-level keys {sorted(unknown)}; expected 'agents' (and 'version')")
    agents: dict[str, AgentEntry] = {}
    for index, item in enumerate(document["agents"]):
        entry = _entry(item, f"{path}: agents[{index}]")
        if entry.id in agents:
            raise RegistryError(f"{path}: agents[{index}]: agent id {entry.id!r} is listed twice")
        agents[entry.id] = entry
    return Registry(agents, hashlib.sha256(raw).hexdigest(), path)


def from_content(content: str, version: str, path: str = "", loaded_at: datetime | None = None) -> Registry:
    """The registry a load event stored (see ``Registry.content``)."""
    document = json.loads(content)
    agents = {}
    for item in document["agents"]:
        envelope = Envelope(**item["envelope"]) if item.get("envelope") else None
        agents[item["id"]] = AgentEntry(
            id=item["id"], name=item.get("name"), owner=item.get("owner"), sponsor=item.get("sponsor"),
            purpose=item.get("purpose"), risk_tier=item.get("risk_tier"), status=item.get("status") or "active",
            last_review=date.fromisoformat(item["last_review"]) if item.get("last_review") else None,
            tools=tuple(item.get("tools") or ()), resources=tuple(item.get("resources") or ()),
            operations=tuple(item.get("operations") or ()), envelope=envelope,
            rate_limits=tuple(RateLimit(r["calls"], r["per_seconds"], tuple(r.get("tools") or ()))
                              for r in item.get("rate_limits") or ()))
    return Registry(agents, version, path, loaded_at)


def _entry(item: Any, where: str) -> AgentEntry:
    if not isinstance(item, dict):
        raise RegistryError(f"{where}: each agent must be a mapping")
    agent_id = item.get("id")
    if not isinstance(agent_id, str) or not agent_id.strip():
        raise RegistryError(f"{where}: 'id' is required and must be a string")
    where = f"{where} ({agent_id})"
    unknown = set(item) - _ENTRY_KEYS
    if unknown:
        raise RegistryError(f"{where}: unknown keys {sorted(unknown)}; known: {', '.join(sorted(_ENTRY_KEYS))}")
    risk = item.get("risk_tier")
    if risk is not None and risk not in RISK_TIERS:
        raise RegistryError(f"{where}: risk_tier must be one of {', '.join(RISK_TIERS)}, got {risk!r}")
    status = item.get("status", "active")
    if status not in STATUSES:
        raise RegistryError(f"{where}: status must be one of {', '.join(STATUSES)}, got {status!r}")
    granted = item.get("granted") or {}
    if not isinstance(granted, dict) or set(granted) - _GRANT_KEYS:
        raise RegistryError(f"{where}: granted must be a mapping of {', '.join(sorted(_GRANT_KEYS))}")
    return AgentEntry(
        id=agent_id.strip(), name=_text(item, "name", where), owner=_text(item, "owner", where),
        sponsor=_text(item, "sponsor", where), purpose=_text(item, "purpose", where), risk_tier=risk, status=status,
        last_review=_date(item.get("last_review"), where),
        tools=_strings(granted.get("tools"), f"{where}: granted.tools"),
        resources=_strings(granted.get("resources"), f"{where}: granted.resources"),
        operations=_strings(granted.get("operations"), f"{where}: granted.operations"),
        envelope=_envelope(item.get("cost_envelope"), where),
        rate_limits=tuple(_rate(r, f"{where}: rate_limits[{i}]") for i, r in enumerate(item.get("rate_limits") or [])),
    )


def _text(item: dict, key: str, where: str) -> str | None:
    value = item.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise RegistryError(f"{where}: {key} must be text")
    return value.strip()


def _date(value: Any, where: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise RegistryError(f"{where}: last_review must be a date (YYYY-MM-DD), got {value!r}") from None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RegistryError(f"{where} must be a list of names")
    return tuple(value)


def _envelope(value: Any, where: str) -> Envelope | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - _ENVELOPE_KEYS:
        raise RegistryError(f"{where}: cost_envelope takes {', '.join(sorted(_ENVELOPE_KEYS))}")
    for key in ("per_task", "per_hour", "per_day"):
        limit = value.get(key)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0):
            raise RegistryError(f"{where}: cost_envelope.{key} must be a non-negative number")
    return Envelope.of(value)


def _rate(value: Any, where: str) -> RateLimit:
    if not isinstance(value, dict) or set(value) - _RATE_KEYS or "calls" not in value or "per_seconds" not in value:
        raise RegistryError(f"{where}: a rate limit takes calls, per_seconds and optionally tools")
    try:
        return RateLimit(int(value["calls"]), float(value["per_seconds"]),
                         _strings(value.get("tools"), f"{where}.tools"))
    except (TypeError, ValueError):
        raise RegistryError(f"{where}: calls and per_seconds must be numbers") from None


# --- recording loads -----------------------------------------------------------------------------------

def record_load(registry: Registry, *, server: str | None = None, db: str | None = None,
                loaded_by: str | None = None) -> str:
    """Store this load as an audit event; returns the event's span id.

    ``server``: a running collector's HTTP URL (the span goes to its OTLP/HTTP endpoint).
    ``db``: a database file no collector runs on: a collector is started on it for the occasion,
    so the event still passes through the one writer and the ledger.
    """
    if server:
        return _send(registry, server, loaded_by)
    if not db:
        raise ValueError("record_load needs a collector URL (server=) or a database file (db=)")
    from govtrace.collector.config import load_config
    from govtrace.collector.server import Collector

    # One event: decode inline rather than start the collector's worker processes.
    config = load_config(None, {"db": db, "grpc": "127.0.0.1:0", "http": "127.0.0.1:0", "decode_workers": 0},
                         environ={})
    with Collector(config) as collector:
        return _send(registry, collector.http_url, loaded_by)


def _send(registry: Registry, server: str, loaded_by: str | None) -> str:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    captured = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "govtrace-registry"}))
    provider.add_span_processor(SimpleSpanProcessor(captured))
    with provider.get_tracer("govtrace.analytics.registry").start_as_current_span(OP_REGISTRY_LOAD) as span:
        span.set_attributes({
            "gen_ai.operation.name": OP_REGISTRY_LOAD,
            REGISTRY_VERSION: registry.version,
            REGISTRY_PATH: str(Path(registry.path).resolve()) if registry.path and registry.path[0] != "<" else "",
            REGISTRY_AGENTS: len(registry.agents),
            REGISTRY_CONTENT: registry.content(),
            REGISTRY_LOADED_BY: loaded_by or os.environ.get("GOVTRACE_USER") or _user(),
        })
        span_id = format(span.get_span_context().span_id, "016x")
    provider.shutdown()
    # A collector with authentication on takes spans only with an agent (ingest) credential; the
    # collector stamps its principal on the event, which is who published this registry.
    token = os.environ.get("GOVTRACE_INGEST_TOKEN")
    exporter = OTLPSpanExporter(endpoint=server.rstrip("/") + "/v1/traces", timeout=30,
                                headers={"authorization": f"Bearer {token}"} if token else None)
    try:
        result = exporter.export(captured.get_finished_spans())
    finally:
        exporter.shutdown()
    if result is not SpanExportResult.SUCCESS:
        raise RegistryError(f"the collector at {server} did not store the registry load event")
    return span_id


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- reading recorded loads ----------------------------------------------------------------------------

HISTORY_SQL = f"""
SELECT start_time AS loaded_at, span_id, trace_id,
       json_extract_string(record, '$.attributes."{REGISTRY_VERSION}"') AS version,
       json_extract_string(record, '$.attributes."{REGISTRY_PATH}"') AS path,
       CAST(json_extract(record, '$.attributes."{REGISTRY_AGENTS}"') AS INTEGER) AS agents,
       json_extract_string(record, '$.attributes."{REGISTRY_LOADED_BY}"') AS loaded_by
FROM spans WHERE operation = '{OP_REGISTRY_LOAD}'
ORDER BY start_time, span_id
"""

AT_SQL = f"""
SELECT start_time AS loaded_at, span_id,
       json_extract_string(record, '$.attributes."{REGISTRY_VERSION}"') AS version,
       json_extract_string(record, '$.attributes."{REGISTRY_PATH}"') AS path,
       json_extract_string(record, '$.attributes."{REGISTRY_CONTENT}"') AS content
FROM spans WHERE operation = '{OP_REGISTRY_LOAD}' AND start_time <= CAST($1 AS TIMESTAMP)
ORDER BY start_time DESC, span_id DESC LIMIT 1
"""


def history(reader: Reader) -> pd.DataFrame:
    """Every recorded load: when, which version (sha256), from which file, by whom."""
    return reader.query(HISTORY_SQL)


def registry_at(reader: Reader, moment: datetime | None = None) -> Registry | None:
    """The registry in force at ``moment`` (default now): the last load recorded before it."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    found = reader.query(AT_SQL, [moment.isoformat(sep=" ")])
    if found.empty or not isinstance(found["content"].iloc[0], str):
        return None
    row = found.iloc[0]
    return from_content(row["content"], row["version"], row["path"] or "", pd.Timestamp(row["loaded_at"]).to_pydatetime(warn=False))


def recorded_entries(reader: Reader) -> dict[str, dict[str, Any]] | None:
    """The latest recorded registry's entries by agent id; None when no registry was ever recorded
    (which is not an empty registry: nothing can be judged shadow against it)."""
    registry = registry_at(reader)
    return {a: e.as_dict() for a, e in registry.agents.items()} if registry else None


def entries(reader: Reader) -> dict[str, dict[str, Any]]:
    """``recorded_entries``, empty when no registry was ever recorded (for callers that treat
    an empty mapping as "no registry")."""
    return recorded_entries(reader) or {}


def envelopes(reader: Reader) -> dict[str, dict[str, float]]:
    """Cost envelopes of the latest recorded registry, as {"task"|"hour"|"day": limit} per agent."""
    registry = registry_at(reader)
    return {a: e.limits() for a, e in registry.envelopes().items()} if registry else {}


def find_registry(path: str | None) -> Registry | None:
    """The registry a command should use: ``--registry PATH``, else ./agents.yaml when present."""
    if path:
        return load_registry(path)
    default = Path(DEFAULT_FILE)
    return load_registry(default) if default.is_file() else None

