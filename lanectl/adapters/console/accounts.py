"""Console operator accounts: a YAML file of users, each with a role and a scrypt hash.

    users:
      wang: {role: operator, password: "scrypt$16384$8$1$<salt b64>$<hash b64>"}

The hash carries its own parameters and salt, so they can be raised later without breaking stored ones. The
file is written atomically (temporary file, fsync, rename) with mode 0640: the daemon's group reads it, nobody
else. The daemon re-reads it when it changes, so `lanectl console-user passwd/remove` takes effect at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import yaml

Role = Literal["operator", "supervisor"]
ROLES: tuple[str, ...] = ("operator", "supervisor")
# recorded as `console:<name>` in the audit: letters, digits and . _ - only
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256
# scrypt cost: 16 MiB and ~50 ms per check on a booth PC; stored with each hash
N, R, P, DKLEN = 2 ** 14, 8, 1, 32
FILE_MODE = 0o640


class AccountError(ValueError):
    """A bad name, password, role or accounts file; the message says which and why."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password: str  # the stored hash, "scrypt$n$r$p$salt$hash"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str, *, salt: Optional[bytes] = None, n: int = N, r: int = R, p: int = P) -> str:
    check_password(password)
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=DKLEN,
                            maxmem=256 * 1024 * 1024)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` hashes to `stored`; False for a wrong password or a hash this code cannot read."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest, validate=True)
        got = hashlib.scrypt(password.encode("utf-8")[:MAX_PASSWORD * 4], salt=base64.b64decode(salt, validate=True),
                             n=int(n), r=int(r), p=int(p), dklen=len(want), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


# checked against when the name is unknown, so an unknown name costs the same time as a wrong password
_DUMMY = f"scrypt${N}${R}${P}${_b64(bytes(16))}${_b64(bytes(DKLEN))}"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise AccountError(f"bad user name {name!r}: 1-32 letters, digits, '.', '_' or '-', starting with a "
                           "letter or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"password too long: at most {MAX_PASSWORD} characters")
    return password


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise AccountError(f"bad role {role!r}: expected {' or '.join(ROLES)}")
    return role  # type: ignore[return-value]


def read_users(path: Path) -> dict[str, User]:
    """The accounts in `path`; an absent file has none. AccountError names the file, the key and the reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AccountError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise AccountError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("users", {}), dict) or set(doc) - {"users"}:
        raise AccountError(f"{path}: expected a mapping with one key, users: {{name: {{role, password}}}}")
    users: dict[str, User] = {}
    for name, entry in (doc.get("users") or {}).items():
        where = f"{path}: users.{name}"
        if not isinstance(name, str) or not NAME.match(name):
            raise AccountError(f"{where}: bad user name")
        if not isinstance(entry, dict) or set(entry) != {"role", "password"}:
            raise AccountError(f"{where}: expected exactly role and password")
        if entry["role"] not in ROLES:
            raise AccountError(f"{where}.role: expected {' or '.join(ROLES)}, not {entry['role']!r}")
        if not isinstance(entry["password"], str) or not entry["password"].startswith("scrypt$"):
            raise AccountError(f"{where}.password: expected a scrypt hash written by `lanectl console-user`")
        users[name] = User(name, entry["role"], entry["password"])
    return users


def write_users(path: Path, users: dict[str, User]) -> None:
    """Replace `path` atomically with `users`, mode 0640, keeping the group of the file it replaces."""
    doc = {"users": {u.name: {"role": u.role, "password": u.password} for u in sorted(users.values(),
                                                                                       key=lambda u: u.name)}}
    text = ("# lanectl console accounts: managed by `lanectl console-user` (scrypt hashes; do not edit by hand)\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        group = path.stat().st_gid
    except FileNotFoundError:
        group = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        if group is not None:
            try:
                os.fchown(fd, -1, group)
            except PermissionError:  # not ours to give: the file keeps the writer's group
                pass
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


class Accounts:
    """The accounts file as the daemon sees it: re-read when its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: Optional[tuple[int, int]] = None
        self._users: dict[str, User] = {}

    def users(self) -> dict[str, User]:
        try:
            st = self.path.stat()
            stamp: Optional[tuple[int, int]] = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._users = read_users(self.path) if stamp is not None else {}
            self._stamp = stamp
        return self._users

    def user(self, name: str) -> Optional[User]:
        return self.users().get(name)

    def check(self, name: str, password: str) -> Optional[User]:
        """The user when `password` is theirs, else None (an unknown name takes as long as a wrong password)."""
        user = self.user(name)
        ok = verify_password(password, user.password if user is not None else _DUMMY)
        return user if ok and user is not None else None
