"""``govtrace demo --once``: a real collector fed by the governed fleet, answers printed."""

from __future__ import annotations

import subprocess
import sys

import duckdb


def test_demo_stores_the_fleet_and_prints_the_five_answers(tmp_path):
    db = tmp_path / "demo.duckdb"
    result = subprocess.run(
        [sys.executable, "-m", "govtrace.collector.cli", "demo", "--once", "--db", str(db),
         "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr
    for question in ("[actions]", "[authorization]", "[data]", "[cost]", "[boundaries]"):
        assert question in result.stdout
    con = duckdb.connect(str(db), read_only=True)
    agents = {row[0] for row in con.execute("SELECT DISTINCT agent_id FROM spans WHERE agent_id IS NOT NULL").fetchall()}
    tiers = {row[0] for row in con.execute("SELECT DISTINCT policy_tier FROM spans WHERE policy_tier IS NOT NULL").fetchall()}
    outcomes = {row[0] for row in con.execute(
        "SELECT DISTINCT escalation_outcome FROM spans WHERE escalation_outcome IS NOT NULL").fetchall()}
    classes = {row[0] for row in con.execute(
        "SELECT DISTINCT data_classification FROM spans WHERE data_classification IS NOT NULL").fetchall()}
    delegated = con.execute(
        "SELECT count(*) FROM spans WHERE delegating_agent = 'ops-orchestrator' AND operation = 'invoke_agent'"
    ).fetchone()[0]
    con.close()
    assert len(agents) >= 5
    assert tiers == {1, 2, 3, 4}
    assert {"approved", "denied", "expired"} <= outcomes
    assert {"internal", "confidential", "restricted", "pii"} <= classes
    assert delegated == 2
