"""Agent inventory: the Acme registry (tests/fixtures/acme.py) against the Acme telemetry, exactly;
registry validation; and each registry load stored as a versioned audit event."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from fixtures.acme import NOW, REFUND, REGISTRY_YAML, registry_file, seeded_collector

from govtrace.analytics.inventory import inventory
from govtrace.analytics.registry import (
    RegistryError,
    entries,
    envelopes,
    history,
    load_registry,
    parse_registry,
    record_load,
    recorded_entries,
    registry_at,
)
from govtrace.instrumentation.demo_fleet import FLEET

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    with seeded_collector(tmp_path_factory.mktemp("acme")) as seeded:
        yield seeded


def findings(answer) -> set[tuple]:
    return {(f["finding"], f["agent_id"], f["kind"], f["name"]) for f in answer.rows.to_dict("records")}


def test_findings_name_shadow_abandoned_ownerless_overdue_unused_and_ungranted(acme):
    answer = inventory(acme.reader, parse_registry(REGISTRY_YAML), now=NOW)
    assert findings(answer) == {
        ("shadow", "reporting-agent", None, None),
        ("abandoned", "legacy-bot", None, None),
        ("no_owner", "ops-orchestrator", None, None),
        ("review_overdue", "finance-agent", None, None),  # reviewed 2025-11-15, 108 days before
        ("removal_candidate", "finance-agent", "tool", "refund_payment"),
        ("violation", "support-agent", "tool", "issue_refund"),
        ("violation", "support-agent", "resource", "bank://refunds"),
        ("violation", "support-agent", "operation", "write"),
    }
    assert answer.verdict == ("6 agents (5 registered): 1 abandoned, 1 no owner, 1 removal candidate, "
                              "1 review overdue, 1 shadow, 3 violation.")
    assert answer.status == "breach"
    violation = answer.rows[(answer.rows["finding"] == "violation") & (answer.rows["kind"] == "tool")].iloc[0]
    assert violation["evidence"] == [REFUND]
    assert violation["detail"] == "tool issue_refund exercised once but never granted"


def test_a_blocked_call_is_neither_a_violation_nor_the_use_of_a_grant(acme):
    # finance-agent tried export_ledger (never granted) and was denied: no violation.
    answer = inventory(acme.reader, parse_registry(REGISTRY_YAML), now=NOW)
    assert not any(name == "export_ledger" for *_, name in findings(answer))
    # Without its approved and allowed calls, pay_invoice would be unused; they count, so it is not.
    assert ("removal_candidate", "finance-agent", "tool", "pay_invoice") not in findings(answer)


def test_a_retired_agent_is_not_reviewed_and_an_agent_acting_after_retirement_is_flagged(acme):
    registry = parse_registry(REGISTRY_YAML.replace("  - id: support-agent\n",
                                                    "  - id: support-agent\n    status: suspended\n"))
    answer = inventory(acme.reader, registry, now=NOW)
    assert ("retired_but_active", "support-agent", None, None) in findings(answer)
    assert not any(agent == "hr-agent" for _, agent, *_ in findings(answer))


def test_the_inventory_table_lists_registered_and_seen_agents_with_their_activity(acme):
    agents = inventory(acme.reader, parse_registry(REGISTRY_YAML), now=NOW).tables["agents"].set_index("agent_id")
    assert agents.index.tolist() == ["ops-orchestrator", "finance-agent", "support-agent", "legacy-bot", "hr-agent",
                                     "reporting-agent"]
    assert agents.loc["finance-agent", "tool_calls"] == 8  # 7 on the day, plus the OpenLLMetry duplicate
    assert agents.loc["reporting-agent", "status"] == "unregistered"
    assert agents.loc["legacy-bot", "spans"] == 0


@pytest.mark.parametrize("text, message", [
    ("agents:\n  - id: a\n    owner: x\n    ownr: y\n", "agents[0] (a): unknown keys ['ownr']"),
    ("agents:\n  - name: nameless\n", "agents[0]: 'id' is required"),
    ("agents:\n  - id: a\n  - id: a\n", "agents[1]: agent id 'a' is listed twice"),
    ("agents:\n  - id: a\n    risk_tier: extreme\n", "risk_tier must be one of low, medium, high, critical"),
    ("agents:\n  - id: a\n    last_review: soon\n", "last_review must be a date"),
    ("agents:\n  - id: a\n    cost_envelope: {per_day: -1}\n", "cost_envelope.per_day must be a non-negative number"),
    ("agents:\n  - id: a\n    granted: {tools: delegate}\n", "granted.tools must be a list of names"),
    ("agent: []\n", "expected a mapping with an 'agents' list"),
])
def test_registry_validation_names_the_entry_and_the_key_at_fault(text, message):
    with pytest.raises(RegistryError) as raised:
        parse_registry(text, "agents.yaml")
    assert message in str(raised.value)


def test_each_registry_load_is_stored_as_a_versioned_event_and_the_registry_in_force_can_be_rebuilt(tmp_path):
    first = load_registry(registry_file(tmp_path))
    changed = tmp_path / "changed.yaml"
    changed.write_text(REGISTRY_YAML.replace("per_task: 0.05, per_hour", "per_task: 0.07, per_hour"))
    second = load_registry(changed)
    assert first.version != second.version
    with seeded_collector(tmp_path) as acme:
        before = datetime.now(UTC)
        assert registry_at(acme.reader) is None and recorded_entries(acme.reader) is None
        assert entries(acme.reader) == {}
        record_load(first, server=acme.collector.http_url, loaded_by="auditor@acme.example")
        between = datetime.now(UTC)
        record_load(second, server=acme.collector.http_url)
        loads = history(acme.reader)
        assert loads["version"].tolist() == [first.version, second.version]
        assert loads["loaded_by"].iloc[0] == "auditor@acme.example"
        assert loads["agents"].tolist() == [5, 5]
        assert registry_at(acme.reader, before) is None
        assert registry_at(acme.reader, between).agents == first.agents
        assert registry_at(acme.reader).agents == second.agents
        assert envelopes(acme.reader)["finance-agent"] == {"task": 0.07, "hour": 0.08, "day": 0.1}
        assert recorded_entries(acme.reader)["finance-agent"]["review_due"] == "2026-02-13"


def test_a_load_into_a_database_file_goes_through_a_collector_started_for_it(tmp_path):
    registry = load_registry(registry_file(tmp_path))
    with seeded_collector(tmp_path):
        pass  # the database file now exists, and no collector runs on it
    record_load(registry, db=str(tmp_path / "acme.duckdb"))
    from govtrace.analytics.reader import FileReader

    assert history(FileReader(tmp_path / "acme.duckdb"))["version"].tolist() == [registry.version]


def test_agents_command_records_the_load_and_prints_findings(acme, tmp_path):
    registry = registry_file(tmp_path).rename(tmp_path / "acme-agents.yaml")  # no ./agents.yaml to fall back on
    base = [sys.executable, "-m", "govtrace.collector.cli", "agents", "--server", acme.collector.http_url,
            "--now", NOW.isoformat()]
    result = subprocess.run(base + ["--registry", str(registry), "--json"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "recorded (span" in result.stderr
    data = json.loads(result.stdout)
    assert {(f["finding"], f["agent_id"]) for f in data["rows"]} >= {("shadow", "reporting-agent"),
                                                                     ("abandoned", "legacy-bot")}
    assert data["extra"]["registry_version"] == load_registry(registry).version
    # Without a file, the registry recorded in the store is used.
    again = subprocess.run(base + ["--csv", "--table", "agents"], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "using the registry recorded at" in again.stderr
    assert again.stdout.splitlines()[0].startswith("agent_id,registered,name,owner")
    listed = subprocess.run(base[:6] + ["--history"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert load_registry(registry).version[:12] in listed.stdout


def test_the_example_registry_covers_the_demo_fleet_but_one_agent_and_adds_a_silent_one():
    example = load_registry(ROOT / "analytics" / "examples" / "agents.yaml")
    assert set(FLEET) - set(example.agents) == {"it-agent"}
    assert set(example.agents) - set(FLEET) == {"legacy-invoice-bot"}
