"""How the collector's store drives the ledger: one hook, called by the single writer.

Leaves are appended inside the same transaction as the rows they cover, so a crash can never
leave stored rows the ledger does not know about (or the reverse). Sealing happens on the writer
thread between batches, and so does retention (``collector/retention.py``) when a policy is set:
it runs on the writer's connection at most every ``retention_every_seconds`` and the next seal
signs what it deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import duckdb

from govtrace.collector.config import CollectorConfig
from govtrace.collector.ledger.sealer import Ledger
from govtrace.collector.ledger.signing import KeyStore
from govtrace.collector.retention import RetentionPolicy, apply_retention
from govtrace.collector.retention import load_policy as load_retention_policy
from govtrace.collector.store import AppendHook

log = logging.getLogger(__name__)


class LedgerHook(AppendHook):
    def __init__(self, ledger: Ledger, retention: RetentionPolicy | None = None,
                 retention_every_seconds: float = 3600.0):
        self.ledger = ledger
        self.retention = retention
        self.retention_every_seconds = retention_every_seconds
        self._last_retention = float("-inf")

    def on_append(self, con: duckdb.DuckDBPyConnection, first_seq: int, records: list[str]) -> None:
        self.ledger.append([record.encode("utf-8") for record in records], first_seq=first_seq)

    def on_append_hashes(self, con: duckdb.DuckDBPyConnection, first_seq: int, leaf_hashes: list[bytes]) -> None:
        self.ledger.append_leaf_hashes(leaf_hashes, first_seq=first_seq)

    def on_rollback(self) -> None:
        self.ledger.reload()

    def on_idle(self, con: duckdb.DuckDBPyConnection, now: float) -> None:
        if self.retention is not None and now - self._last_retention >= self.retention_every_seconds:
            self._last_retention = now
            result = apply_retention(con, self.retention, now, actor="collector")
            if result.deleted:
                log.info("retention deleted %d payloads (%s); holds kept %s", result.deleted, result.by_class,
                         result.held or "none")
                self.ledger.seal(now)
        self.ledger.maybe_seal(now)

    def on_close(self) -> None:
        self.ledger.seal()


def ledger_for(config: CollectorConfig) -> tuple[None, Callable[[duckdb.DuckDBPyConnection], AppendHook]]:
    """The store's hook factory for this configuration (the ledger creates its own tables)."""
    keys = KeyStore(config.key_path)
    signer = keys.load_or_create(config.origin)
    # Settings the collector's configuration may not have yet: read softly, validated here at start-up.
    policy_path = getattr(config, "retention_policy", "") or ""
    retention = load_retention_policy(policy_path) if policy_path else None
    every = float(getattr(config, "retention_every_seconds", 3600.0) or 3600.0)

    def factory(con: duckdb.DuckDBPyConnection) -> AppendHook:
        ledger = Ledger(
            con,
            signer,
            config.origin,
            seal_every_events=config.seal_every_events,
            seal_every_seconds=config.seal_every_seconds,
            rotation_statements=keys.rotation_statements(),
        )
        return LedgerHook(ledger, retention, every)

    return None, factory
