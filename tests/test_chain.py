"""The decision chain of the Acme month-end close (tests/fixtures/acme.py), exactly, from whichever of
its traces the investigator starts; and of a task in a generated fleet."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fixtures.acme import (
    APPROVAL,
    DELEGATE,
    EXPORT,
    FIN_CHAT,
    FIN_CHAT_DUP,
    FIN_TASK,
    LIST,
    LIST_DUP,
    ORCH_CHAT,
    PAY,
    PAY_EXPIRED,
    PAY_ORPHAN,
    REP_CHAT,
    REP_TASK,
    REP_TOOL,
    ROOT,
    T1,
    T2,
    T3,
    T4,
    WIRE,
    seeded_collector,
)

from govtrace.analytics.chain import chain
from govtrace.analytics.fleetgen import FleetSpec, generate
from govtrace.analytics.reader import CollectorReader, FileReader

CLOSE = [ROOT, ORCH_CHAT, DELEGATE, FIN_TASK, FIN_CHAT, LIST, PAY, WIRE, EXPORT, PAY_EXPIRED, PAY_ORPHAN,
         REP_TASK, REP_TOOL, REP_CHAT, APPROVAL]  # in time order


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    with seeded_collector(tmp_path_factory.mktemp("acme")) as seeded:
        yield seeded


def test_the_chain_follows_delegation_a_late_approval_and_a_fragment_that_lost_its_context(acme):
    close = chain(acme.reader, T1)
    assert close.steps["span_id"].tolist() == CLOSE
    assert close.steps["order"].tolist() == list(range(1, 16))
    assert [(t["trace_id"], t["relation"]) for t in close.traces] == [(T1, "task"), (T3, "conversation"),
                                                                       (T2, "approval")]
    assert [(d["from"], d["to"], d["inferred"]) for d in close.delegations] == [
        ("alice@acme.example", "ops-orchestrator", False),
        ("ops-orchestrator", "finance-agent", False),
        ("ops-orchestrator", "reporting-agent", True),  # its trace began during the orchestrator's task
    ]
    assert close.agents == ["ops-orchestrator", "finance-agent", "reporting-agent"]
    assert close.evidence == CLOSE


def test_each_tool_call_shows_its_policy_decision_final_approval_and_outcome(acme):
    steps = chain(acme.reader, T1).steps.set_index("span_id")
    assert steps.loc[[PAY, WIRE, EXPORT, PAY_EXPIRED, PAY_ORPHAN], "outcome"].tolist() == [
        "executed after approval", "approved later; execution not recorded", "denied by policy",
        "not executed (auto_denied)", "ok"]
    assert steps.loc[WIRE, ["policy_effect", "policy_tier", "approval", "approver_id"]].tolist() == [
        "escalate", 3, "approved", "erin@acme.example"]
    assert steps.loc[APPROVAL, ["step", "parent_span_id", "outcome"]].tolist() == [
        "approval", WIRE, "approved by erin@acme.example"]
    assert steps.loc[DELEGATE, "step"] == "tool call" and steps.loc[FIN_TASK, "step"] == "task"


def test_duplicated_instrumentation_is_shown_once_and_an_orphan_hangs_from_its_trace_root(acme):
    close = chain(acme.reader, T1)
    assert LIST_DUP not in close.evidence and FIN_CHAT_DUP not in close.evidence
    steps = close.steps.set_index("span_id")
    assert steps.loc[LIST, "recorded_by"] == 2 and steps.loc[FIN_CHAT, "recorded_by"] == 2
    assert steps.loc[PAY_ORPHAN, ["parent_span_id", "depth"]].tolist() == [ROOT, 1]
    assert steps.loc[[ROOT, DELEGATE, FIN_TASK, PAY, APPROVAL, REP_TASK, REP_TOOL], "depth"].tolist() == [
        0, 1, 2, 3, 4, 1, 2]
    assert close.coverage == [
        "the same operation recorded by a second instrumentation, shown once: 2 spans",
        f"trace {T3} joined by conversation: context was lost at a boundary",
        "parent never received (context lost at a boundary), hung from the trace's root: 1 span",
        "no agent identity: 1 span",
    ]


@pytest.mark.parametrize("start", [T2, T3], ids=["from the approval", "from the fragment"])
def test_starting_from_another_trace_of_the_task_finds_the_same_chain(acme, start):
    found = chain(acme.reader, start)
    assert sorted(found.evidence) == sorted(CLOSE)
    assert found.steps["span_id"].tolist() == CLOSE


def test_a_task_without_relations_stays_in_its_own_trace(acme):
    ticket = chain(acme.reader, T4)
    assert [t["trace_id"] for t in ticket.traces] == [T4]
    assert ticket.coverage == ["no policy check recorded: 1 tool call"]
    assert [(d["from"], d["to"]) for d in ticket.delegations] == [("customer-8812", "support-agent")]


def test_an_unknown_trace_says_nothing_was_recorded(acme):
    nothing = chain(acme.reader, "f" * 32)
    assert nothing.steps.empty
    assert nothing.coverage == [f"no spans recorded for trace {'f' * 32}"]


def test_the_chain_read_through_the_collector_matches_the_in_process_chain(acme):
    remote = chain(CollectorReader(acme.collector.http_url, purpose="test chain"), T1)
    assert remote.evidence == CLOSE
    assert remote.delegations == chain(acme.reader, T1).delegations


def test_chain_command_prints_who_delegated_to_whom_and_every_step(acme):
    base = [sys.executable, "-m", "govtrace.collector.cli", "chain", T1, "--server", acme.collector.http_url]
    text = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "ops-orchestrator -> finance-agent, acting for alice@acme.example, depth 1" in text.stdout
    assert "tool wire_transfer" in text.stdout and "approved later; execution not recorded" in text.stdout
    as_json = json.loads(subprocess.run(base + ["--json"], capture_output=True, text=True, timeout=120).stdout)
    assert as_json["evidence_span_ids"] == CLOSE
    missing = subprocess.run([*base[:4], "0" * 31 + "1", *base[5:]], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1


@pytest.mark.parametrize("proposed", [True, False], ids=["proposed typed columns", "schema as it is"])
def test_on_a_generated_fleet_a_task_with_a_late_approval_finds_its_approval_trace(tmp_path, proposed):
    db = tmp_path / "fleet.duckdb"
    generate(db, FleetSpec(spans=20_000, agents=12, days=2, proposed_columns=proposed))
    reader = FileReader(db)
    approval = reader.query(
        "SELECT trace_id, json_extract_string(record, '$.links[0].trace_id') AS task, "
        "json_extract_string(record, '$.links[0].span_id') AS call FROM spans "
        "WHERE operation = 'govtrace.approval' ORDER BY seq LIMIT 1").iloc[0]
    found = chain(reader, approval["task"])
    assert approval["trace_id"] in [t["trace_id"] for t in found.traces]
    steps = found.steps.set_index("span_id")
    assert steps.loc[approval["call"], "approval"] in ("approved", "denied")
    # and back: from the approval's own trace to the task it decided
    assert approval["task"] in [t["trace_id"] for t in chain(reader, approval["trace_id"]).traces]
