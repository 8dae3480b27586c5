"""Errors shared by the store-facing ledger modules."""


class LedgerStateError(RuntimeError):
    """The ledger's tables and the ``spans`` rows disagree in a way the ledger must not paper over
    (rows deleted or changed, state ahead of the rows); run ``verify_store`` for the details."""
