"""Who is sending and who is reading: bearer tokens (and client certificates) to principals.

The tokens file holds only SHA-256 hashes of tokens, never the tokens, so reading it does not let
anyone impersonate an agent::

    agents:
      - principal: billing-service            # stamped on every span this credential sends
        agent_ids: [billing-agent, billing-eu] # the agent ids it may speak for ("*": any)
        token_sha256: 9f86d081884c7d65...      # one hash or a list (rotation: old and new)
        client_cn: billing.agents.acme.example # optional: mutual-TLS certificate common name
    readers:
      - user: dana@acme.example
        role: compliance                       # viewer | investigator | compliance
        token_sha256: 60303ae22b998861...
      - user: dashboard
        role: compliance
        token_sha256: fd61a03af4f77d87...
        acts_for_users: true                   # a front end that names the person (X-Govtrace-User)

``python -m govtrace.collector.auth new-token`` prints a fresh token and the line to paste.
Token checks are dictionary lookups of the token's hash: nothing secret is compared byte by byte,
so response timing does not leak how much of a guess was right.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from govtrace.collector.errors import PermissionDenied, Unauthenticated

VIEWER, INVESTIGATOR, COMPLIANCE = "viewer", "investigator", "compliance"
ROLES = (VIEWER, INVESTIGATOR, COMPLIANCE)  # cumulative, least to most
ANY_AGENT = "*"


class TokensFileError(ValueError):
    """The tokens file cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Identity:
    """An authenticated sender: the principal stamped on its spans and the agents it may speak for."""

    principal: str
    agent_ids: frozenset[str]

    def may_speak_for(self, agent_id: str) -> bool:
        return ANY_AGENT in self.agent_ids or agent_id in self.agent_ids


@dataclass(frozen=True)
class ReaderGrant:
    user: str
    role: str
    acts_for_users: bool = False


@dataclass(frozen=True)
class ReaderIdentity:
    """Who a read is recorded against, and the role that decides what it may see."""

    user: str | None
    role: str | None

    def at_least(self, role: str) -> bool:
        return self.role in ROLES and ROLES.index(self.role) >= ROLES.index(role)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Credentials:
    """The parsed tokens file: lookups from token hash (or certificate name) to identity."""

    def __init__(self, agents: dict[str, Identity], agents_by_cn: dict[str, Identity],
                 readers: dict[str, ReaderGrant]):
        self._agents = agents
        self._agents_by_cn = agents_by_cn
        self._readers = readers

    @classmethod
    def load(cls, path: str | Path) -> Credentials:
        path = Path(path)
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise TokensFileError(f"tokens file {path} cannot be read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise TokensFileError(f"tokens file {path} is not valid YAML: {exc}") from None
        if not isinstance(document, dict) or not set(document) <= {"agents", "readers"}:
            raise TokensFileError(f"tokens file {path} must be a mapping with 'agents' and/or 'readers' lists")
        agents: dict[str, Identity] = {}
        by_cn: dict[str, Identity] = {}
        readers: dict[str, ReaderGrant] = {}
        for index, entry in enumerate(document.get("agents") or [], start=1):
            where = f"{path}: agents #{index}"
            entry = _mapping(entry, where)
            principal = _text(entry, "principal", where)
            agent_ids = entry.get("agent_ids")
            if not isinstance(agent_ids, list) or not agent_ids or not all(isinstance(a, str) and a for a in agent_ids):
                raise TokensFileError(f"{where} ({principal}): agent_ids must be a non-empty list of agent ids or '*'")
            identity = Identity(principal, frozenset(agent_ids))
            for digest in _hashes(entry, where, required=not entry.get("client_cn")):
                _add_once(agents, digest, identity, where)
            if entry.get("client_cn"):
                _add_once(by_cn, _text(entry, "client_cn", where), identity, where)
        for index, entry in enumerate(document.get("readers") or [], start=1):
            where = f"{path}: readers #{index}"
            entry = _mapping(entry, where)
            user = _text(entry, "user", where)
            role = entry.get("role")
            if role not in ROLES:
                raise TokensFileError(f"{where} ({user}): role must be one of {', '.join(ROLES)}, got {role!r}")
            grant = ReaderGrant(user, role, bool(entry.get("acts_for_users", False)))
            for digest in _hashes(entry, where, required=True):
                if digest in agents:
                    raise TokensFileError(f"{where} ({user}): a token may be an agent's or a reader's, not both")
                _add_once(readers, digest, grant, where)
        return cls(agents, by_cn, readers)

    # --- ingest -----------------------------------------------------------------------------------
    def identify_sender(self, headers: Mapping[str, str], client_cn: str | None = None) -> Identity:
        """The identity behind a request's bearer token or client certificate; raises Unauthenticated."""
        token = bearer_token(headers)
        by_token = self._agents.get(token_hash(token)) if token else None
        if token and by_token is None:
            raise Unauthenticated("the bearer token is not an agent credential of this collector")
        by_cert = self._agents_by_cn.get(client_cn) if client_cn else None
        if by_token and by_cert and by_token != by_cert:
            raise Unauthenticated("the bearer token and the client certificate name different principals")
        identity = by_token or by_cert
        if identity is None:
            raise Unauthenticated(
                "authentication required: send 'authorization: Bearer <token>'"
                + (" or a registered client certificate" if self._agents_by_cn else "")
            )
        return identity

    # --- reads ------------------------------------------------------------------------------------
    def identify_reader(self, headers: Mapping[str, str]) -> ReaderIdentity:
        token = bearer_token(headers)
        if not token:
            raise Unauthenticated("authentication required: send 'Authorization: Bearer <reader token>'")
        grant = self._readers.get(token_hash(token))
        if grant is None:
            if token_hash(token) in self._agents:
                raise PermissionDenied("agent credentials may send spans but not read the store")
            raise Unauthenticated("the bearer token is not a reader credential of this collector")
        if grant.acts_for_users and headers.get("x-govtrace-user"):
            # A trusted front end (the dashboard) authenticates people itself; the read is
            # recorded against the person, and the front end's own role bounds what it may run.
            return ReaderIdentity(f"{headers['x-govtrace-user']} via {grant.user}", grant.role)
        return ReaderIdentity(grant.user, grant.role)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization") or ""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def untrusted_reader(headers: Mapping[str, str]) -> ReaderIdentity:
    """Without authentication, the person at the keyboard names themself (as with the CLI)."""
    return ReaderIdentity(headers.get("x-govtrace-user"), headers.get("x-govtrace-role"))


def _mapping(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise TokensFileError(f"{where} must be a mapping")
    return entry


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TokensFileError(f"{where} has no {key}")
    return value.strip()


def _hashes(entry: dict[str, Any], where: str, *, required: bool) -> list[str]:
    value = entry.get("token_sha256")
    values = value if isinstance(value, list) else [] if value is None else [value]
    if required and not values:
        raise TokensFileError(f"{where} has no token_sha256")
    out = []
    for digest in values:
        digest = str(digest).strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise TokensFileError(f"{where}: token_sha256 must be 64 hex digits (sha256 of the token), "
                                  "never the token itself")
        out.append(digest)
    return out


def _add_once(table: dict, key: str, value: Any, where: str) -> None:
    if key in table and table[key] != value:
        raise TokensFileError(f"{where}: the same credential is listed for two principals")
    table[key] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m govtrace.collector.auth",
                                     description="Make a credential for the tokens file (auth_tokens_file).")
    sub = parser.add_subparsers(dest="kind", required=True)
    agent = sub.add_parser("new-token", help="a fresh random token and its tokens-file entry")
    agent.add_argument("--principal", help="agent credential: the principal stamped on its spans")
    agent.add_argument("--agent-id", action="append", default=[], help="agent id it may speak for (repeatable)")
    agent.add_argument("--reader", metavar="USER", help="reader credential for USER instead")
    agent.add_argument("--role", choices=ROLES, default=VIEWER, help="reader role (default viewer)")
    args = parser.parse_args(argv)
    token = "gt_" + secrets.token_urlsafe(32)
    if args.reader:
        entry = {"readers": [{"user": args.reader, "role": args.role, "token_sha256": token_hash(token)}]}
    elif args.principal and args.agent_id:
        entry = {"agents": [{"principal": args.principal, "agent_ids": args.agent_id,
                             "token_sha256": token_hash(token)}]}
    else:
        parser.error("give --principal and at least one --agent-id, or --reader USER")
    print(f"token (give it to the client; it is not stored anywhere): {token}", file=sys.stderr)
    print(yaml.safe_dump(entry, sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
