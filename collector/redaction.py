"""Redaction at ingest: secrets and personal data are cut out of attribute values before storage.

Each detector finds one kind of sensitive text (API keys, bearer tokens, email addresses, card
numbers, or a custom pattern) and replaces the match with ``[REDACTED:<detector>]``. What was
removed is recorded in the stored record's ``ingest.redactions`` as JSON pointers (RFC 6901) into
the record with the detector's name and the number of matches, never the value itself, so the
ledger hash covers the fact of redaction and an auditor can see where data was taken out.

Redaction runs on every string value of span, resource, scope, event and link attributes, nested
values included, and on the status message. Keys listed in ``redact_keep_keys`` (by default the
identities an audit must keep: agent, owner, acting-for, approver) are left alone.

Detectors are plain regular expressions, each with a trigger (literal text every match contains);
a few ``in`` tests over a span's values joined together decide whether any detector runs, so the
common case costs microseconds per span.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MIN_LENGTH = 6  # shorter values cannot hold any detector's match


@dataclass(frozen=True)
class Detector:
    name: str
    pattern: re.Pattern[str]
    # What every match contains, checked before any detector runs (with ``in``, which is far
    # faster than a regular expression): one of some literals ("text"), one of some lower-case
    # words in the lower-cased text ("lower"), a run of that many digits once spaces and dashes
    # are dropped ("digits"), or, for custom detectors, the pattern itself ("regex").
    trigger: tuple[str, ...]
    trigger_kind: str = "text"
    group: int = 0  # which group is the secret (0: the whole match)
    check: Callable[[str], bool] | None = None  # extra validation of a match (Luhn)


def _luhn(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


_SECRET_WORDS = ("api_key", "api-key", "apikey", "secret", "token", "passw", "pwd")

# Every pattern runs in time linear in the text: matches start only where a token starts (a
# lookbehind refuses the middle of a run) and every repetition is bounded, so a hostile value of
# megabytes of "-eyJ-eyJ…" or "password=password=…" cannot stall a decode worker.
_RUN = r"A-Za-z0-9_\-"
BUILTIN: dict[str, list[Detector]] = {
    "api_key": [
        Detector("api_key", re.compile(
            rf"(?<![{_RUN}])(?:sk-(?:proj-|ant-|live-|test-)?[{_RUN}]{{20,512}}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{{16,512}}"
            rf"|(?:AKIA|ASIA)[0-9A-Z]{{16}}|gh[pousr]_[A-Za-z0-9]{{36,255}}|github_pat_[A-Za-z0-9_]{{22,255}}"
            rf"|xox[abposr]-[A-Za-z0-9\-]{{10,255}}|AIza[0-9A-Za-z_\-]{{35}}|glpat-[{_RUN}]{{20,255}}"
            rf"|hf_[A-Za-z0-9]{{30,255}})(?![{_RUN}])"),
            ("sk-", "sk_", "rk_", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox",
             "AIza", "glpat-", "hf_")),
        # key=value and "key": "value" assignments of secrets inside larger text (arguments, URLs).
        Detector("api_key", re.compile(
            r"(?i)\b(?:api[_\-]?key|apikey|secret|client[_\-]?secret|access[_\-]?token|refresh[_\-]?token"
            r"|auth[_\-]?token|password|passwd|pwd)[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?([^\s\"',;&}]{6,512})"),
            _SECRET_WORDS, "lower", group=1),
    ],
    "bearer_token": [
        Detector("bearer_token", re.compile(r"(?i)\b(?:bearer|basic)[ \t]{1,8}([A-Za-z0-9\-._~+/]{8,4096}=*)"),
                 ("bearer", "basic"), "lower", group=1),
        Detector("bearer_token", re.compile(
            rf"(?<![{_RUN}.])eyJ[{_RUN}]{{5,4096}}\.eyJ[{_RUN}]{{5,8192}}\.[{_RUN}]{{5,4096}}(?![{_RUN}.])"),
            ("eyJ",)),
    ],
    "email": [
        Detector("email", re.compile(
            r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@(?:[A-Za-z0-9\-]{1,63}\.){1,8}[A-Za-z]{2,24}\b"),
            ("@",)),
    ],
    "card_number": [
        # Issuer prefixes of Visa, Mastercard, Amex, Discover, JCB and Diners, then Luhn: a 19-digit
        # nanosecond timestamp or an order number is not a card.
        Detector("card_number", re.compile(
            r"(?<![\d\-])(?:4|5[1-5]|2[2-7]|3[47]|6(?:011|5)|35|3(?:0[0-5]|[68]))(?:[ \-]?\d){11,17}(?![\d])"),
            ("d" * 13,), "digits", check=_luhn),
    ],
}


# A value under a key whose last part names a secret is redacted whole, whatever it looks like.
_SECRET_KEY = re.compile(
    r"(?i)(?:^|[._\-])(?:authorization|proxy[_\-]authorization|api[_\-]?key|apikey|x[_\-]api[_\-]key|password|passwd"
    r"|secret|client[_\-]secret|access[_\-]token|refresh[_\-]token|cookie|set[_\-]cookie|private[_\-]key)$"
)


class RedactionConfigError(ValueError):
    pass


class Redactor:
    """Redacts one record's attribute values in place and says where.

    The fast path tests every detector's trigger once over all of a span's string attribute values
    joined together: most spans hold no trigger and cost that one test. Only values that hold
    one are run through the detectors.
    """

    def __init__(self, detectors: list[Detector], keep_keys: frozenset[str], secret_keys: bool):
        self.detectors = detectors
        self.keep_keys = keep_keys
        self.secret_keys = secret_keys
        self._text = _literals(detectors, "text")
        self._lower = _literals(detectors, "lower")
        self._digits = _literals(detectors, "digits")
        custom = [d.pattern.pattern for d in detectors if d.trigger_kind == "regex"]
        self._regex = re.compile("|".join(f"(?:{p})" for p in custom)) if custom else None
        self._secret_key_cache: dict[str, bool] = {}
        self._plans: dict[tuple[str, ...], tuple[tuple[str, ...], bool]] = {}

    @classmethod
    def from_settings(cls, redact: str, patterns_file: str = "", keep_keys: str = "") -> Redactor | None:
        names = [name.strip() for name in redact.split(",") if name.strip() and name.strip() != "none"]
        unknown = [name for name in names if name not in BUILTIN]
        if unknown:
            raise RedactionConfigError(
                f"setting redact: unknown detector(s) {', '.join(unknown)}; known: {', '.join(BUILTIN)} (or none)"
            )
        detectors = [d for name in names for d in BUILTIN[name]]
        if patterns_file:
            detectors.extend(_custom(Path(patterns_file)))
        if not detectors:
            return None
        keep = frozenset(key.strip() for key in keep_keys.split(",") if key.strip())
        return cls(detectors, keep, secret_keys="api_key" in names)

    def redact_attributes(self, attributes: dict[str, Any], pointer: str, found: list[dict[str, Any]]) -> None:
        checked, secret_named = self._plan(attributes)
        if not secret_named:
            strings = []
            for key in checked:
                value = attributes[key]
                kind = type(value)
                if kind is str:
                    strings.append(value)
                elif kind is list or kind is dict:
                    break
            else:
                if not self.triggered("\x00".join(strings)):
                    return  # the common case: nothing here could match any detector
        for key, value in attributes.items():
            if key in self.keep_keys:
                continue
            if self.secret_keys and type(value) is str and value and self._secret_key(key):
                attributes[key] = "[REDACTED:api_key]"
                found.append({"pointer": f"{pointer}/{escape(key)}", "detector": "api_key", "count": 1})
                continue
            attributes[key] = self._value(value, pointer, key, found)

    def redact_text(self, text: str, pointer: str, found: list[dict[str, Any]]) -> str:
        if len(text) < MIN_LENGTH or not self.triggered(text):
            return text
        counts: dict[str, int] = {}
        for detector in self.detectors:
            text = _substitute(detector, text, counts)
        for name, count in counts.items():
            found.append({"pointer": pointer, "detector": name, "count": count})
        return text

    def _value(self, value: Any, parent: str, token: str | int, found: list[dict[str, Any]]) -> Any:
        if type(value) is str:
            if len(value) < MIN_LENGTH or not self.triggered(value):
                return value
            return self.redact_text(value, f"{parent}/{escape(str(token))}", found)
        if isinstance(value, list):
            here = f"{parent}/{escape(str(token))}"
            return [self._value(item, here, i, found) for i, item in enumerate(value)]
        if isinstance(value, dict) and not _is_tagged(value):
            here = f"{parent}/{escape(str(token))}"
            return {k: self._value(v, here, k, found) for k, v in value.items()}
        return value

    @property
    def has_custom_patterns(self) -> bool:
        """Whether operator-supplied detectors (Python regular expressions) are configured."""
        return self._regex is not None

    def trigger_literals(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """What ``triggered`` looks for: literal text, lower-case words, digit runs ("ddd…")."""
        return self._text, self._lower, self._digits

    def triggered(self, text: str) -> bool:
        """Whether any detector could match somewhere in ``text`` (a cheap, C-speed test)."""
        if any(literal in text for literal in self._text):
            return True
        if self._lower:
            lowered = text.lower()
            if any(word in lowered for word in self._lower):
                return True
        if self._digits:
            shape = text.translate(_DIGIT_SHAPE)
            if any(run in shape for run in self._digits):
                return True
        return self._regex is not None and self._regex.search(text) is not None

    def _plan(self, attributes: dict[str, Any]) -> tuple[tuple[str, ...], bool]:
        """(keys to look at, whether one is named like a secret) for this set of keys. Spans from one
        instrumentation repeat the same keys, so this is worked out once per shape, not per span."""
        shape = tuple(attributes)
        plan = self._plans.get(shape)
        if plan is None:
            checked = tuple(key for key in shape if key not in self.keep_keys)
            plan = (checked, self.secret_keys and any(_SECRET_KEY.search(key) for key in checked))
            if len(self._plans) < 1_000:  # shapes repeat; a hostile sender's do not stay
                self._plans[shape] = plan
        return plan

    def _secret_key(self, key: str) -> bool:
        known = self._secret_key_cache.get(key)
        if known is None:
            known = bool(_SECRET_KEY.search(key))
            if len(self._secret_key_cache) < 10_000:  # attribute keys repeat; hostile ones do not stay
                self._secret_key_cache[key] = known
        return known


# Digits to "d", spaces and dashes dropped, anything else to "x": card numbers become digit runs.
_DIGIT_SHAPE = {i: "d" if 48 <= i <= 57 else None if i in (32, 45) else "x" for i in range(128)}


def _literals(detectors: list[Detector], kind: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for d in detectors if d.trigger_kind == kind for t in d.trigger))


def escape(key: str) -> str:
    """One JSON-pointer reference token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _is_tagged(value: dict[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)) in ("$bytes", "$double")


def _substitute(detector: Detector, text: str, counts: dict[str, int]) -> str:
    pieces: list[str] = []
    last = 0
    for match in detector.pattern.finditer(text):
        start, end = match.span(detector.group)
        if start < last or (detector.check is not None and not detector.check(match.group(detector.group))):
            continue
        pieces.append(text[last:start])
        pieces.append(f"[REDACTED:{detector.name}]")
        last = end
        counts[detector.name] = counts.get(detector.name, 0) + 1
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _custom(path: Path) -> list[Detector]:
    """``name: regex`` pairs; a regex with one group redacts only that group."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RedactionConfigError(f"redact_patterns_file {path} cannot be read: {exc}") from None
    if not isinstance(document, dict):
        raise RedactionConfigError(f"redact_patterns_file {path} must map detector names to regular expressions")
    detectors = []
    for name, pattern in document.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name) or name in BUILTIN:
            raise RedactionConfigError(f"{path}: detector name {name!r} must be [a-z0-9_]+ and not a built-in name")
        try:
            compiled = re.compile(str(pattern))
        except re.error as exc:
            raise RedactionConfigError(f"{path}: pattern {name} does not compile: {exc}") from None
        if compiled.search(""):
            raise RedactionConfigError(f"{path}: pattern {name} matches the empty string")
        detectors.append(Detector(name, compiled, (), "regex", group=1 if compiled.groups == 1 else 0))
    return detectors
