"""Redaction of captured content (tool arguments and results) before it leaves the process.

Content capture is off by default. When it is switched on, every value that goes into
``gen_ai.tool.call.arguments`` or ``gen_ai.tool.call.result`` first passes through ``redact``:

- values under secret-looking keys (``password``, ``api_key``, ``authorization``, ``token`` …) are
  replaced whole;
- inside any string: API keys with a known prefix (OpenAI/Anthropic ``sk-``, AWS ``AKIA``/``ASIA``,
  GitHub ``ghp_``/``github_pat_``, Slack ``xox?-``, Google ``AIza``, Stripe ``sk_live_``, GitLab
  ``glpat-``, Hugging Face ``hf_``), ``Bearer``/``Basic`` credentials, JWTs, ``key=value`` secrets,
  email addresses, payment card numbers (Luhn-checked), IBANs (checksum-checked) and phone numbers.

Each match becomes ``[REDACTED:<kind>]`` so a reader sees that something was there and what it was.
Redaction is pattern based: it lowers the risk, it does not prove the absence of personal data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

MAX_CONTENT_CHARS = 8192  # a captured value longer than this is cut, with a marker

SECRET_KEY = re.compile(
    r"(?i)^(?:.*[_-])?(password|passwd|pwd|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?key|"
    r"private[_-]?key|token|access[_-]?token|refresh[_-]?token|id[_-]?token|auth|authorization|"
    r"credentials?|cookie|set[_-]?cookie|session[_-]?id|x[_-]api[_-]key)$"
)

_KEYED_SECRET = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?key|"
    r"private[_-]?key|token|access[_-]?token|refresh[_-]?token)\b([\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]{4,})"
)
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")),
    ("bearer_token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("basic_credentials", re.compile(r"(?i)\bbasic\s+[A-Za-z0-9+/]{8,}={0,2}")),
    (
        "api_key",
        re.compile(
            r"\b(?:sk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{16,}|(?:AKIA|ASIA)[0-9A-Z]{16}|"
            r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}|xox[abposr]-[A-Za-z0-9-]{10,}|"
            r"AIza[0-9A-Za-z_-]{35}|(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}|glpat-[A-Za-z0-9_-]{20,}|"
            r"hf_[A-Za-z0-9]{30,})"
        ),
    ),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
)
_CARD = re.compile(r"(?<![\d.])(?:\d[ -]?){12,18}\d(?![\d.])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w])"
)


def redact_text(text: str) -> str:
    """``text`` with every secret and personal-data pattern replaced by ``[REDACTED:<kind>]``."""
    text = _KEYED_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{_marker('secret')}", text)
    for kind, pattern in _PATTERNS:
        text = pattern.sub(_marker(kind), text)
    text = _IBAN.sub(_iban, text)
    text = _PHONE.sub(_phone, text)
    return _CARD.sub(_card, text)


def redact(value: Any) -> Any:
    """A copy of ``value`` (JSON-like: mappings, sequences, scalars) with secrets and personal data removed."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        text = str(value)
        cleaned = redact_text(text)
        return value if cleaned == text else cleaned
    if isinstance(value, Mapping):
        return {
            str(key): _marker("secret") if _is_secret_key(key, item) else redact(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    return redact_text(str(value))


def content_attribute(value: Any, limit: int = MAX_CONTENT_CHARS) -> str:
    """The redacted JSON text of ``value`` for a content attribute, cut to ``limit`` characters."""
    if isinstance(value, str):
        text = redact_text(value)
    else:
        text = json.dumps(redact(_jsonable(value)), ensure_ascii=False, default=str)
    if len(text) > limit:
        text = text[:limit] + "…[truncated]"
    return text


def _jsonable(value: Any) -> Any:
    """Pydantic models and dataclass-like objects as plain data, so their fields are redacted one by one."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", by_alias=True, exclude_none=True)
        except Exception:  # an odd model: fall back to its text
            return str(value)
    return value


def _is_secret_key(key: Any, item: Any) -> bool:
    return isinstance(key, str) and bool(SECRET_KEY.match(key)) and isinstance(item, str | int | float | bytes)


def _marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return _marker("card_number") if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def _iban(match: re.Match[str]) -> str:
    compact = match.group(0).replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return _marker("iban") if 15 <= len(compact) <= 34 and int(numeric) % 97 == 1 else match.group(0)


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return _marker("phone") if 7 <= len(digits) <= 15 else match.group(0)


def _luhn(digits: str) -> bool:
    total = 0
    for index, ch in enumerate(reversed(digits)):
        n = int(ch)
        if index % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0
