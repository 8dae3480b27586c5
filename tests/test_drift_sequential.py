"""Novelty weighting, CUSUM drift charts, the ODDS sanity anchor and the scoring benchmark, on small inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from conftest import SHARED

from govtrace.analytics.drift.novelty import Vocabulary
from govtrace.analytics.drift.sequential import Mewma


def _leaves(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """(trace, key, value) triples as value leaves, hashed like the SQL does (any stable hash will do)."""
    return pd.DataFrame({
        "trace_id": [t for t, _, _ in rows],
        "kind": pd.Categorical(["value"] * len(rows), categories=("tool", "transition", "target", "value")),
        "key": np.array([hash(("k", k)) % 2**63 for _, k, _ in rows], dtype=np.uint64),
        "item": np.array([hash(("v", k, v)) % 2**63 for _, k, v in rows], dtype=np.uint64),
        "text": [f"{k}={v}" for _, k, v in rows],
    })


def test_a_new_value_in_an_argument_that_always_repeats_is_more_surprising_than_in_one_that_is_always_new():
    baseline = []
    for task in range(40):
        baseline.append((f"b{task}", "send_money.recipient", f"iban-{task % 3}"))  # three payees, forever
        baseline.append((f"b{task}", "send_email.body", f"text number {task}"))  # every body is new
    vocab = Vocabulary.from_leaves(_leaves(baseline), 40)
    fresh = _leaves([("new-payee", "send_money.recipient", "attacker-iban"),
                     ("new-body", "send_email.body", "yet another text")])
    novelty = vocab.novelty(fresh, pd.Index(["new-payee", "new-body"]))
    assert novelty.loc["new-payee", "unseen_values"] == novelty.loc["new-body", "unseen_values"] == 1
    assert novelty.loc["new-payee", "value_surprise"] > 3 * novelty.loc["new-body", "value_surprise"]
    assert vocab.unseen_examples(fresh)["new-payee"]["value"] == ["send_money.recipient=attacker-iban"]


def test_familiar_pieces_in_a_combination_no_baseline_task_made_are_uncovered_and_a_repeat_is_not():
    # Forty tasks: twenty pay one of ten payees, twenty delete one of ten files; none does both.
    baseline = []
    for task in range(40):
        if task % 2:
            baseline.append((f"b{task}", "send_money.recipient", f"payee-{task % 10}"))
        else:
            baseline.append((f"b{task}", "delete_file.file_id", f"file-{task % 10}"))
    vocab = Vocabulary.from_leaves(_leaves(baseline), 40)
    fresh = _leaves([("repeat", "send_money.recipient", "payee-1"),
                     ("both", "send_money.recipient", "payee-1"), ("both", "delete_file.file_id", "file-0"),
                     ("new", "send_money.recipient", "attacker")])
    novelty = vocab.novelty(fresh, pd.Index(["repeat", "both", "new"]))
    assert novelty.loc["repeat", "uncovered"] == 0
    assert novelty.loc["both", "unseen_values"] == 0 and novelty.loc["both", "uncovered"] > 0
    # What no task ever touched weighs more than a familiar piece in an unfamiliar company.
    assert novelty.loc["new", "uncovered"] > novelty.loc["both", "uncovered"]
    # An alert names the closest baseline task and what this task did beyond it.
    named = vocab.closest(fresh, pd.Index(["repeat", "both"]))
    assert named["repeat"]["not in the closest baseline task"] == []
    closest = named["both"]["closest baseline task"][0]
    did = {text for trace, _, text in _leaves(baseline)[["trace_id", "key", "text"]].itertuples(index=False)
           if trace == closest}
    assert len(did) == 1 and did | set(named["both"]["not in the closest baseline task"]) == {
        "send_money.recipient=payee-1", "delete_file.file_id=file-0"}


def _baseline_rows(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"tool_calls": rng.poisson(4, n).astype(float), "latency": rng.normal(800, 100, n),
                         "unseen_values": rng.poisson(0.3, n).astype(float)})


def _chart(rows: pd.DataFrame) -> Mewma:
    return Mewma.calibrate(rows, horizon=200, alarm_prob=0.01, streams=1000, seed=0)


def test_a_stream_like_the_baseline_raises_no_drift_alarm():
    chart = _chart(_baseline_rows())
    assert chart.run(_baseline_rows(200, seed=1)) == []


def test_a_sustained_drop_in_tool_calls_raises_an_alarm_that_names_it_and_its_direction():
    chart = _chart(_baseline_rows())
    stream = _baseline_rows(120, seed=2)
    stream["tool_calls"] = np.random.default_rng(3).poisson(1, len(stream)).astype(float)  # 4 a task, now 1
    alarms = chart.run(stream)
    assert alarms, "tool calls dropping to a quarter went unnoticed"
    first = alarms[0]
    assert first["position"] < 60
    strongest = first["moved"][0]
    assert strongest["feature"] == "tool_calls" and strongest["direction"] == "down"
    assert strongest["recent_mean"] < strongest["baseline_mean"]


def test_one_extreme_task_alone_does_not_raise_a_drift_alarm():
    chart = _chart(_baseline_rows())
    stream = _baseline_rows(60, seed=4)
    stream.iloc[30, stream.columns.get_loc("tool_calls")] = 500.0
    assert chart.run(stream) == []


def test_a_shift_in_two_features_at_once_is_named_with_both_directions():
    chart = _chart(_baseline_rows())
    stream = _baseline_rows(120, seed=5)
    stream["latency"] += 60.0  # +0.6 standard deviations
    stream["unseen_values"] = np.random.default_rng(6).poisson(0.8, len(stream)).astype(float)
    alarms = chart.run(stream)
    assert alarms and alarms[0]["position"] < 60
    directions = {m["feature"]: m["direction"] for m in alarms[0]["moved"]}
    assert directions.get("latency") == "up" and directions.get("unseen_values") == "up"


def test_a_chart_survives_the_round_trip_through_its_stored_form():
    chart = _chart(_baseline_rows())
    again = Mewma.from_dict(chart.to_dict())
    stream = _baseline_rows(80, seed=7)
    stream["tool_calls"] += 3
    assert again.run(stream) == chart.run(stream) != []


def test_the_forest_matches_pyod_on_cardio_and_fails_on_vertebral_as_published():
    from govtrace.analytics.drift.odds import PUBLISHED, TOLERANCE, load_mat, roc_auc

    folder = SHARED / "datasets" / "odds"
    cardio, _ = roc_auc(*load_mat(folder / "cardio.mat"), trials=3)
    vertebral, _ = roc_auc(*load_mat(folder / "vertebral.mat"), trials=3)
    assert abs(cardio - PUBLISHED["cardio"]) <= TOLERANCE
    assert vertebral < 0.5


def test_the_scoring_benchmark_scores_every_task_it_generated():
    from govtrace.analytics.drift.bench import SPANS_PER_TASK, bench_drift_scoring

    result = bench_drift_scoring(16_000, agents=2)
    assert result["spans"] == 16_000
    assert result["tasks"] == 16_000 // SPANS_PER_TASK
    assert result["baseline_tasks"] >= 2 * 30
    assert result["score_seconds"] > 0 and result["spans_per_second"] > 0


def test_the_evaluation_breaks_hijacks_down_by_attack_style_against_the_same_benign_runs():
    from govtrace.analytics.drift.evaluate import _by_attack

    # Benign runs score 0..9; one attack style leaves traces (scores above all benign runs), a
    # denial-of-service style stops the agent (scores below them).
    ids = [f"t{i}" for i in range(16)]
    scored = pd.DataFrame({"score": list(range(10)) + [20, 21, 22, -3, -2, -1],
                           "group": ["benign"] * 10 + ["hijacked"] * 6}, index=ids)
    labels = pd.DataFrame({"attack": [None] * 10 + ["important_instructions"] * 3 + ["dos"] * 3}, index=ids)
    out = _by_attack(scored, labels)
    assert out == {"dos": {"hijacked": 3, "roc_auc": 0.0}, "important_instructions": {"hijacked": 3, "roc_auc": 1.0}}
