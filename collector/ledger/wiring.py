"""How the collector's store drives the ledger: one hook, called by the single writer.

Leaves are appended inside the same transaction as the rows they cover, so a crash can never
leave stored rows the ledger does not know about (or the reverse). Sealing happens on the writer
thread between batches.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from govtrace.collector.config import CollectorConfig
from govtrace.collector.ledger.sealer import Ledger
from govtrace.collector.ledger.signing import KeyStore
from govtrace.collector.store import AppendHook


class LedgerHook(AppendHook):
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def on_append(self, con: duckdb.DuckDBPyConnection, first_seq: int, records: list[str]) -> None:
        self.ledger.append([record.encode("utf-8") for record in records], first_seq=first_seq)

    def on_rollback(self) -> None:
        self.ledger.reload()

    def on_idle(self, con: duckdb.DuckDBPyConnection, now: float) -> None:
        self.ledger.maybe_seal(now)

    def on_close(self) -> None:
        self.ledger.seal()


def ledger_for(config: CollectorConfig) -> tuple[None, Callable[[duckdb.DuckDBPyConnection], AppendHook]]:
    """The store's hook factory for this configuration (the ledger creates its own tables)."""
    keys = KeyStore(config.key_path)
    signer = keys.load_or_create(config.origin)

    def factory(con: duckdb.DuckDBPyConnection) -> AppendHook:
        ledger = Ledger(
            con,
            signer,
            config.origin,
            seal_every_events=config.seal_every_events,
            seal_every_seconds=config.seal_every_seconds,
            rotation_statements=keys.rotation_statements(),
        )
        return LedgerHook(ledger)

    return None, factory
