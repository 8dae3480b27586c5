"""Recorded runs replayed as OTLP into a real collector, and task features read back with SQL."""

from __future__ import annotations

import json

import pytest

from govtrace.analytics.drift import replay
from govtrace.analytics.drift.features import load_tasks
from govtrace.analytics.reader import CollectorReader, ConnectionReader
from govtrace.instrumentation import attributes as A

T0 = 1_717_200_000 * 10**9


def _run(key: str, calls: list[dict], *, turns: int = 3, duration: float = 6.0, succeeded: bool = True):
    record = {"suite": "banking", "config": "m1", "model": "model-1", "defence": None, "attack": "important_instructions",
              "kind": "user_task+injection", "user_task_id": "user_task_1", "injection_task_id": "injection_task_0",
              "is_injection": True, "injection_succeeded": succeeded, "injection_seen_at": 0, "utility": False,
              "n_llm_turns": turns, "duration_s": duration, "calls": calls}
    return replay.agentdojo_run(record, agent_id="bank-agent", key=key)


CALLS = [
    {"function": "get_most_recent_transactions", "args": {"n": 100}, "error": None},
    {"function": "send_money", "args": {"recipient": "US133000000121212121212", "amount": 0.01, "subject": "x",
                                        "date": "2022-01-01"}, "error": None},
    {"function": "read_file", "args": {"file_path": "missing.txt"}, "error": "ValueError: File not found"},
]


def test_a_replayed_run_is_one_trace_with_a_root_chat_turns_and_tool_calls_carrying_their_arguments(collector):
    run = _run("r1", CALLS)
    replay.schedule([run], T0)
    assert replay.send(collector.grpc_endpoint, [run]) == 1 + 3 + 3
    cursor = collector.store.cursor()
    rows = cursor.execute("SELECT operation, tool_name, error_type, action_target, arguments_digest, record, "
                          "parent_span_id, duration_ms FROM spans WHERE trace_id = ? ORDER BY seq",
                          [run.trace_id.hex()]).fetchdf()
    # Calls are dealt into the gaps after each turn but the last: 1 after the first, 2 after the second.
    assert rows["operation"].tolist() == ["invoke_agent", "chat", "execute_tool", "chat", "execute_tool",
                                          "execute_tool", "chat"]
    tools = rows[rows["operation"] == "execute_tool"]
    assert tools["tool_name"].tolist() == ["get_most_recent_transactions", "send_money", "read_file"]
    assert tools["action_target"].tolist()[1] == "US133000000121212121212"
    assert tools["error_type"].fillna("-").tolist() == ["-", "-", "ValueError"]
    assert tools["arguments_digest"].notna().all()
    attributes = json.loads(tools["record"].iloc[1])["attributes"]
    assert json.loads(attributes[A.GEN_AI_TOOL_CALL_ARGUMENTS])["recipient"] == "US133000000121212121212"
    root = rows.iloc[0]
    assert root["duration_ms"] == pytest.approx(6000.0)
    assert rows["parent_span_id"].iloc[1:].nunique() == 1  # every step hangs under the root


def test_labels_never_reach_the_store(collector):
    runs = [_run("hijacked", CALLS, succeeded=True), _run("resisted", CALLS[:1], succeeded=False)]
    replay.schedule(runs, T0)
    replay.send(collector.grpc_endpoint, runs)
    cursor = collector.store.cursor()
    records = " ".join(r[0] for r in cursor.execute("SELECT record FROM spans").fetchall())
    for label in ("injection_succeeded", "injection_task", "important_instructions", "user_task_1", "is_injection"):
        assert label not in records
    labels = replay.label_rows(runs)
    assert [row["injection_succeeded"] for row in labels] == [True, False]
    assert {row["trace_id"] for row in labels} == {run.trace_id.hex() for run in runs}


def test_task_features_count_calls_errors_turns_and_list_what_each_task_touched(collector):
    runs = [_run("a", CALLS), _run("b", CALLS[:1], turns=1, duration=2.0)]
    replay.schedule(runs, T0)
    replay.send(collector.grpc_endpoint, runs)
    frame = load_tasks(CollectorReader(collector.http_url), "bank-agent")
    a, b = frame.tasks.loc[runs[0].trace_id.hex()], frame.tasks.loc[runs[1].trace_id.hex()]
    assert (a["tool_calls"], a["distinct_tools"], a["tool_errors"], a["llm_calls"]) == (3, 3, 1, 3)
    assert a["error_rate"] == pytest.approx(1 / 3)
    assert a["duration_s"] == pytest.approx(6.0)
    assert a["model"] == "model-1"
    assert (b["tool_calls"], b["llm_calls"]) == (1, 1)
    leaves = frame.leaves[frame.leaves["trace_id"] == runs[0].trace_id.hex()]
    texts = set(leaves["text"])
    assert "^ -> get_most_recent_transactions" in texts
    assert "get_most_recent_transactions -> send_money" in texts
    assert 'send_money.recipient="us133000000121212121212"' in texts
    assert "send_money -> US133000000121212121212" in texts  # the target, with the tool aimed at it
    assert set(leaves["kind"].astype(str)) == {"tool", "transition", "target", "value"}


def test_a_null_argument_is_a_value_of_its_own_argument_not_one_shared_by_all(collector):
    runs = [_run("nulls", [{"function": "send_money", "args": {"recipient": None, "date": None}, "error": None}])]
    replay.schedule(runs, T0 + 3600 * 10**9)
    replay.send(collector.grpc_endpoint, runs)
    leaves = load_tasks(CollectorReader(collector.http_url), "bank-agent").leaves
    mine = leaves[leaves["trace_id"] == runs[0].trace_id.hex()]
    values = mine[mine["kind"].astype(str) == "value"]
    assert set(values["text"]) == {"send_money.recipient=null", "send_money.date=null"}
    assert values["item"].nunique() == 2


def test_a_window_selects_tasks_by_their_first_span(collector):
    runs = [_run(f"w{i}", CALLS[:1], duration=10.0) for i in range(4)]
    replay.schedule(runs, T0, gap_s=50.0)  # one run a minute
    replay.send(collector.grpc_endpoint, runs)
    reader = ConnectionReader(collector.store)
    from datetime import UTC, datetime

    start = datetime.fromtimestamp(T0 / 1e9, tz=UTC)
    middle = load_tasks(reader, "bank-agent", since=start.replace(minute=start.minute + 1),
                        until=start.replace(minute=start.minute + 3))
    assert sorted(middle.tasks.index) == sorted([runs[1].trace_id.hex(), runs[2].trace_id.hex()])
    assert set(middle.leaves["trace_id"]) == set(middle.tasks.index)
    # Without a window every task is read, by a query that skips the first-span search, to the same rows.
    from datetime import timedelta

    everything = load_tasks(reader, "bank-agent")
    windowed = load_tasks(reader, "bank-agent", since=start - timedelta(days=1), until=start + timedelta(days=1))
    assert everything.tasks.equals(windowed.tasks)
    ordered = ["trace_id", "item"]
    assert everything.leaves.sort_values(ordered).reset_index(drop=True).equals(
        windowed.leaves.sort_values(ordered).reset_index(drop=True))


def test_a_list_argument_is_a_set_of_values_of_its_argument_each_as_it_would_be_alone(collector):
    runs = [_run("lists", [
        {"function": "get_hotels_prices", "args": {"hotel_names": ["Riverside View", "London Luxury"]}, "error": None},
        {"function": "get_hotels_prices", "args": {"hotel_names": "Good Night"}, "error": None},
        {"function": "get_hotels_prices", "args": {"hotel_names": ["Good Night"]}, "error": None},
        {"function": "get_hotels_prices", "args": {"hotel_names": []}, "error": None},
    ])]
    replay.schedule(runs, T0 + 7200 * 10**9)
    replay.send(collector.grpc_endpoint, runs)
    leaves = load_tasks(CollectorReader(collector.http_url), "bank-agent").leaves
    mine = leaves[leaves["trace_id"] == runs[0].trace_id.hex()]
    values = mine[mine["kind"].astype(str) == "value"]
    # A new combination of familiar names is not a new value; a one-element list is its element; an
    # empty list stays a value of its own.
    assert set(values["text"]) == {'get_hotels_prices.hotel_names="riverside view"',
                                   'get_hotels_prices.hotel_names="london luxury"',
                                   'get_hotels_prices.hotel_names="good night"',
                                   "get_hotels_prices.hotel_names=[]"}
    assert values["key"].nunique() == 1


def test_a_whole_number_is_one_value_whether_sent_as_50_or_50_0_and_a_fraction_stays_itself(collector):
    runs = [_run("numbers", [
        {"function": "send_money", "args": {"amount": 50.0, "n": [3.0, 4]}, "error": None},
        {"function": "send_money", "args": {"amount": 50, "n": 0.01}, "error": None},
        {"function": "send_money", "args": {"amount": "50.0"}, "error": None},  # a string stays a string
    ])]
    replay.schedule(runs, T0 + 3 * 3600 * 10**9)
    replay.send(collector.grpc_endpoint, runs)
    leaves = load_tasks(CollectorReader(collector.http_url), "bank-agent").leaves
    mine = leaves[leaves["trace_id"] == runs[0].trace_id.hex()]
    values = mine[mine["kind"].astype(str) == "value"]
    assert set(values["text"]) == {"send_money.amount=50", "send_money.n=3", "send_money.n=4",
                                   "send_money.n=0.01", 'send_money.amount="50.0"'}
