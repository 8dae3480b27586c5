"""How analytics read the store: one small interface, three ways in.

- ``CollectorReader``: through a running collector's read API (``POST /api/v1/query``): the way
  to read while it ingests, since no second process may open the live DuckDB file.
- ``FileReader``: a DuckDB file opened read-only, when no collector runs on it.
- ``ConnectionReader``: an existing DuckDB connection (in-process, tests).

Every analytic takes a ``Reader`` and runs plain SQL through ``query``, so the same code answers
from a file, a live collector or a test fixture.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pandas as pd
import pyarrow as pa

DEFAULT_SERVER = "http://127.0.0.1:4318"
DEFAULT_DB = "govtrace.duckdb"


class ReaderError(RuntimeError):
    """The store could not be read: names the source and what to do."""


class Reader(Protocol):
    source: str

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame: ...

    def arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table: ...


class ConnectionReader:
    """Reads through ``con.cursor()``: a DuckDB connection, or a running collector's store in the
    same process (whose ``cursor()`` first waits for acknowledged spans to be committed)."""

    def __init__(self, con: duckdb.DuckDBPyConnection | Any, source: str = "connection"):
        self.con = con
        self.source = source

    def arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        cursor = self.con.cursor()
        try:
            return cursor.sql(sql, params=params or None).to_arrow_table()
        finally:
            cursor.close()

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return self.arrow(sql, params).to_pandas()


class FileReader(ConnectionReader):
    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.exists():
            raise ReaderError(f"no govtrace database at {path}: run 'govtrace serve' or 'make demo' first")
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as exc:
            raise ReaderError(
                f"cannot open {path} read-only ({exc}). If a collector is running on it, read through it "
                f"with --server URL instead."
            ) from None
        super().__init__(con, source=f"file {path}")
        _warn_if_journal_pending(con, path)


def _warn_if_journal_pending(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """A collector that crashed leaves acknowledged spans in its intake journal until it restarts:
    a reader of the file alone would silently miss them, so say so."""
    from govtrace.collector.journal import IntakeJournal, journal_path

    folder = journal_path(path)
    if not any(folder.glob("*.journal")):
        return

    try:
        last = con.execute("SELECT last_frame FROM intake_journal").fetchall()[0][0]
    except duckdb.Error:
        return
    pending = IntakeJournal(folder).pending_frames(last)
    if pending:
        print(f"warning: {pending} acknowledged request(s) in {folder} are not in {path} yet (the collector "
              f"stopped before committing them); start 'govtrace serve --db {path}' once to store them",
              file=sys.stderr)


class CollectorReader:
    def __init__(self, url: str, *, user: str | None = None, role: str | None = None, token: str | None = None,
                 purpose: str | None = None, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.source = f"collector {self.url}"
        self.headers = {"Content-Type": "application/json"}
        user = user or os.environ.get("GOVTRACE_USER")
        token = token or os.environ.get("GOVTRACE_TOKEN")
        if user:
            self.headers["X-Govtrace-User"] = user
        if role:
            self.headers["X-Govtrace-Role"] = role
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        if purpose:
            self.headers["X-Govtrace-Purpose"] = purpose
        self.timeout = timeout

    def arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        body = json.dumps({"sql": sql, "params": _jsonable(params or [])}).encode()
        request = urllib.request.Request(self.url + "/api/v1/query", data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ReaderError(f"{self.source} refused the query ({exc.code}): {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ReaderError(f"cannot reach {self.source}: {exc}") from None
        return pa.ipc.open_stream(payload).read_all()

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return self.arrow(sql, params).to_pandas()

    def record_access(self, action: str, target: str, detail: str = "") -> None:
        body = json.dumps({"action": action, "target": target, "detail": detail}).encode()
        request = urllib.request.Request(self.url + "/api/v1/access", data=body, headers=self.headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout):
            pass


def collector_is_up(url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def open_reader(db: str | None = None, server: str | None = None, *, purpose: str | None = None) -> Reader:
    """The reader a command should use: an explicit --server or --db, else a running local
    collector, else the default database file."""
    if server:
        return CollectorReader(server, purpose=purpose)
    if db:
        return FileReader(db)
    env_server = os.environ.get("GOVTRACE_SERVER")
    if env_server:
        return CollectorReader(env_server, purpose=purpose)
    if collector_is_up(DEFAULT_SERVER):
        return CollectorReader(DEFAULT_SERVER, purpose=purpose)
    return FileReader(os.environ.get("GOVTRACE_DB", DEFAULT_DB))


def _jsonable(params: list[Any]) -> list[Any]:
    out = []
    for value in params:
        if isinstance(value, pd.Timestamp):
            out.append(value.isoformat())
        elif hasattr(value, "isoformat"):
            out.append(value.isoformat())
        else:
            out.append(value)
    return out
