"""Faults inside the policy engine: counted, logged once per kind, never raised to the host agent.

``ENGINE_FAULTS`` is the module-level counter every enforcement point of the process shares. Kinds:
``policy_load`` (the policy file could not be loaded), ``decide`` (evaluation or recording before the
tool ran), ``approval_handler`` (the handler raised or answered garbage), ``notify`` (a review, halt or
breach notice could not be delivered), ``after`` (recording or cost accounting after the tool ran).
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("govtrace.policy")


class FaultCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._logged: set[str] = set()
        self.last_error: str | None = None

    def record(self, kind: str, exc: BaseException) -> None:
        """Count one fault. The first of each kind is logged with its traceback, later ones at debug."""
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            first = kind not in self._logged
            self._logged.add(kind)
            self.last_error = f"{kind}: {type(exc).__name__}: {exc}"
        if first:
            logger.error("govtrace policy engine fault (%s), resolved by the fail mode; further faults "
                         "of this kind are counted in ENGINE_FAULTS and logged at debug level", kind,
                         exc_info=(type(exc), exc, exc.__traceback__))
        else:
            logger.debug("govtrace policy engine fault (%s): %r", kind, exc)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def count(self, kind: str) -> int:
        with self._lock:
            return self._counts.get(kind, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Zero the counts and log the next fault of each kind again (tests, operators)."""
        with self._lock:
            self._counts.clear()
            self._logged.clear()
            self.last_error = None


ENGINE_FAULTS = FaultCounter()
