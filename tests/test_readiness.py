"""The five readiness answers on the seeded Acme day (tests/fixtures/acme.py), exactly.

The fixture's spans reach a real collector over OTLP/HTTP; answers are read in-process, through the
collector's read API and from the SQL they carry, and must agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from fixtures.acme import (
    APPROVAL,
    DAY,
    EMAIL,
    EXPORT,
    FINANCE_CALLS,
    HALT_WIRE,
    LIST,
    NEXT_DAY,
    NOW,
    PAY,
    PAY_EXPIRED,
    PAY_ORPHAN,
    PURGE,
    REGISTRY_YAML,
    T1,
    T6,
    WIRE,
    seeded_collector,
)

from govtrace.analytics.reader import CollectorReader
from govtrace.analytics.readiness import QUESTIONS, ask, readiness
from govtrace.analytics.registry import parse_registry
from govtrace.analytics.views import definitions

ENVELOPES = parse_registry(REGISTRY_YAML).envelopes()


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    with seeded_collector(tmp_path_factory.mktemp("acme")) as seeded:
        yield seeded


def answer(acme, question, agent="finance-agent", **kwargs):
    return ask(question, acme.reader, agent=agent, since=DAY, until=NEXT_DAY, **kwargs)


def test_actions_list_each_tool_call_of_the_agent_once_in_order_with_its_final_outcome(acme):
    actions = answer(acme, "actions")
    assert actions.rows["span_id"].tolist() == FINANCE_CALLS
    assert dict(zip(actions.rows["span_id"], actions.rows["outcome"], strict=True)) == {
        LIST: "ok", PAY: "ok (approved)", WIRE: "ok (approved)", EXPORT: "blocked: denied by policy",
        PAY_EXPIRED: "blocked: auto_denied", PAY_ORPHAN: "ok", HALT_WIRE: "blocked: halted (tier 4)"}
    assert actions.verdict == ("Agent finance-agent made 7 tool calls in 2 tasks: 4 ok, 3 blocked, 0 failed, "
                               "0 awaiting approval.")
    assert actions.evidence == FINANCE_CALLS
    # The list_invoices call was recorded twice (govtrace and OpenLLMetry): it is counted once.
    assert actions.rows.loc[actions.rows["span_id"] == LIST, "recorded_by"].item() == 2


def test_actions_of_the_fleet_say_which_calls_lack_a_policy_check_an_identity_a_target_or_a_digest(acme):
    actions = answer(acme, "actions", agent=None)
    assert len(actions.rows) == 13
    assert actions.verdict == "The fleet made 13 tool calls in 5 tasks: 9 ok, 3 blocked, 1 failed, 0 awaiting approval."
    assert actions.status == "gaps"
    assert actions.coverage == [
        "no policy check recorded: 1 of 13 tool calls",
        "no target (unknown): 2 of 13 tool calls",
        "no arguments digest (unknown): 1 of 13 tool calls",
        "no agent identity: 1 tool call",
        "recorded by more than one instrumentation, counted once: 1 tool call",
    ]
    assert actions.completeness == {"tool_calls": 13, "with_policy_check": 12, "with_target": 11,
                                    "with_arguments_digest": 12, "unattributed_tool_calls": 1}
    unattributed = actions.rows[actions.rows["agent_id"].isna()]
    assert unattributed["span_id"].tolist() == [PURGE]
    assert actions.rows.loc[actions.rows["span_id"] == EMAIL, "outcome"].item() == "error: SMTPTimeout"


def test_an_agent_answer_warns_that_calls_without_identity_may_be_its_own(acme):
    assert answer(acme, "actions").coverage == [
        "no agent identity anywhere in the window (these may be this agent's): 1 tool call",
        "recorded by more than one instrumentation, counted once: 1 tool call",
    ]


def test_authorization_names_policy_delegation_and_the_approver_even_when_the_approval_came_later(acme):
    auth = answer(acme, "authorization")
    rows = auth.rows.set_index("span_id")
    assert auth.verdict == ("7 of 7 tool calls were decided by policy (acme-fleet); 4 escalated, 3 decided by "
                            "dana@acme.example, erin@acme.example.")
    assert rows.loc[WIRE, "approval_outcome"] == "approved"
    assert rows.loc[WIRE, "approver_id"] == "erin@acme.example"
    assert rows.loc[WIRE, "resolution_span_id"] == APPROVAL
    assert rows.loc[PAY, "approver_id"] == "dana@acme.example"
    assert rows.loc[LIST, "delegation_chain"] == "alice@acme.example -> ops-orchestrator -> finance-agent"
    assert rows.loc[HALT_WIRE, "delegation_chain"] == "bob@acme.example -> finance-agent"
    assert auth.evidence == [*FINANCE_CALLS, APPROVAL]
    assert "no recorded decision (still open): 1 of 4 escalated calls" in auth.coverage


def test_authorization_of_the_fleet_counts_missing_credentials_principals_and_policy_versions(acme):
    auth = answer(acme, "authorization", agent=None)
    assert auth.coverage[:3] == ["no policy check recorded: 1 of 13 tool calls",
                                 "no credential recorded (unknown): 2 of 13 tool calls",
                                 "no principal they acted for (unknown): 2 of 13 tool calls"]
    assert auth.completeness["with_policy_version"] == 12  # every policy-checked call names its version
    assert auth.rows.loc[auth.rows["span_id"] == EMAIL, "policy_effect"].item() == "no policy check recorded"


def test_data_answer_totals_records_by_operation_and_lists_the_classifications(acme):
    data = answer(acme, "data")
    assert data.verdict == ("7 data accesses on 4 resources (read 900120 records, send 2 records, write 3 records); "
                            "classifications: confidential, restricted.")
    assert data.status == "complete"
    fleet = answer(acme, "data", agent=None)
    assert fleet.coverage == ["no data access recorded (resource unknown): 2 of 13 tool calls"]
    assert fleet.rows["record_count"].sum() == 900_129


def test_cost_per_task_prices_tokens_from_the_table_and_names_what_it_cannot_price(acme):
    cost = answer(acme, "cost", agent=None, envelopes=ENVELOPES)
    tasks = {(r["task"], r["agent_id"]): round(r["cost"], 6) for r in cost.rows.to_dict("records")}
    # finance-agent in T1: 0.002 + 0.003 + 0.004 reported, plus 2000 x 0.15 + 400 x 0.60 per million = 0.00054
    assert tasks[(T1, "finance-agent")] == 0.00954
    assert tasks[(T6, "finance-agent")] == 0.12
    assert round(cost.rows["cost"].sum(), 6) == 0.15254
    assert cost.completeness == {"cost_spans": 11, "reported": 9, "computed": 1, "unknown": 1, "agents": 4,
                                 "agents_with_envelope": 2}
    assert cost.coverage == [
        "no cost reported and no price for the model (unknown): 1 model or token-bearing span",
        "no cost envelope registered (within envelope: unknown): agent reporting-agent",
        "no cost envelope registered (within envelope: unknown): agent support-agent",
    ]
    assert cost.extra["prices"]["version"] == "2025-06-01"


def test_cost_flags_the_task_hour_and_day_over_the_agents_envelope_with_the_spans_behind_each(acme):
    cost = answer(acme, "cost", envelopes=ENVELOPES)
    breaches = {(b["period"], b["at"]): (round(b["cost"], 5), b["limit"]) for b in cost.extra["breaches"]}
    assert breaches == {("task", T6): (0.12, 0.05), ("hour", "2026-03-02 12:00"): (0.12, 0.08),
                        ("day", "2026-03-02"): (0.12954, 0.1)}
    day = next(b for b in cost.extra["breaches"] if b["period"] == "day")
    assert len(day["span_ids"]) == 5 and set(day["span_ids"]) <= set(cost.evidence)
    assert cost.status == "breach"


def test_cost_flags_a_day_whose_cost_per_task_exceeds_one_and_a_half_times_the_agents_baseline(acme):
    cost = answer(acme, "cost", envelopes=ENVELOPES)
    (anomaly,) = cost.extra["anomalies"]
    # 0.12954 over two tasks, against 0.03 over the three tasks of the seven days before
    assert round(anomaly["cost_per_task"], 5) == 0.06477
    assert round(anomaly["baseline_cost_per_task"], 5) == 0.01
    calm = ask("cost", acme.reader, agent="finance-agent", since=DAY, until=NEXT_DAY, envelopes=ENVELOPES,
               anomaly_factor=10)
    assert calm.extra["anomalies"] == []


def test_boundaries_say_how_each_was_resolved_by_whom_and_against_its_sla(acme):
    bounds = answer(acme, "boundaries", now=NOW)
    rows = bounds.rows.set_index("span_id")
    assert bounds.verdict == ("5 boundaries triggered: 2 approved, 1 auto_denied, 1 denied by policy, 1 open; "
                              "3 decided after their SLA or overdue.")
    assert rows.loc[PAY, ["resolution", "resolved_by", "time_to_decision_s", "within_sla"]].tolist() == [
        "approved", "dana@acme.example", 40.0, True]
    assert rows.loc[WIRE, ["resolution", "resolved_by", "time_to_decision_s", "within_sla"]].tolist() == [
        "approved", "erin@acme.example", 1200.0, False]
    assert rows.loc[PAY_EXPIRED, ["resolution", "resolved_by", "within_sla"]].tolist() == [
        "auto_denied", "deadline (automatic)", False]
    assert rows.loc[EXPORT, ["boundary", "resolution", "resolved_by"]].tolist() == [
        "scope", "denied by policy", "policy acme-fleet"]
    assert rows.loc[HALT_WIRE, ["resolution", "within_sla"]].tolist() == ["open", False]  # 12 h > 1 h
    assert APPROVAL in bounds.evidence


def test_an_agent_with_no_activity_in_the_window_gets_no_data_rather_than_an_empty_table(acme):
    for question in QUESTIONS:
        quiet = ask(question, acme.reader, agent="legacy-bot", since=DAY, until=NEXT_DAY)
        assert quiet.rows.empty
        assert quiet.status in ("no_data", "complete")
        assert "legacy-bot" in quiet.verdict


def test_the_report_gives_a_verdict_per_question_and_the_worst_status_overall(acme):
    report = readiness(acme.reader, "finance-agent", DAY, NEXT_DAY, envelopes=ENVELOPES, now=NOW)
    assert {q: a.status for q, a in report.answers.items()} == {
        "actions": "gaps", "authorization": "gaps", "data": "complete", "cost": "breach", "boundaries": "gaps"}
    assert report.status == "breach"
    assert report.summary["question"].tolist() == list(QUESTIONS)
    assert json.loads(json.dumps(report.to_dict(), default=str))["verdicts"]["data"]["status"] == "complete"


def test_every_answer_carries_sql_that_reproduces_its_rows_on_a_plain_copy_of_the_table(acme, tmp_path):
    copy = duckdb.connect(str(tmp_path / "copy.duckdb"))
    copy.register("live", acme.collector.store.cursor().sql("SELECT * FROM spans").to_arrow_table())
    copy.execute("CREATE TABLE spans AS SELECT * FROM live")
    for question in QUESTIONS:
        original = answer(acme, question, now=NOW, envelopes=ENVELOPES)
        again = copy.sql(original.sql, params=original.params).df()
        if question == "data":  # its SQL also returns the tool calls without data access, for coverage
            again = again[again["resource"].notna()]
        if question == "cost":  # its SQL returns the costed spans that the answer sums
            assert round(again["cost"].sum(), 9) == round(original.rows["cost"].sum(), 9)
            assert set(again["task"]) == set(original.rows["task"])
            continue
        assert again["span_id"].tolist() == original.rows["span_id"].tolist(), question


def test_answers_through_the_collector_read_api_match_the_in_process_answers(acme):
    remote = CollectorReader(acme.collector.http_url, purpose="test readiness")
    for question in QUESTIONS:
        kwargs = {"envelopes": ENVELOPES} if question == "cost" else {}
        here = ask(question, acme.reader, agent=None, since=DAY, until=NEXT_DAY, **kwargs)
        there = ask(question, remote, agent=None, since=DAY, until=NEXT_DAY, **kwargs)
        assert (there.verdict, there.evidence, there.coverage) == (here.verdict, here.evidence, here.coverage)


def test_readiness_command_prints_a_verdict_per_question_and_json_with_evidence(acme, tmp_path):
    registry = tmp_path / "agents.yaml"
    registry.write_text(REGISTRY_YAML)
    base = [sys.executable, "-m", "govtrace.collector.cli", "readiness", "--agent", "finance-agent",
            "--since", DAY.isoformat(), "--until", NEXT_DAY.isoformat(), "--registry", str(registry),
            "--server", acme.collector.http_url]
    text = subprocess.run(base, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "Readiness of agent finance-agent" in text.stdout
    for question in QUESTIONS:
        assert f"[{question}]" in text.stdout
    data = json.loads(subprocess.run(base + ["--json"], capture_output=True, text=True, timeout=120,
                                     cwd=tmp_path).stdout)
    assert data["verdicts"]["cost"]["status"] == "breach"
    assert data["answers"]["actions"]["evidence_span_ids"] == FINANCE_CALLS


def test_every_documented_view_runs_on_a_copy_of_the_store_and_is_described_in_the_docs(acme, tmp_path):
    script = subprocess.run([sys.executable, "-m", "govtrace.collector.cli", "views"], capture_output=True,
                            text=True, timeout=120).stdout
    copy = duckdb.connect(str(tmp_path / "copy.duckdb"))
    copy.register("live", acme.collector.store.cursor().sql("SELECT * FROM spans").to_arrow_table())
    copy.execute("CREATE TABLE spans AS SELECT * FROM live")
    copy.execute(script)
    docs = (Path(__file__).resolve().parent.parent / "docs" / "analytics.md").read_text()
    for name, view in definitions().items():
        assert view.doc, f"view {name} has no comment in views.sql"
        assert f"`{name}`" in docs, f"view {name} is not described in docs/analytics.md"
        copy.execute(f"SELECT * FROM {name}").fetchall()
    # 14 tool call spans were stored; the OpenLLMetry copy of list_invoices folds into the govtrace one.
    assert copy.execute("SELECT count(*) FROM actions").fetchone()[0] == 13


def test_bench_queries_times_each_question_the_chain_and_fleet_cost_on_a_generated_fleet(tmp_path):
    from types import SimpleNamespace

    from govtrace.analytics.bench import run_bench

    figures = run_bench(SimpleNamespace(spans=20_000, db=str(tmp_path / "fleet.duckdb"), repeat=2, json=True))
    assert abs(figures["spans"] - 20_000) < 500 and figures["generated"]["spans"] == figures["spans"]
    for name in (*[f"{q}_ms_median" for q in QUESTIONS], "chain_ms_median", "fleet_cost_day_ms_median"):
        assert figures[name] > 0, name
    assert figures["chain_traces"] == 2
    assert figures["proposed_columns"] == ["link_trace_ids", "trace_key"]
