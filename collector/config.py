"""Collector configuration: one validated, frozen value built at start-up.

Precedence, lowest first: defaults, the YAML config file, ``GOVTRACE_*`` environment variables,
command-line flags. Errors name the setting. Every setting is documented in docs/configuration.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from govtrace.instrumentation import attributes as A


class ConfigError(ValueError):
    pass


# Identities an audit trail must keep readable: who acted, for whom, who approved. Redacting them
# would erase the "on whose authority" answer; operators can still list them in ``redact_keep_keys``
# differently.
DEFAULT_KEEP_KEYS = ",".join([
    A.GEN_AI_AGENT_ID, A.GEN_AI_AGENT_NAME, A.SERVICE_NAME, A.AGENT_OWNER, A.DELEGATION_ACTING_FOR,
    A.DELEGATION_DELEGATING_AGENT, A.OVERSIGHT_APPROVER_ID, "user.id", "enduser.id",
])


@dataclass(frozen=True)
class CollectorConfig:
    db: str = "govtrace.duckdb"
    grpc: str = "127.0.0.1:4317"
    http: str = "127.0.0.1:4318"
    max_body_bytes: int = 16 * 1024 * 1024
    max_queue_spans: int = 200_000
    max_batch_spans: int = 32_768
    commit_linger_seconds: float = 0.02  # the writer waits this long for a small batch to grow
    intake_journal: bool = True  # acknowledge once journaled (<db>.intake/), commit in large batches later
    ack_timeout_seconds: float = 30.0
    grpc_workers: int = 16
    decode_workers: int = 2  # processes that decode OTLP; 0 decodes inline in the receiving threads
    columnar_decode: bool = True  # protobuf requests normalized by Arrow kernels (collector/columnar.py)
    duckdb_memory_limit: str = "192MB"
    # DuckDB's threads in the collector (0: one per core). The writer's inserts cost half the CPU
    # on one thread (measured 6 against 11 us per span); readers through the collector share it.
    duckdb_threads: int = 1
    memory_limit_bytes: int = 1024**3  # the collector's whole memory (all its processes); see docs
    dedupe_window_spans: int = 4_000_000  # retries matching one of the last N stored spans are not stored again
    key_dir: str = ""  # default: <db>.keys beside the database
    seal_every_events: int = 10_000
    seal_every_seconds: float = 10.0
    origin: str = "govtrace"
    # Identity and transport security (docs/security.md).
    auth_tokens_file: str = ""  # YAML of token hashes -> principals and readers; set = authentication on
    identity_mismatch: str = "flag"  # a span claiming an agent its credential does not own: flag | reject
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""  # set = clients must present a certificate signed by this CA (mutual TLS)
    # Redaction at ingest (docs/security.md): detectors, custom patterns, keys left alone.
    redact: str = "api_key,bearer_token,card_number"
    redact_patterns_file: str = ""
    redact_keep_keys: str = DEFAULT_KEEP_KEYS

    @property
    def key_path(self) -> Path:
        return Path(self.key_dir) if self.key_dir else Path(self.db + ".keys")


def _env_name(field: str) -> str:
    return "GOVTRACE_" + field.upper()


def load_config(
    file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> CollectorConfig:
    environ = os.environ if environ is None else environ
    file = file or environ.get("GOVTRACE_CONFIG")
    values: dict[str, Any] = {}
    known = {f.name: f for f in fields(CollectorConfig)}
    if file:
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(document, dict):
            raise ConfigError(f"config file {path} must be a mapping of settings")
        for key, value in document.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise ConfigError(f"{path}: unknown setting {key!r}; known: {', '.join(sorted(known))}")
            values[name] = value
    for name in known:
        if _env_name(name) in environ:
            values[name] = environ[_env_name(name)]
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    return _validated(replace(CollectorConfig(), **{k: _coerce(k, v, known[k].type) for k, v in values.items()}))


def _coerce(name: str, value: Any, type_name: Any) -> Any:
    type_name = type_name if isinstance(type_name, str) else type_name.__name__
    try:
        if type_name == "int":
            if isinstance(value, str) and value.strip() and not value.strip().lstrip("-").isdigit():
                return parse_bytes(value, name)  # sizes may be written "1GiB"
            return int(value)
        if type_name == "float":
            return float(value)
        if type_name == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text in ("true", "1", "yes", "on")
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name} ({_env_name(name)}) must be a {type_name}, got {value!r}") from None


def _validated(config: CollectorConfig) -> CollectorConfig:
    for name in ("grpc", "http"):
        address = getattr(config, name)
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"setting {name} must be HOST:PORT (port 0 picks a free one), got {address!r}")
    if config.decode_workers < 0:
        raise ConfigError("setting decode_workers must be 0 (inline) or more")
    for name in ("max_body_bytes", "max_queue_spans", "max_batch_spans", "grpc_workers", "seal_every_events",
                 "memory_limit_bytes"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"setting {name} must be positive")
    if config.max_queue_spans < config.max_batch_spans:
        raise ConfigError("setting max_queue_spans must be at least max_batch_spans")
    if not 0 <= config.commit_linger_seconds <= 1:
        raise ConfigError("setting commit_linger_seconds must be between 0 and 1")
    if config.dedupe_window_spans < 0:
        raise ConfigError("setting dedupe_window_spans must be 0 (no deduplication) or more")
    if config.identity_mismatch not in ("flag", "reject"):
        raise ConfigError(f"setting identity_mismatch must be flag or reject, got {config.identity_mismatch!r}")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("settings tls_cert and tls_key go together: give both or neither")
    if config.tls_client_ca and not config.tls_cert:
        raise ConfigError("setting tls_client_ca (mutual TLS) needs tls_cert and tls_key")
    for name in ("auth_tokens_file", "tls_cert", "tls_key", "tls_client_ca", "redact_patterns_file"):
        value = getattr(config, name)
        if value and not Path(value).is_file():
            raise ConfigError(f"setting {name}: file {value} does not exist")
    if config.duckdb_threads < 0:
        raise ConfigError(f"setting duckdb_threads must be 0 (one per core) or more, got {config.duckdb_threads}")
    duckdb_bytes = parse_bytes(config.duckdb_memory_limit, "duckdb_memory_limit")
    if duckdb_bytes >= config.memory_limit_bytes // 2:
        raise ConfigError(
            f"setting duckdb_memory_limit ({config.duckdb_memory_limit}) must be under half of memory_limit_bytes "
            f"({config.memory_limit_bytes}): the rest holds requests in flight and the decode workers"
        )
    return config


_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def parse_bytes(text: str, name: str) -> int:
    """A DuckDB-style size ("384MB", "1GiB") in bytes."""
    number = text.strip().upper().rstrip()
    unit = number.lstrip("0123456789. ")
    digits = number[: len(number) - len(unit)].strip()
    try:
        return int(float(digits) * _UNITS[unit.strip()])
    except (KeyError, ValueError):
        raise ConfigError(f"setting {name} must be a size like 384MB or 1GiB, got {text!r}") from None


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
