"""Who may use the dashboard, and what each role may do.

Authentication is off unless a users file is configured. The file is YAML::

    users:
      - name: dana@acme.example
        role: compliance          # viewer | investigator | compliance
        password: scrypt$...      # from `govtrace dashboard --hash-password`

Only password hashes are stored (scrypt from the standard library). Roles are cumulative: a viewer
reads the summaries, an investigator also opens spans and their raw attributes, and only
compliance exports (readiness downloads and evidence bundles), because an export takes data out of
the access log's reach.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

VIEWER, INVESTIGATOR, COMPLIANCE = "viewer", "investigator", "compliance"
ROLES = (VIEWER, INVESTIGATOR, COMPLIANCE)
# Without authentication the person at the keyboard is trusted with everything, as with the CLI.
LOCAL = "local"

VIEWS = ("fleet", "agent", "investigate", "readiness", "oversight", "drift", "evidence")
EXPORT = "export"
_VIEWER_CAN = {"fleet", "agent", "readiness", "oversight", "drift"}
PERMISSIONS: dict[str, frozenset[str]] = {
    VIEWER: frozenset(_VIEWER_CAN),
    INVESTIGATOR: frozenset(_VIEWER_CAN | {"investigate"}),
    COMPLIANCE: frozenset(set(VIEWS) | {EXPORT}),
    LOCAL: frozenset(set(VIEWS) | {EXPORT}),
}

# scrypt cost: about 50 ms per check on this machine kind, slow enough to blunt guessing.
_N, _R, _P = 2**14, 8, 1


class UsersFileError(ValueError):
    """The users file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str = ""

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


def local_user(name: str) -> User:
    return User(name=name, role=LOCAL)


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def load_users(path: str | Path) -> dict[str, User]:
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsersFileError(f"users file {path} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsersFileError(f"users file {path} is not valid YAML: {exc}") from None
    entries = document.get("users") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UsersFileError(f"users file {path} must hold a non-empty list under 'users'")
    users: dict[str, User] = {}
    for index, entry in enumerate(entries, start=1):
        users_entry = _user(entry, f"{path}: user #{index}")
        if users_entry.name in users:
            raise UsersFileError(f"{path}: user {users_entry.name!r} is listed twice")
        users[users_entry.name] = users_entry
    return users


def authenticate(users: dict[str, User], name: str, password: str) -> User | None:
    user = users.get(name.strip())
    # Check a hash even for unknown names so that timing does not tell which names exist.
    stored = user.password_hash if user else _decoy()
    return user if verify_password(password, stored) and user else None


def _user(entry: object, where: str) -> User:
    if not isinstance(entry, dict):
        raise UsersFileError(f"{where} must be a mapping with name, role and password")
    name, role, password = entry.get("name"), entry.get("role"), entry.get("password")
    if not isinstance(name, str) or not name.strip():
        raise UsersFileError(f"{where} has no name")
    if role not in ROLES:
        raise UsersFileError(f"{where} ({name}): role must be one of {', '.join(ROLES)}, got {role!r}")
    if not isinstance(password, str) or not password.startswith("scrypt$"):
        raise UsersFileError(
            f"{where} ({name}): password must be a scrypt hash from 'govtrace dashboard --hash-password'"
        )
    return User(name=name.strip(), role=role, password_hash=password)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@functools.cache
def _decoy() -> str:
    return hash_password("no such user", salt=b"govtrace-decoy..")
