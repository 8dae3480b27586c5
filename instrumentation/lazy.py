"""A package's public names, each loaded from its module on first use (PEP 562).

Importing one light submodule of such a package (``govtrace.instrumentation.attributes``,
``govtrace.collector.ledger.leaves``) then does not load the heavy ones its ``__init__`` would
otherwise import: the collector's decode workers need the key names and leaf hashes, not the
OpenTelemetry SDK, DuckDB or the signing code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, which exports each name in ``exports``
    from the module named beside it (absolute, or relative to the package)."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__
