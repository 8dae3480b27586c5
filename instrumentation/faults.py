"""Counting our own faults: never raised to the host agent, logged once per kind.

The instrumentation and the policy engine each keep one process-wide counter, so operators can
see that something inside govtrace went wrong without the agent ever noticing.
"""

from __future__ import annotations

import logging
import threading


class FaultCounter:
    def __init__(self, logger: logging.Logger, component: str, counter_name: str) -> None:
        self._logger = logger
        self._component = component
        self._counter_name = counter_name
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
            self._logger.error(
                "govtrace %s fault (%s); the agent carries on, further faults of this kind are counted in "
                "%s and logged at debug level", self._component, kind, self._counter_name,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        else:
            self._logger.debug("govtrace %s fault (%s): %r", self._component, kind, exc)

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
