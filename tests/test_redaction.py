"""Redaction of captured tool arguments and results: secrets and personal data never leave the process."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from govtrace.instrumentation.redaction import MAX_CONTENT_CHARS, content_attribute, redact, redact_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reply to jane.doe+billing@example.co.uk today", "reply to [REDACTED:email] today"),
        ("Authorization: Bearer eyJhbGciOi.abc.def-ghijk", "Authorization: [REDACTED:bearer_token]"),
        ("auth: Basic dXNlcjpwYXNzd29yZA==", "auth: [REDACTED:basic_credentials]"),
        ("key sk-proj-abcdefghijklmnop1234 set", "key [REDACTED:api_key] set"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [REDACTED:api_key]"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "gh [REDACTED:api_key]"),
        ("slack xoxb-123456789012-abcdefghij", "slack [REDACTED:api_key]"),
        ("stripe sk_live_abcdefghijklmnop1234", "stripe [REDACTED:api_key]"),
        (
            "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "token [REDACTED:jwt]",
        ),
        ("password=hunter22&user=bob", "password=[REDACTED:secret]&user=bob"),
        ('{"api_key": "abcd1234"}', '{"api_key": "[REDACTED:secret]"}'),
        ("card 4111 1111 1111 1111 exp 12/30", "card [REDACTED:card_number] exp 12/30"),
        ("card 5500-0000-0000-0004", "card [REDACTED:card_number]"),
        ("iban DE89 3704 0044 0532 0130 00", "iban [REDACTED:iban]"),
        ("call +44 20 7946 0958", "call [REDACTED:phone]"),
        ("call (555) 123-4567 or 555.123.4567", "call [REDACTED:phone] or [REDACTED:phone]"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "[REDACTED:private_key]"),
    ],
)
def test_secrets_and_personal_data_are_replaced_by_a_marker_naming_their_kind(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "invoice INV-2024-0042 for 1234.56 EUR due 2024-01-15",
        "order 4111111111111112 failed the Luhn check",  # 16 digits, not a card number
        "trace 0af7651916cd43dd8448eb211c80319c span b7ad6b7169203331",
        "uuid 550e8400-e29b-41d4-a716-446655440000 at 2026-11-21T19:50:17Z",
        "GB82 WEST 1234 5698 7654 33 is not a valid IBAN",
        "max_tokens: 4096",
    ],
)
def test_ordinary_identifiers_numbers_and_dates_are_kept(text):
    assert redact_text(text) == text


def test_values_under_secret_keys_are_replaced_whole_at_any_depth():
    arguments = {
        "user": {"name": "Ann", "password": "correct horse battery", "Api-Key": "k", "token_count": 12},
        "headers": [{"authorization": "whatever it is"}, {"x-api-key": 42}],
        "client_secret": "s3cr3t",
        "max_tokens": 100,
    }

    assert redact(arguments) == {
        "user": {"name": "Ann", "password": "[REDACTED:secret]", "Api-Key": "[REDACTED:secret]", "token_count": 12},
        "headers": [{"authorization": "[REDACTED:secret]"}, {"x-api-key": "[REDACTED:secret]"}],
        "client_secret": "[REDACTED:secret]",
        "max_tokens": 100,
    }


def test_numbers_that_are_card_numbers_are_redacted_too():
    assert redact({"pan": 4111111111111111, "amount": 120.5, "count": 3, "ok": True, "none": None}) == {
        "pan": "[REDACTED:card_number]",
        "amount": 120.5,
        "count": 3,
        "ok": True,
        "none": None,
    }


def test_content_attribute_is_redacted_json_cut_to_a_bounded_length():
    assert content_attribute({"to": "a@b.io", "n": [1, 2]}) == '{"to": "[REDACTED:email]", "n": [1, 2]}'
    assert content_attribute("mail a@b.io") == "mail [REDACTED:email]"
    long = content_attribute({"body": "x" * 20_000})
    assert len(long) == MAX_CONTENT_CHARS + len("…[truncated]")
    assert long.endswith("…[truncated]")


def test_content_attribute_redacts_model_objects_field_by_field():
    from mcp.types import CallToolResult, TextContent

    result = CallToolResult(content=[TextContent(type="text", text="owner: ann@example.org")], is_error=False)

    captured = json.loads(content_attribute(result))
    assert captured["content"] == [{"type": "text", "text": "owner: [REDACTED:email]"}]
    assert captured["isError"] is False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_redaction_never_fails_stays_json_and_is_idempotent(value):
    cleaned = redact(value)
    json.dumps(cleaned)
    assert redact(cleaned) == cleaned
    content_attribute(value)
