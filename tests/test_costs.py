"""Cost: the offline price table (versioned, its rule the same in Python and SQL), envelopes, and the
cost answer's pricing, deduplication and baseline on the Acme day (tests/fixtures/acme.py)."""

from __future__ import annotations

import hashlib

import duckdb
import pytest
from fixtures.acme import DAY, FIN_CHAT, NEXT_DAY, REGISTRY_YAML, T1, seeded_collector

from govtrace.analytics.costs import PRICES_FILE, Envelope, PriceError, cost_answer, load_prices
from govtrace.analytics.registry import parse_registry

NAMES = ["gpt-4o-mini-2024-07-18", "gpt-4o", "GPT-4o-2024-08-06", "openai/gpt-4o",
         "anthropic.claude-3-5-sonnet-20240620-v1:0", "claude-sonnet-4-20250514", "gpt-4.1-mini-2025-04-14",
         "o1-mini", "o1", "gemini-1.5-flash-002", "models/gemini-2.0-flash", "gpt-4o-mini@2024", "gpt-4",
         "mystery-model-x"]


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    with seeded_collector(tmp_path_factory.mktemp("acme")) as seeded:
        yield seeded


def test_dated_and_provider_prefixed_model_names_take_the_longest_listed_price():
    prices = load_prices()
    assert prices.price("gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"
    assert prices.price("openai/gpt-4o").model == "gpt-4o"
    assert prices.price("anthropic.claude-3-5-sonnet-20240620-v1:0").model == "claude-3-5-sonnet"
    assert prices.price("gpt-4.1-mini-2025-04-14").model == "gpt-4.1-mini"
    assert prices.price("gpt-4") is None  # "gpt-4" is not "gpt-4o" nor "gpt-4-turbo"
    assert prices.price("mystery-model-x") is None


def test_the_sql_price_rule_matches_the_python_rule_for_every_name():
    prices = load_prices()
    con = duckdb.connect()
    con.execute("CREATE TABLE seen AS SELECT unnest(?) AS model", [NAMES])
    matched = dict(con.execute(f"WITH scoped AS (SELECT * FROM seen), model_prices AS ({prices.relation('scoped')}) "
                               "SELECT model, input_per_mtok FROM model_prices").fetchall())
    for name in NAMES:
        price = prices.price(name)
        assert matched.get(name) == (price.input_per_mtok if price else None), name


def test_the_price_table_names_its_version_date_source_and_digest():
    described = load_prices().describe()
    assert described["version"] == "2025-06-01" and described["as_of"] == "2025-06-01"
    assert "openai.com/api/pricing" in described["source"]
    assert described["sha256"] == hashlib.sha256(PRICES_FILE.read_bytes()).hexdigest()


@pytest.mark.parametrize("text, message", [
    ("models: {m: {input: 1, output: 2}}\n", "'version' is required"),
    ("version: x\nas_of: y\nsource: z\nmodels: {m: {input: -1, output: 2}}\n", "negative price"),
    ("version: x\nas_of: y\nsource: z\nmodels: {m: {input: cheap}}\n", "needs numeric 'input' and 'output'"),
])
def test_an_unusable_price_table_is_refused_with_the_entry_named(tmp_path, text, message):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(PriceError) as raised:
        load_prices(path)
    assert message in str(raised.value)


def test_envelopes_are_read_from_the_registry_form_and_the_period_form():
    assert Envelope.of({"per_task": 0.05, "per_day": 1}) == Envelope(per_task=0.05, per_day=1.0)
    assert Envelope.of({"task": 0.05, "hour": 0.5}).limits() == {"task": 0.05, "hour": 0.5}


def test_a_model_call_recorded_by_two_instrumentations_is_priced_once(acme):
    cost = cost_answer(acme.reader, "finance-agent", DAY, NEXT_DAY)
    first = cost.rows.set_index("task").loc[T1]
    assert first["computed_spans"] == 1
    assert (first["input_tokens"], first["output_tokens"]) == (2000, 400)  # not 4000/800
    assert FIN_CHAT in cost.evidence
    assert cost.extra["prices"]["version"] == "2025-06-01"


def test_without_enough_earlier_tasks_there_is_no_baseline_and_no_anomaly(acme):
    envelopes = parse_registry(REGISTRY_YAML).envelopes()
    short = cost_answer(acme.reader, "finance-agent", DAY, NEXT_DAY, envelopes=envelopes, min_baseline_tasks=4)
    day = short.extra["per_day"][0]
    assert day["baseline_cost_per_task"] is None and day["anomaly"] is False
    assert short.extra["anomalies"] == []
    none = cost_answer(acme.reader, "finance-agent", DAY, NEXT_DAY, envelopes=envelopes, baseline_days=0)
    assert none.extra["anomalies"] == []


def test_cost_of_an_agent_without_an_envelope_is_reported_but_not_judged(acme):
    cost = cost_answer(acme.reader, "support-agent", DAY, NEXT_DAY, envelopes=parse_registry(REGISTRY_YAML).envelopes())
    assert round(cost.rows["cost"].sum(), 6) == 0.012
    assert cost.extra["breaches"] == []
    assert cost.status == "gaps"
    assert cost.coverage == ["no cost envelope registered (within envelope: unknown): agent support-agent"]
