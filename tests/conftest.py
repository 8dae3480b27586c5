"""Shared fixtures: a real collector on free ports with a real DuckDB file in a temporary folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from govtrace.collector.config import load_config
from govtrace.collector.server import Collector

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture
def collector(tmp_path):
    config = load_config(
        None,
        {"db": str(tmp_path / "govtrace.duckdb"), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0",
         "decode_workers": 0},
        environ={},
    )
    with Collector(config) as running:
        yield running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """``govtrace serve`` as a real subprocess, for crash and end-to-end tests."""

    def __init__(self, db: Path, extra_env: dict[str, str] | None = None):
        self.db = db
        self.grpc_port = free_port()
        self.http_port = free_port()
        env = {**os.environ, **(extra_env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "govtrace.collector.cli", "serve", "--db", str(db),
             "--grpc", f"127.0.0.1:{self.grpc_port}", "--http", f"127.0.0.1:{self.http_port}", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"govtrace serve did not start: {self.proc.stderr.read()}")

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def serve_process(tmp_path):
    started: list[ServeProcess] = []

    def start(db: Path | None = None, **kwargs) -> ServeProcess:
        proc = ServeProcess(db or tmp_path / "govtrace.duckdb", **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.stop()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll a condition with a deadline: for effects that are asynchronous by design."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met before the deadline")
