"""Escalations per tier, per approver and still open, on the Acme day (tests/fixtures/acme.py):
esc-1 approved by dana after 40 s, esc-2 approved by erin 1200 s later in another trace, esc-3
auto-denied at 900 s (all tier 3, SLA 600 s), esc-4 halted at tier 4 (SLA 3600 s) and still open."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import timedelta

import pytest
from fixtures.acme import APPROVAL, DAY, HALT_WIRE, NEXT_DAY, NOW, PAY, PAY_EXPIRED, WIRE, seeded_collector

from govtrace.analytics.escalations import escalations


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    with seeded_collector(tmp_path_factory.mktemp("acme")) as seeded:
        yield seeded


def test_per_tier_time_to_decision_sla_breaches_auto_denies_and_open_items(acme):
    answer = escalations(acme.reader, since=DAY, until=NEXT_DAY, now=NOW)
    tiers = answer.rows.set_index("tier")
    assert tiers.loc[3, ["escalations", "approved", "denied", "auto_denied", "open"]].tolist() == [3, 2, 0, 1, 0]
    assert tiers.loc[3, ["median_time_to_decision_s", "max_time_to_decision_s"]].tolist() == [900.0, 1200.0]
    assert tiers.loc[3, "sla_breaches"] == 2  # esc-2 (1200 s) and esc-3 (900 s) against 600 s
    assert tiers.loc[3, "approvers"] == "dana@acme.example, erin@acme.example"
    assert tiers.loc[4, ["escalations", "open", "sla_breaches"]].tolist() == [1, 1, 1]  # open 12 h > 1 h
    assert answer.verdict == ("4 escalations over 2 tiers: 3 decided (1 auto-denied), 1 still open; median time to "
                              "decision 900 s; 3 SLA breaches; 2 approvers.")
    assert answer.status == "breach"
    assert answer.evidence == [PAY, WIRE, PAY_EXPIRED, HALT_WIRE, APPROVAL]


def test_decisions_per_approver(acme):
    approvers = escalations(acme.reader, since=DAY, until=NEXT_DAY, now=NOW).tables["approvers"]
    assert approvers.to_dict("records") == [
        {"approver_id": "dana@acme.example", "roles": "finance-controller", "decisions": 1, "approved": 1,
         "denied": 0, "tiers": "3", "median_time_to_decision_s": 40.0, "sla_breaches": 0},
        {"approver_id": "erin@acme.example", "roles": "treasury", "decisions": 1, "approved": 1, "denied": 0,
         "tiers": "3", "median_time_to_decision_s": 1200.0, "sla_breaches": 1},
    ]


def test_an_open_escalation_breaches_its_sla_only_once_it_is_older_than_the_sla(acme):
    early = escalations(acme.reader, since=DAY, until=NEXT_DAY, now=DAY + timedelta(hours=12, minutes=30))
    (still_open,) = early.tables["open"].to_dict("records")
    assert still_open["escalation_id"] == "esc-4"
    assert still_open["sla_breached"] is False
    assert early.rows.set_index("tier").loc[4, "sla_breaches"] == 0


def test_an_agent_with_no_escalations_gets_no_data(acme):
    quiet = escalations(acme.reader, agent="support-agent", since=DAY, until=NEXT_DAY, now=NOW)
    assert quiet.status == "no_data" and quiet.rows.empty


def test_escalations_command_prints_the_approvers_table_as_csv(acme):
    result = subprocess.run(
        [sys.executable, "-m", "govtrace.collector.cli", "escalations", "--since", DAY.isoformat(),
         "--until", NEXT_DAY.isoformat(), "--now", NOW.isoformat(), "--csv", "--table", "approvers",
         "--server", acme.collector.http_url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["approver_id"], r["decisions"]) for r in rows] == [("dana@acme.example", "1"),
                                                                  ("erin@acme.example", "1")]
