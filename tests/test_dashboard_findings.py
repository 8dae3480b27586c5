"""What the Fleet and Drift views conclude: findings per agent, the scorecard, the drift stand-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from govtrace.dashboard import drift_baseline, governance

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def inventory(**overrides) -> pd.DataFrame:
    row = {"agent_id": "a", "owner": "owner@acme.example", "credentials": 1, "last_seen": pd.Timestamp("2026-06-01"),
           "spans": 10, "credentialed_spans": 10, "tool_calls": 4, "policy_checked": 4}
    row.update(overrides)
    return pd.DataFrame([row])


def test_an_agent_without_owner_or_credential_is_flagged_as_shadow():
    found = governance.findings(inventory(owner=None, credentials=0), NOW)[0]
    assert found == ["shadow: no owner", "shadow: no credential presented"]


def test_an_agent_silent_for_more_than_thirty_days_is_abandoned():
    silent = governance.findings(inventory(last_seen=pd.Timestamp("2026-04-01")), NOW)[0]
    assert silent == ["abandoned: silent for 61 days"]
    assert governance.findings(inventory(last_seen=pd.Timestamp("2026-05-20")), NOW)[0] == []


def test_with_a_registry_unregistered_agents_overdue_reviews_and_unused_grants_are_findings():
    registry = {"a": {"owner": "owner@acme.example", "review_due": "2026-05-01"}}
    found = governance.findings(inventory(), NOW, registry, unused_grants={"a": ["payments:write"]})[0]
    assert found == ["review overdue since 2026-05-01", "unused grants: payments:write"]
    assert governance.findings(inventory(agent_id="b"), NOW, registry)[0] == ["shadow: not in the registry"]


def boundaries(*rows) -> pd.DataFrame:
    columns = ["agent_id", "policy_effect", "sla_seconds", "within_sla", "start_time"]
    return pd.DataFrame([dict(zip(columns, row, strict=True)) for row in rows], columns=columns)


def test_the_scorecard_counts_an_escalation_open_past_its_sla_as_missed():
    long_ago = pd.Timestamp(NOW.replace(tzinfo=None) - timedelta(hours=1))
    recent = pd.Timestamp(NOW.replace(tzinfo=None) - timedelta(seconds=10))
    rows = boundaries(("a", "escalate", 600, True, long_ago), ("a", "escalate", 600, None, long_ago),
                      ("a", "escalate", 600, None, recent))
    card = governance.scorecard(inventory(), rows, pd.DataFrame(columns=["agent_id"]), [], NOW)
    assert card.loc["a", "escalation SLA"] == 0.5  # one met, one missed, one still within its SLA


def test_what_the_telemetry_cannot_judge_is_unknown_not_a_pass():
    card = governance.scorecard(inventory(tool_calls=0, policy_checked=0), boundaries(),
                                pd.DataFrame(columns=["agent_id"]), [], NOW)
    assert np.isnan(card.loc["a", "policy coverage"])
    assert np.isnan(card.loc["a", "escalation SLA"])
    assert np.isnan(card.loc["a", "cost within envelope"])
    assert card.loc["a", "identity"] == 1.0


def test_cost_within_envelope_is_the_share_of_judged_periods_not_breached():
    tasks = pd.DataFrame({"agent_id": ["a", "a", "a", "a"]})
    periods = governance.judged_periods(tasks, [], [], {"a": {"task": 0.5}})
    breaches = [{"agent_id": "a", "period": "task"}]
    card = governance.scorecard(inventory(), boundaries(), periods, breaches, NOW)
    assert card.loc["a", "cost within envelope"] == 0.75


def activity(tool_calls: list[int]) -> pd.DataFrame:
    n = len(tool_calls)
    frame = pd.DataFrame({feature: [1.0] * n for feature in drift_baseline.FEATURES})
    frame["tool_calls"] = tool_calls
    frame.insert(0, "bucket", pd.date_range("2026-06-01", periods=n, freq="h"))
    frame.insert(0, "agent_id", "a")
    return frame


def test_a_burst_of_tool_calls_alerts_and_names_the_feature_that_moved():
    scored = drift_baseline.score(activity([10, 11, 9, 10, 12, 10, 60]))
    assert scored["alert"].tolist() == [False] * 6 + [True]
    assert scored["moved"].iloc[-1][0].startswith("tool_calls +")


def test_steady_behaviour_never_alerts():
    scored = drift_baseline.score(activity([10] * 8))
    assert not scored["alert"].any()
    assert (scored["score"] == 0).all()


def test_too_little_history_is_not_scored_and_says_so():
    result = drift_baseline.baseline_result(activity([10, 50, 10]), "hour")
    assert result.scores["score"].isna().all()
    assert result.notes == ["a: fewer than 4 hour buckets of activity, not scored"]


def test_a_delegated_scope_no_call_used_is_an_unused_grant():
    scopes = pd.DataFrame({"agent_id": ["a"] * 5, "scope": ["tool:list_*", "resource:bank://payments*",
                                                            "operation:read", "op:write", "pay_invoice"]})
    usage = pd.DataFrame({"agent_id": ["a", "a"], "tool_name": ["list_invoices", "pay_invoice"],
                          "resource": ["erp://invoices", "bank://payments"], "operation": ["read", "write"],
                          "executed": [3, 0]})
    # pay_invoice was attempted but never ran, so nothing it would have used counts as used
    assert governance.unused_grants(scopes, usage) == {"a": ["op:write", "pay_invoice", "resource:bank://payments*"]}
    assert governance.scope_used("tool:list_*", usage) == 3
