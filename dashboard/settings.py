"""The dashboard's configuration: one frozen value, built once from the environment by ``app.py``.

``govtrace dashboard`` passes its flags to the Streamlit process through these variables, so the
app and the command agree on one set of names (documented in docs/dashboard.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from govtrace.analytics.reader import DEFAULT_SERVER

SERVER_ENV = "GOVTRACE_SERVER"
USERS_ENV = "GOVTRACE_DASHBOARD_USERS"
KEY_DIR_ENV = "GOVTRACE_KEY_DIR"  # the ledger's key directory: lets the Evidence view sign bundles


class SettingsError(ValueError):
    """A setting is unusable; the message names it."""


@dataclass(frozen=True)
class DashboardSettings:
    server: str = DEFAULT_SERVER
    users_file: str | None = None
    key_dir: str | None = None

    @property
    def auth_enabled(self) -> bool:
        return self.users_file is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DashboardSettings:
        server = (environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")
        users = environ.get(USERS_ENV) or None
        return validated(cls(server=server, users_file=users, key_dir=environ.get(KEY_DIR_ENV) or None))


def validated(settings: DashboardSettings) -> DashboardSettings:
    if not settings.server.startswith(("http://", "https://")):
        raise SettingsError(f"{SERVER_ENV} must be the collector's http(s):// URL, got {settings.server!r}")
    if settings.users_file is not None and not Path(settings.users_file).is_file():
        raise SettingsError(f"{USERS_ENV}: users file {settings.users_file} does not exist")
    return settings
