"""``govtrace dashboard``: refuses to start without a collector, serves until stopped, hashes passwords."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import free_port

from govtrace.dashboard.auth import verify_password

# The installed console script, as a person runs it.
GOVTRACE = [str(Path(sys.executable).with_name("govtrace"))]


def test_it_refuses_to_start_when_no_collector_answers():
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run([*GOVTRACE, "dashboard", "--server", url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"no collector answers at {url}" in result.stderr


def test_it_serves_the_dashboard_until_terminated_and_then_stops_it(collector):
    process = subprocess.Popen([*GOVTRACE, "dashboard", "--server", collector.http_url, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("govtrace dashboard: http://127.0.0.1:"), process.stderr.read()
        url = line.split()[2]
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as response:
            assert response.read() == b"ok"
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    try:
        urllib.request.urlopen(url + "/_stcore/health", timeout=2)
        still_up = True
    except OSError:
        still_up = False
    assert not still_up, "the Streamlit process outlived the command"


def test_hash_password_prints_a_hash_of_the_password_read_from_stdin():
    result = subprocess.run([*GOVTRACE, "dashboard", "--hash-password"], input="s3cret words\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    stored = result.stdout.strip()
    assert verify_password("s3cret words", stored) and not verify_password("s3cret", stored)


def test_the_demo_starts_the_dashboard_and_prints_its_url(tmp_path):
    result = subprocess.run([*GOVTRACE, "demo", "--once", "--dashboard", "--db", str(tmp_path / "demo.duckdb"),
                             "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "\nDashboard: http://127.0.0.1:" in result.stdout


def test_importing_the_dashboard_reads_nothing_and_loads_no_optional_analytics():
    # A fresh interpreter: no collector is running, so any query at import time would fail loudly.
    code = """
import importlib, pkgutil, sys
import govtrace.dashboard, govtrace.dashboard.views
names = [m.name for m in pkgutil.iter_modules(govtrace.dashboard.__path__, "govtrace.dashboard.")]
names += [m.name for m in pkgutil.iter_modules(govtrace.dashboard.views.__path__, "govtrace.dashboard.views.")]
for name in names:
    importlib.import_module(name)
optional = ("inventory", "registry", "escalations", "drift", "evidence")
print(sorted(m for m in sys.modules if m.split(".")[2:3] and m.split(".")[2] in optional
             and m.startswith("govtrace.analytics.")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "GOVTRACE_SERVER": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
