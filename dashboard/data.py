"""Every read the views make, cached, and all of it through the collector's read API.

No view opens the DuckDB file: the collector owns it while it ingests. Results are cached for a
short time (``REFRESH_SECONDS``) so that reruns are instant and new spans still show up quickly;
the sidebar's refresh button clears the cache. Cached functions take the server URL as their first
argument so that two dashboards on two collectors never share results.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import streamlit as st

from govtrace.analytics.chain import Chain
from govtrace.analytics.reader import CollectorReader
from govtrace.analytics.readiness import QUESTIONS, Answer
from govtrace.dashboard import drift_baseline, queries, sources
from govtrace.dashboard.drift_baseline import DriftResult
from govtrace.dashboard.session import current

REFRESH_SECONDS = 15
DRIFT_REFRESH_SECONDS = 120


@st.cache_resource(show_spinner=False)
def reader_for(server: str) -> CollectorReader:
    # One reader per collector, shared by all sessions: it holds no connection, each query is a request.
    return CollectorReader(server)


def load(name: str, *args: Any) -> Any:
    """``queries.<name>(reader, *args)``, cached."""
    return _load(current().server, name, args)


def answer(question: str, agent: str | None) -> Answer:
    context = current()
    return _answer(context.server, question, agent, context.since, context.until)


def answers(agent: str | None) -> dict[str, Answer]:
    return {question: answer(question, agent) for question in QUESTIONS}


def chain(trace_id: str) -> Chain:
    return _chain(current().server, trace_id.strip().lower())


def envelopes() -> dict[str, dict[str, float]]:
    return _envelopes(current().server)


def registry() -> dict[str, dict[str, Any]] | None:
    return _registry(current().server)


def inventory_answer() -> Answer | None:
    """Findings against the recorded agent registry, or None when no registry was recorded."""
    return _inventory(current().server, _minute_now())


def escalations(agent: str | None = None) -> Answer:
    context = current()
    return _escalations(context.server, agent, context.since, context.until, _minute_now())


def drift(bucket: str, agent: str | None = None) -> DriftResult:
    """Drift scores from the drift module when installed, else from ``drift_baseline`` in ``bucket``s."""
    context = current()
    return _drift(context.server, bucket, agent, context.since, context.until)


def clear() -> None:
    for cached in (_load, _answer, _chain, _envelopes, _registry, _drift, _inventory, _escalations):
        cached.clear()


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _load(server: str, name: str, args: tuple[Any, ...]) -> Any:
    return getattr(queries, name)(reader_for(server), *args)


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _answer(server: str, question: str, agent: str | None, since: datetime | None,
            until: datetime | None) -> Answer:
    from govtrace.analytics.readiness import ask

    reader = reader_for(server)
    kwargs: dict[str, Any] = {"agent": agent, "since": since, "until": until}
    if question == "cost":
        kwargs["envelopes"] = sources.envelopes(reader)
    return ask(question, reader, **kwargs)


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _chain(server: str, trace_id: str) -> Chain:
    from govtrace.analytics.chain import chain as build_chain

    return build_chain(reader_for(server), trace_id)


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _envelopes(server: str) -> dict[str, dict[str, float]]:
    return sources.envelopes(reader_for(server))


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _registry(server: str) -> dict[str, dict[str, Any]] | None:
    return sources.registry_entries(reader_for(server))


# Fitting baselines is the slowest read here: keep its results longer than plain queries.
@st.cache_data(ttl=DRIFT_REFRESH_SECONDS, show_spinner="Scoring drift…")
def _drift(server: str, bucket: str, agent: str | None, since: datetime | None,
           until: datetime | None) -> DriftResult:
    reader = reader_for(server)
    result = sources.drift_scores(reader, since, until, agent)
    if result is None:
        result = drift_baseline.baseline_result(queries.activity(reader, since, until, bucket, agent), bucket)
    return result


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _inventory(server: str, now: datetime) -> Answer | None:
    return sources.inventory(reader_for(server), now)


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _escalations(server: str, agent: str | None, since: datetime | None, until: datetime | None,
                 now: datetime) -> Answer:
    from govtrace.analytics.escalations import escalations as answer_escalations

    return answer_escalations(reader_for(server), agent, since, until, now=now)


def _minute_now() -> datetime:
    # "Now" to the minute: judgements that depend on it stay cacheable between reruns.
    return datetime.now(UTC).replace(second=0, microsecond=0)
