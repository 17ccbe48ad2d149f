"""Who calls the control socket, and whether they may do what they ask.

The kernel tells the caller's uid (SO_PEERCRED): it is recorded with every release and top-up whatever the
configuration. What it may do depends on the site's `operators:` section (lanectl/config/operators.py):

- no section: :class:`AnyMember` — every process that can connect (the socket's group) may act, under the name
  it gives; without one, under its unix user name (or ``uid:<n>``). Nothing is refused here.
- a section: :class:`OperatorMap` — the uid must be listed under `users` (by name or number) or belong to a
  listed unix group, else ``not_an_operator``; it must hold the role asked for (`open`, `topup`), else
  ``not_allowed``; a name it gives must be its mapped name, else ``operator_mismatch``; without one the mapped
  name is used. root (uid 0) acts only when listed under `users` itself: group grants do not reach it, because
  uid 0 names no person (an admin acting as root is recorded as whoever the map says root is).

Every refusal is a :class:`OperatorRefused` (HTTP 403 on the socket).
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass
from typing import Optional, Protocol

from lanectl.config.operators import OperatorsConfig, uid_key
from lanectl.startup import EX_CONFIG, StartupError


@dataclass(frozen=True)
class Peer:
    """The process on the other end of a unix socket, as the kernel reports it (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


def peer_of(sock: Optional[socket.socket]) -> Optional[Peer]:
    """SO_PEERCRED of a connected unix socket; None where the kernel cannot tell (not Linux, not unix)."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", creds)
    return Peer(pid, uid, gid)


@dataclass(frozen=True)
class Operator:
    """Who a release or a top-up is recorded under: a name (never empty) and the kernel's uid (None when the
    kernel could not tell)."""

    name: str
    uid: Optional[int]


class OperatorRefused(Exception):
    """The caller may not do this: ``code`` not_an_operator | not_allowed | operator_mismatch | missing_field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Accounts(Protocol):
    """The unix user database (a fake in tests)."""

    def user_name(self, uid: int) -> Optional[str]: ...

    def group_ids(self, uid: int) -> frozenset[int]:
        """Every group of the user (primary and supplementary); empty for a uid without a passwd entry."""
        ...

    def uid_of(self, name: str) -> Optional[int]: ...

    def gid_of(self, group: str) -> Optional[int]: ...


class UnixAccounts:
    """The real user database (passwd, group; NSS). Asked at each request, so adding a user to a group takes
    effect without a restart."""

    def user_name(self, uid: int) -> Optional[str]:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return None

    def group_ids(self, uid: int) -> frozenset[int]:
        try:
            entry = pwd.getpwuid(uid)
            return frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
        except (KeyError, OSError):
            return frozenset()

    def uid_of(self, name: str) -> Optional[int]:
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            return None

    def gid_of(self, group: str) -> Optional[int]:
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            return None


class Gatekeeper(Protocol):
    configured: bool  # an `operators:` section decides (else anyone who can connect may act)

    def admit(self, peer: Optional[Peer], role: str, claimed: Optional[str]) -> Operator:
        """The operator a request of ``role`` is recorded under; :class:`OperatorRefused` if not allowed."""
        ...


def _fallback_name(accounts: Accounts, uid: int) -> str:
    return accounts.user_name(uid) or f"uid:{uid}"


class AnyMember:
    """No `operators:` section: whoever can connect may act under the name they give (uid recorded)."""

    configured = False

    def __init__(self, accounts: Optional[Accounts] = None) -> None:
        self._accounts = accounts or UnixAccounts()

    def admit(self, peer: Optional[Peer], role: str, claimed: Optional[str]) -> Operator:
        uid = peer.uid if peer is not None else None
        if claimed:
            return Operator(claimed, uid)
        if uid is None:
            raise OperatorRefused("missing_field", "operator is required: the daemon cannot tell who is calling")
        return Operator(_fallback_name(self._accounts, uid), uid)


@dataclass(frozen=True)
class _Grant:
    name: Optional[str]  # None: the unix user name
    roles: frozenset[str]
    key: str  # where it was configured, for messages


class OperatorMap:
    """An `operators:` section resolved against the user database (:func:`resolve_operators`)."""

    configured = True

    def __init__(self, users: dict[int, _Grant], groups: dict[int, tuple[str, frozenset[str]]],
                 accounts: Accounts) -> None:
        self._users = users
        self._groups = groups  # gid -> (group name, roles)
        self._accounts = accounts

    def admit(self, peer: Optional[Peer], role: str, claimed: Optional[str]) -> Operator:
        if peer is None:
            raise OperatorRefused("not_an_operator", "the daemon cannot tell who is calling (no SO_PEERCRED on "
                                  "this socket), and site operators are configured: refused")
        uid = peer.uid
        grant = self._users.get(uid)
        roles: set[str] = set(grant.roles) if grant else set()
        via_groups: list[str] = []
        if uid != 0:  # root acts only through its own users entry
            member_of = self._accounts.group_ids(uid) | {peer.gid}
            for gid, (group, granted) in self._groups.items():
                if gid in member_of:
                    roles |= granted
                    via_groups.append(group)
        if grant is None and not via_groups:
            raise OperatorRefused("not_an_operator", f"uid {uid} ({self._accounts.user_name(uid) or 'no user name'})"
                                  " is not a site operator: list it under operators.users or operators.groups "
                                  "in site.yaml")
        name = (grant.name if grant and grant.name else None) or _fallback_name(self._accounts, uid)
        if role not in roles:
            raise OperatorRefused("not_allowed", f"operator {name} (uid {uid}) may not {_VERB.get(role, role)}: "
                                  f"role {role!r} not granted (has: {', '.join(sorted(roles)) or 'none'})")
        if claimed is not None and claimed != name:
            raise OperatorRefused("operator_mismatch", f"uid {uid} is operator {name!r}, not {claimed!r}: give your "
                                  "own name or leave --operator out")
        return Operator(name, uid)


_VERB = {"open": "open a barrier", "topup": "top up a balance"}


class OperatorConfigError(Exception):
    """Names of the `operators:` section that do not resolve on this machine; each problem `key: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def resolve_operators(config: Optional[OperatorsConfig], accounts: Optional[Accounts] = None) -> Gatekeeper:
    """The gatekeeper for a site: :class:`AnyMember` without a section, else the section resolved to uids and
    gids. Unknown user or group names, two keys for one uid and one name for two uids are
    :class:`OperatorConfigError` (a typo must not silently lock an operator out or merge two people)."""
    accounts = accounts or UnixAccounts()
    if config is None:
        return AnyMember(accounts)
    problems: list[str] = []
    users: dict[int, _Grant] = {}
    names: dict[str, str] = {}  # operator name -> key
    for key, entry in config.users.items():
        where = f"operators.users.{key}"
        uid = uid_key(key)
        if uid is None:
            uid = accounts.uid_of(key)
            if uid is None:
                problems.append(f"{where}: no unix user {key!r} on this machine")
                continue
        if uid in users:
            problems.append(f"{where}: uid {uid} is already listed as operators.users.{users[uid].key}")
            continue
        name = entry.name or (key if uid_key(key) is None else _fallback_name(accounts, uid))
        if name in names:
            problems.append(f"{where}: operator name {name!r} is already operators.users.{names[name]}'s "
                            "(one name, one person)")
            continue
        names[name] = key
        users[uid] = _Grant(entry.name or (key if uid_key(key) is None else None), frozenset(entry.roles), key)
    groups: dict[int, tuple[str, frozenset[str]]] = {}
    for group, roles in config.groups.items():
        gid = accounts.gid_of(group)
        if gid is None:
            problems.append(f"operators.groups.{group}: no unix group {group!r} on this machine")
            continue
        groups[gid] = (group, frozenset(roles))
    if problems:
        raise OperatorConfigError(problems)
    return OperatorMap(users, groups, accounts)


def site_gatekeeper(config: Optional[OperatorsConfig], site_file: str) -> Gatekeeper:
    """:func:`resolve_operators` for the daemon's start: a name that does not resolve is a StartupError
    naming the site file and the key (exit 78), not a lock-out discovered at the booth."""
    try:
        return resolve_operators(config)
    except OperatorConfigError as exc:
        raise StartupError(site_file, "; ".join(exc.problems), EX_CONFIG) from None
