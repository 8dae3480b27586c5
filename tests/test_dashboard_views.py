"""Every dashboard view, run by Streamlit's AppTest against a real collector fed by the demo fleet.

The app reads only through the collector's read API; what the views show is checked against the
store itself, and every view opened must leave an access record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st
from conftest import wait_until
from streamlit.testing.v1 import AppTest

from govtrace.analytics.chain import chain
from govtrace.analytics.escalations import escalations
from govtrace.analytics.reader import ConnectionReader
from govtrace.analytics.readiness import ask
from govtrace.collector.config import load_config
from govtrace.collector.server import Collector
from govtrace.instrumentation.demo_fleet import Fleet

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


@dataclass
class Seeded:
    collector: Collector
    traces: dict[str, str]

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        cursor = self.collector.store.cursor()
        try:
            return cursor.execute(query, params or []).fetchall()
        finally:
            cursor.close()

    def reader(self) -> ConnectionReader:
        return ConnectionReader(self.collector.store)

    def access(self) -> list[tuple]:
        return self.sql("SELECT principal, role, action, target FROM access_log ORDER BY occurred_at")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard")
    config = load_config(None, {"db": str(folder / "govtrace.duckdb"), "grpc": "127.0.0.1:0",
                                "http": "127.0.0.1:0"}, environ={})
    with Collector(config) as collector:
        fleet = Fleet(endpoint=f"http://{collector.grpc_endpoint}")
        traces = fleet.run_once()
        fleet.flush()
        store = Seeded(collector, traces)
        wait_until(lambda: store.sql("SELECT count(*) FROM spans WHERE trace_id = ?",
                                     [traces["late_approval"]])[0][0], timeout=15)
        # Evidence proves spans against a signed checkpoint: wait for the seal that covers them all.
        wait_until(lambda: store.sql("""SELECT coalesce(max(tree_size), 0) >= (SELECT count(*) FROM spans)
                                        FROM ledger_checkpoints""")[0][0], timeout=30)
        fleet.shutdown()
        yield store


@pytest.fixture
def app(seeded, monkeypatch):
    monkeypatch.setenv("GOVTRACE_SERVER", seeded.collector.http_url)
    monkeypatch.setenv("GOVTRACE_USER", "ivy@acme.example")
    monkeypatch.delenv("GOVTRACE_DASHBOARD_USERS", raising=False)
    monkeypatch.delenv("GOVTRACE_KEY_DIR", raising=False)
    # Streamlit's caches live as long as the process: start each test from a clean slate.
    st.cache_resource.clear()
    st.cache_data.clear()
    test = AppTest.from_file(str(APP), default_timeout=60)
    test.run()
    assert not test.exception, test.exception
    return test


def open_view(test: AppTest, view: str) -> AppTest:
    test.switch_page(f"views/{view}.py").run()
    assert not test.exception, test.exception
    return test


def markdown(test: AppTest) -> str:
    return "\n".join(element.value for element in test.markdown) + "\n".join(c.value for c in test.caption)


def metric(test: AppTest, label: str) -> str:
    return next(m.value for m in test.metric if m.label == label)


def test_fleet_lists_every_agent_with_its_owner_and_records_the_view(app, seeded):
    assert app.title[0].value == "Fleet"
    agents = [row[0] for row in seeded.sql("SELECT DISTINCT agent_id FROM spans WHERE agent_id IS NOT NULL")]
    inventory = next(frame.value for frame in app.dataframe if "owner" in frame.value.columns)
    assert sorted(inventory["agent_id"]) == sorted(agents)
    owners = dict(seeded.sql("SELECT DISTINCT agent_id, agent_owner FROM spans WHERE agent_id IS NOT NULL"))
    assert dict(zip(inventory["agent_id"], inventory["owner"], strict=True)) == owners
    assert metric(app, "Agents active") == f"{len(agents)} of {len(agents)}"
    assert ("ivy@acme.example", "local", "view", "dashboard:fleet") in seeded.access()


def test_fleet_alerts_list_the_policy_boundaries_that_were_triggered(app, seeded):
    denied = seeded.sql("SELECT count(*) FROM spans WHERE policy_effect IN ('deny', 'escalate')")[0][0]
    assert any(tab.label.startswith(f"Policy boundaries ({denied} ") for tab in app.tabs)


def test_agent_view_counts_the_agents_tool_calls_and_shows_its_timeline(app, seeded):
    open_view(app, "agent")
    agent = app.selectbox(key="agent_select").value
    calls = seeded.sql("SELECT count(*) FROM spans WHERE agent_id = ? AND operation = 'execute_tool'", [agent])[0][0]
    assert metric(app, "Tool calls") == str(calls)
    assert any(h.value == "Timeline of actions" for h in app.subheader)
    assert len(app.get("plotly_chart")) >= 2  # timeline and cost
    assert ("ivy@acme.example", "local", "view", f"dashboard:agent {agent}") in seeded.access()


def test_agent_view_follows_the_chosen_agent(app, seeded):
    open_view(app, "agent")
    app.selectbox(key="agent_select").select("it-agent").run()
    assert not app.exception
    outcomes = ask("actions", seeded.reader(), agent="it-agent").rows["outcome"]
    assert metric(app, "Blocked") == str(int(outcomes.str.startswith("blocked").sum()))
    assert ("ivy@acme.example", "local", "view", "dashboard:agent it-agent") in seeded.access()


def chain_of(app: AppTest, trace: str) -> str:
    open_view(app, "investigate")
    app.text_input(key="trace_input").input(trace).run()
    assert not app.exception, app.exception
    assert any(h.value == f"Decision chain of task {trace}" for h in app.subheader)
    return app.get("graphviz_chart")[0].proto.spec


def test_investigate_draws_the_decision_chain_across_agents_with_decisions_and_approvals(app, seeded):
    trace = seeded.traces["month_end_close"]
    dot = chain_of(app, trace)
    agents = [row[0] for row in seeded.sql(
        "SELECT DISTINCT agent_id FROM spans WHERE trace_id = ? AND agent_id IS NOT NULL", [trace])]
    assert len(agents) >= 3
    for agent in agents:
        assert f'label="{agent}"' in dot
    approvers = {row[0] for row in seeded.sql("""SELECT approver_id FROM spans WHERE trace_id = ?
        AND escalation_outcome IN ('approved', 'denied') AND approver_id IS NOT NULL""", [trace])}
    assert approvers and all("human approval" in dot and f"by {who}" in dot for who in approvers)
    # The chain may join other traces (approvals, callees, conversation fragments that ran meanwhile);
    # the metric counts the denials of every trace the chain shows.
    shown = [t["trace_id"] for t in chain(seeded.reader(), trace).traces]
    assert trace in shown
    denied = seeded.sql(f"SELECT count(*) FROM spans WHERE trace_id IN ({', '.join('?' * len(shown))}) "
                        "AND policy_effect = 'deny'", shown)[0][0]
    assert denied >= 1 and metric(app, "Denied by policy") == str(denied)
    assert ("ivy@acme.example", "local", "view", f"dashboard:investigate trace {trace}") in seeded.access()


def test_an_approval_recorded_later_in_another_trace_joins_the_chain_of_its_request(app, seeded):
    (trace,) = seeded.sql("""SELECT r.trace_id FROM spans r JOIN spans a USING (escalation_id)
                             WHERE a.trace_id = ? AND r.trace_id <> a.trace_id LIMIT 1""",
                          [seeded.traces["late_approval"]])[0]
    dot = chain_of(app, trace)
    (request,) = seeded.sql("""SELECT r.span_id FROM spans r JOIN spans a USING (escalation_id)
                               WHERE a.trace_id = ? AND r.trace_id = ?""", [seeded.traces["late_approval"], trace])[0]
    (approval,) = seeded.sql("SELECT span_id FROM spans WHERE trace_id = ?", [seeded.traces["late_approval"]])[0]
    assert "(recorded later, in another trace)" in dot
    assert f'"{request}" -> "{approval}" [style=dashed' in dot


def test_investigate_shows_the_raw_record_of_a_chosen_span(app, seeded):
    trace = seeded.traces["month_end_close"]
    chain_of(app, trace)
    span_id, rule = seeded.sql("""SELECT span_id, policy_rule_id FROM spans
                                  WHERE trace_id = ? AND policy_effect = 'deny' LIMIT 1""", [trace])[0]
    app.selectbox(key="span_choice").select(span_id).run()
    assert not app.exception, app.exception
    shown = [json.loads(element.proto.body) for element in app.get("json")]
    assert any(isinstance(body, dict) and body.get("govtrace.policy.rule_id") == rule for body in shown)


def test_investigate_search_finds_spans_by_policy_effect(app, seeded):
    open_view(app, "investigate")
    app.selectbox(key="search_effect").select("deny")
    app.button[0].click()  # the form's submit button is the first button on the page
    app.run()
    assert not app.exception, app.exception
    denied = seeded.sql("SELECT count(*) FROM spans WHERE policy_effect = 'deny'")[0][0]
    assert f"{denied} spans found" in markdown(app)


def test_readiness_shows_the_five_answers_with_their_verdicts(app, seeded):
    open_view(app, "readiness")
    reader = seeded.reader()
    text = markdown(app)
    for question in ("actions", "authorization", "data", "cost", "boundaries"):
        assert f"**{ask(question, reader).verdict}**" in text
    assert [t.label for t in app.tabs][:5] == ["1 · Actions", "2 · Authorization", "3 · Data", "4 · Cost",
                                               "5 · Boundaries"]
    assert ("ivy@acme.example", "local", "view", "dashboard:readiness fleet") in seeded.access()


def test_oversight_counts_escalations_and_lists_the_approvers(app, seeded):
    open_view(app, "oversight")
    answer = escalations(seeded.reader())
    assert metric(app, "Escalations") == str(len(answer.tables["escalations"]))
    approvers = next(frame.value for frame in app.dataframe if "roles" in frame.value.columns)
    humans = {row[0] for row in seeded.sql("""SELECT DISTINCT approver_id FROM spans
                                              WHERE escalation_outcome IN ('approved', 'denied')""")}
    assert humans and humans <= set(approvers["approver_id"])
    assert ("ivy@acme.example", "local", "view", "dashboard:oversight") in seeded.access()


def test_drift_says_which_agents_cannot_be_scored_yet(app, seeded):
    open_view(app, "drift")
    # One round of work is too little history for any baseline: each agent must be named, not hidden.
    text = markdown(app)
    for (agent,) in seeded.sql("SELECT DISTINCT agent_id FROM spans WHERE agent_id IS NOT NULL"):
        assert f"{agent}:" in text
    assert ("ivy@acme.example", "local", "view", "dashboard:drift fleet") in seeded.access()


def test_evidence_builds_a_bundle_that_verifies_and_shows_the_access_log(app, seeded):
    open_view(app, "evidence")
    next(b for b in app.button if b.label == "Build bundle").click().run()
    assert not app.exception, app.exception
    assert any(s.value.startswith("Verified: all") for s in app.success)
    log = next(frame.value for frame in app.dataframe if "principal" in frame.value.columns)
    assert "dashboard:evidence fleet" in set(log["target"])


def test_with_the_ledger_key_evidence_exports_a_signed_bundle_that_verifies_offline(seeded, monkeypatch):
    monkeypatch.setenv("GOVTRACE_SERVER", seeded.collector.http_url)
    monkeypatch.setenv("GOVTRACE_USER", "ivy@acme.example")
    monkeypatch.delenv("GOVTRACE_DASHBOARD_USERS", raising=False)
    monkeypatch.setenv("GOVTRACE_KEY_DIR", str(seeded.collector.config.key_path))
    st.cache_resource.clear()
    st.cache_data.clear()
    test = AppTest.from_file(str(APP), default_timeout=120)
    test.run()
    open_view(test, "evidence")
    test.selectbox(key="evidence_agent_select").select("finance-agent").run()
    next(b for b in test.button if b.label == "Build bundle").click().run()
    assert not test.exception, test.exception
    assert any(s.value.startswith("Verified offline: all") for s in test.success), [e.value for e in test.error]
    checks = next(frame.value for frame in test.dataframe if "check" in frame.value.columns)
    assert set(checks["result"]) <= {"PASS", "SKIP", "INFO", "WARN"}, checks
    assert any(row[3].startswith("evidence") or "export" in row[2] for row in seeded.access())


def test_opening_a_spans_raw_record_and_searching_are_each_recorded_once(app, seeded):
    trace = seeded.traces["support_ticket"]
    chain_of(app, trace)
    (span_id,) = seeded.sql("SELECT span_id FROM spans WHERE trace_id = ? AND operation = 'execute_tool' LIMIT 1",
                            [trace])[0]
    app.selectbox(key="span_choice").select(span_id).run()
    app.run()  # a rerun shows nothing new, so it records nothing new
    target = f"dashboard:investigate span {span_id}"
    assert [row for row in seeded.access() if row[3] == target] == [("ivy@acme.example", "local", "view", target)]
