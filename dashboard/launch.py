"""Start the dashboard as a ``streamlit run`` subprocess and know when it is ready.

Headless, on loopback by default, no usage statistics, no file watcher. The collector URL and the
users file travel as environment variables (see ``settings.py``), the only way in for ``app.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from govtrace.dashboard.settings import KEY_DIR_ENV, SERVER_ENV, USERS_ENV

APP = Path(__file__).with_name("app.py")
PREFERRED_PORT = 8501  # Streamlit's usual port, so that `make demo` prints the same URL each time
THEME = {
    "theme.base": "light",
    "theme.primaryColor": "#1f4e79",
    "theme.backgroundColor": "#ffffff",
    "theme.secondaryBackgroundColor": "#f4f6f9",
    "theme.textColor": "#1f2937",
}


class DashboardError(RuntimeError):
    """The dashboard did not start; the message includes the end of its log."""


@dataclass
class RunningDashboard:
    url: str
    process: subprocess.Popen
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> RunningDashboard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def streamlit_command(host: str, port: int) -> list[str]:
    options = {
        "server.headless": "true",
        "server.address": host,
        "server.port": str(port),
        "server.fileWatcherType": "none",
        "server.runOnSave": "false",
        "browser.gatherUsageStats": "false",
        "client.toolbarMode": "viewer",
        **THEME,
    }
    return [sys.executable, "-m", "streamlit", "run", str(APP), *(f"--{k}={v}" for k, v in options.items())]


def start_dashboard(server_url: str, *, port: int | None = None, host: str = "127.0.0.1",
                    users_file: str | None = None, key_dir: str | None = None,
                    timeout: float = 60.0) -> RunningDashboard:
    """Start the dashboard against the collector at ``server_url``.

    ``port`` 0 picks a free one; None (the default) takes 8501 when it is free, else a free one.
    """
    if port is None:
        port = PREFERRED_PORT if _is_free(host, PREFERRED_PORT) else 0
    port = port or _free_port(host)
    env = {**os.environ, SERVER_ENV: server_url}
    env.pop(USERS_ENV, None)
    if users_file:
        env[USERS_ENV] = str(Path(users_file).resolve())
    if key_dir:
        env[KEY_DIR_ENV] = str(Path(key_dir).resolve())
    log_path = Path(tempfile.mkstemp(prefix="govtrace-dashboard-", suffix=".log")[1])
    log = log_path.open("wb")
    process = subprocess.Popen(streamlit_command(host, port), stdout=log, stderr=subprocess.STDOUT, env=env,
                               stdin=subprocess.DEVNULL)
    url_host = f"[{host}]" if ":" in host else host
    running = RunningDashboard(url=f"http://{url_host}:{port}", process=process, log_path=log_path, _log=log)
    try:
        _wait_ready(running, timeout)
    except BaseException:
        running.stop()
        raise
    return running


def _wait_ready(running: RunningDashboard, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise DashboardError(f"the dashboard exited with status {running.process.returncode}:\n"
                                 f"{running.log_tail()}")
        try:
            with urllib.request.urlopen(running.url + "/_stcore/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise DashboardError(f"the dashboard did not answer at {running.url} within {timeout:.0f} s:\n"
                         f"{running.log_tail()}")


def _is_free(host: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host, port))
    except OSError:
        return False
    return True


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
