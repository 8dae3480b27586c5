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


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class CollectorConfig:
    db: str = "govtrace.duckdb"
    grpc: str = "127.0.0.1:4317"
    http: str = "127.0.0.1:4318"
    max_body_bytes: int = 16 * 1024 * 1024
    max_queue_spans: int = 200_000
    max_batch_spans: int = 32_768
    ack_timeout_seconds: float = 30.0
    grpc_workers: int = 32
    decode_workers: int = 2  # processes that decode OTLP; 0 decodes inline in the receiving threads
    duckdb_memory_limit: str = "512MB"
    key_dir: str = ""  # default: <db>.keys beside the database
    seal_every_events: int = 10_000
    seal_every_seconds: float = 10.0
    origin: str = "govtrace"

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
            return int(value)
        if type_name == "float":
            return float(value)
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
    for name in ("max_body_bytes", "max_queue_spans", "max_batch_spans", "grpc_workers", "seal_every_events"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"setting {name} must be positive")
    if config.max_queue_spans < config.max_batch_spans:
        raise ConfigError("setting max_queue_spans must be at least max_batch_spans")
    return config


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
