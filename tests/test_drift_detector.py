"""Baselines, scores, alerts and reports on a small slice of real AgentDojo runs, through a real collector.

The slice: the banking suite's benign runs of every model first (the baseline period), then
gpt-4o's injected runs; and one agent whose benign runs switch from gemini-1.5-flash-001 to -002.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from conftest import SHARED
from sklearn.metrics import roc_auc_score

from govtrace.analytics.drift import replay
from govtrace.analytics.drift.detector import FEATURES, DetectorParams, fit_baseline
from govtrace.analytics.drift.features import load_tasks
from govtrace.analytics.drift.store import DriftStore
from govtrace.analytics.reader import ConnectionReader
from govtrace.collector.cli import main
from govtrace.collector.config import load_config
from govtrace.collector.server import Collector

RUNS = SHARED / "datasets" / "agentdojo" / "agentdojo_published_runs_dev.jsonl.gz"
HELD_OUT = "gpt-4o-2024-05-13"
BANK, FLASH = "slice-banking", "slice-flash"
T0 = 1_717_200_000 * 10**9
PARAMS = DetectorParams(trees=100)
# At the default 1 % the slice's few dozen hijacks rarely cross the threshold (the evaluation's
# TPR at 1 % FPR is low); 5 % lets the explanation tests see alerts.
LENIENT = DetectorParams(trees=100, alert_fpr=0.05)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    records = replay.read_agentdojo(RUNS)
    bank = [r for r in records if r["suite"] == "banking"]
    benign = [replay.agentdojo_run(r, agent_id=BANK, key=f"b{i}") for i, r in enumerate(bank)
              if r["kind"] == "user_task"]
    attacked = [replay.agentdojo_run(r, agent_id=BANK, key=f"a{i}") for i, r in enumerate(bank)
                if r["kind"] == "user_task+injection" and r["model"] == HELD_OUT and r["defence"] is None
                and r["attack"] == "important_instructions"]
    end_of_benign = replay.schedule(benign, T0)
    replay.schedule(attacked, end_of_benign + 3600 * 10**9)
    flash = {m: sorted((r for r in records if r["model"] == m and r["kind"] == "user_task"),
                       key=lambda r: (r["suite"], r["user_task_id"])) for m in ("gemini-1.5-flash-001", "gemini-1.5-flash-002")}
    switch_runs = [replay.agentdojo_run(r, agent_id=FLASH, key=f"f{m}{i}") for m, rs in flash.items()
                   for i, r in enumerate(rs)]
    switch_at = replay.schedule(switch_runs[: len(flash["gemini-1.5-flash-001"])], T0 + 86400 * 10**9)
    replay.schedule(switch_runs[len(flash["gemini-1.5-flash-001"]):], switch_at)
    folder = tmp_path_factory.mktemp("drift")
    config = load_config(None, {"db": str(folder / "govtrace.duckdb"), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0"},
                         environ={})
    with Collector(config) as collector:
        replay.send(collector.grpc_endpoint, benign + attacked + switch_runs)
        reader = ConnectionReader(collector.store)
        yield {
            "collector": collector, "reader": reader, "folder": folder,
            "bank": load_tasks(reader, BANK), "benign_until": _moment(end_of_benign), "switch_at": _moment(switch_at),
            "hijacked": {r.trace_id.hex() for r in attacked if r.labels["injection_succeeded"]},
            "benign_held_out": {r.trace_id.hex() for r in benign if r.labels["model"] == HELD_OUT},
        }


def _moment(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 10**9, tz=UTC) + timedelta(microseconds=ns % 10**9 // 1000)


def _leave_out(world, params=PARAMS):
    frame = world["bank"]
    return fit_baseline(frame.between(until=world["benign_until"], exclude_models=(HELD_OUT,)), params)


def _held_out(world):
    return world["bank"].subset(sorted(world["hijacked"] | world["benign_held_out"]))


def test_the_same_seed_gives_the_same_scores_and_another_seed_other_scores(world):
    first = _leave_out(world).score(_held_out(world), explain=False)
    again = _leave_out(world).score(_held_out(world), explain=False)
    other = _leave_out(world, DetectorParams(trees=100, seed=7)).score(_held_out(world), explain=False)
    assert np.array_equal(first["score"].to_numpy(), again["score"].to_numpy())
    assert not np.allclose(first["score"].to_numpy(), other["score"].to_numpy())


def test_hijacked_runs_score_above_benign_runs_of_a_model_the_baseline_never_saw(world):
    baseline = _leave_out(world)
    assert baseline.status == "ready" and HELD_OUT not in baseline.models
    scored = baseline.score(_held_out(world), explain=False)
    hijacked = scored.index.isin(list(world["hijacked"]))
    assert hijacked.sum() > 20 and (~hijacked).sum() > 20
    assert roc_auc_score(hijacked, scored["score"]) > 0.8


def test_an_alert_names_the_features_that_moved_and_the_attackers_account_it_never_saw(world):
    scored = _leave_out(world, LENIENT).score(_held_out(world))
    alerts = scored[scored["alert"]]
    assert len(alerts) > 0
    for _, row in alerts.iterrows():
        assert row["moved"], "an alert must say which features moved"
        for moved in row["moved"]:
            assert moved["feature"] in FEATURES
            # Beyond the baseline's 99th percentile, or (the combined score adds up two detectors)
            # at least in its outer tenth.
            beyond = moved["value"] > moved["baseline_p99"] or moved["baseline_share_above"] <= 0.1
            assert beyond if moved["direction"] == "up" else moved["baseline_share_below"] <= 0.1
    # One benign baseline run once paid the attacker's account, so it is named as rare, not unseen.
    named = [v for u in alerts["unseen"] if u for kind in ("value", "rare value") for v in u.get(kind, [])]
    assert any('send_money.recipient="us133000000121212121212"' == value for value in named)


def test_too_little_baseline_is_a_cold_start_that_says_so_and_never_alerts(world):
    early = world["bank"].tasks.index[:12]
    baseline = fit_baseline(world["bank"].subset(early), PARAMS)
    assert baseline.status == "cold_start"
    assert baseline.describe()["tasks"] == 12
    scored = baseline.score(_held_out(world))
    assert not scored["alert"].any()
    assert scored["score"].isna().all()
    assert baseline.drift(scored) == []


def test_a_stored_baseline_scores_exactly_like_the_one_that_was_fitted(world, tmp_path):
    fitted = _leave_out(world)
    with DriftStore(tmp_path / "drift.duckdb") as store:
        version = store.save_baseline(fitted)
        loaded = store.load_baseline(BANK, version)
    assert loaded.version == version == 1
    assert loaded.threshold == fitted.threshold and loaded.models == fitted.models
    first = fitted.score(_held_out(world), explain=False)["score"].to_numpy()
    second = loaded.score(_held_out(world), explain=False)["score"].to_numpy()
    assert np.array_equal(first, second)


def _cli(capsys, *args) -> dict | list:
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_fit_score_and_report_through_the_cli_show_the_model_change_with_its_first_task(world, capsys, tmp_path):
    source = ["--server", world["collector"].http_url, "--drift-file", str(tmp_path / "d.duckdb")]
    until = world["switch_at"].isoformat()
    fitted = _cli(capsys, "drift", "fit", "--agent", FLASH, "--until", until, "--json", *source)
    assert fitted["baselines"][0]["models"] == {"gemini-1.5-flash-001": 97}
    scored = _cli(capsys, "drift", "score", "--agent", FLASH, "--json", *source)
    assert scored["agents"][0]["tasks_scored"] == 97
    assert scored["agents"][0]["model_changes"][0]["model"] == "gemini-1.5-flash-002"
    report = _cli(capsys, "drift", "report", "--agent", FLASH, "--json", "--drift-file", source[-1])[0]
    change = report["models"]["changes"][0]
    assert change["model"] == "gemini-1.5-flash-002" and change["baseline_models"] == ["gemini-1.5-flash-001"]
    first_new = world["reader"].query(
        "SELECT trace_id FROM spans WHERE agent_id = ? AND model = 'gemini-1.5-flash-002' ORDER BY start_time LIMIT 1",
        [FLASH])["trace_id"].iloc[0]
    assert change["trace_id"] == first_new
    assert main(["drift", "report", "--agent", FLASH, "--drift-file", source[-1]]) == 0
    assert "model version change: gemini-1.5-flash-002" in capsys.readouterr().out


def test_the_cli_report_names_what_moved_in_each_alert(world, capsys, tmp_path):
    drift_file = str(tmp_path / "d.duckdb")
    source = ["--server", world["collector"].http_url, "--drift-file", drift_file]
    until = world["benign_until"].isoformat()
    assert main(["drift", "fit", "--agent", BANK, "--until", until, "--exclude-model", HELD_OUT, "--trees", "100",
                 "--alert-fpr", "0.05", *source]) == 0
    assert main(["drift", "score", "--agent", BANK, *source]) == 0
    capsys.readouterr()
    report = _cli(capsys, "drift", "report", "--agent", BANK, "--json", "--drift-file", drift_file)[0]
    assert report["alerts"]["count"] > 0
    assert all(alert["moved"] for alert in report["alerts"]["top"])
    assert main(["drift", "report", "--agent", BANK, "--drift-file", drift_file]) == 0
    text = capsys.readouterr().out
    assert "above" in text and "of baseline tasks" in text and "never seen value" in text
    assert "closest baseline task: " in text and "not in the closest baseline task: " in text


def test_the_cli_says_cold_start_instead_of_alerting(world, capsys, tmp_path):
    source = ["--server", world["collector"].http_url, "--drift-file", str(tmp_path / "d.duckdb")]
    assert main(["drift", "fit", "--agent", BANK, "--until", _moment(T0 + 60 * 10**9).isoformat(), *source]) == 0
    assert "COLD START" in capsys.readouterr().out
    scored = _cli(capsys, "drift", "score", "--agent", BANK, "--json", *source)["agents"][0]
    assert scored["status"] == "cold_start" and scored["alerts"] == 0
    assert "cold start" in scored["message"]


def test_a_baseline_fitted_with_other_features_asks_for_a_refit_instead_of_a_traceback(world, capsys, tmp_path):
    drift_file = tmp_path / "d.duckdb"
    with DriftStore(drift_file) as store:
        store.save_baseline(_leave_out(world))
        store.con.execute("UPDATE drift_baselines SET features = features[2:]")  # as an older version wrote it
    assert main(["drift", "report", "--agent", BANK, "--drift-file", str(drift_file)]) != 0
    assert "refit it with 'govtrace drift fit'" in capsys.readouterr().err


def test_a_baseline_whose_items_were_read_another_way_asks_for_a_refit(world, capsys, tmp_path):
    # Items are compared by hash: a vocabulary stored before list elements became values of their own
    # would make every familiar list element look new, so it must not score.
    drift_file = tmp_path / "d.duckdb"
    with DriftStore(drift_file) as store:
        store.save_baseline(_leave_out(world))
        assert store.load_baseline(BANK) is not None
        store.con.execute("""UPDATE drift_baselines SET software = '{"scikit-learn": "1.9.1"}'""")  # as version 1 wrote it
    assert main(["drift", "report", "--agent", BANK, "--drift-file", str(drift_file)]) != 0
    assert "items read another way" in capsys.readouterr().err
