"""Where a decode worker process starts: it keeps the worker small, then loads the decoder.

The pool names ``start`` as its initializer, so a new worker imports this module (and nothing of
the decoder) before ``start`` runs.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from typing import Any


class _WithoutPandas(MetaPathFinder):
    """pyarrow imports pandas (about 45 MB resident) the first time ``pa.array`` is given a Python
    list, only to ask whether it is a pandas object; a decode worker never holds one, and every MB
    a worker rests at is a MB less for requests in flight (``server._request_budget``). To pyarrow,
    pandas is then simply not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not loaded in a decode worker", name=name)


def start(settings: dict[str, Any]) -> None:
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _WithoutPandas())
    from govtrace.collector import decode_pool

    decode_pool.init_worker(decode_pool.PolicySettings(**settings))
