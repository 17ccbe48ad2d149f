"""The site's `operators:` section: which unix users may act through the control socket, under which name.

    operators:
      users:                       # a unix user name, or a uid as a number
        wang: {name: 王师傅, roles: [open, topup]}
        1002: {roles: [open]}      # name: the unix user name of uid 1002 (or uid:1002 without one)
      groups:                      # every member of a unix group, under their unix user name
        lanectl-booth: [open]

Roles: `open` (release a barrier, with or without cash) and `topup` (credit a stored-value balance). Reading
(`status`, `records`, `outbox`, `balance`) needs no role: the socket's file mode and group decide who connects.
Without the section every member of the socket's group may act under any name (today's behaviour; the caller's
uid is recorded all the same, and `check-config` warns). Semantics: docs/operators.md.

Only the shape is checked here; the unix names are resolved by the daemon and by `check-config` on the lane PC
(lanectl/adapters/operator_identity.py).
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from lanectl.config.base import Strict

Role = Literal["open", "topup"]
ROLES: tuple[Role, ...] = ("open", "topup")
MAX_NAME_LEN = 64  # the control socket's limit on an operator name
# a unix user or group name (useradd's default rule, plus the dots and capitals some sites use), or a uid
_UNIX_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")


def _roles(v: tuple[str, ...]) -> tuple[str, ...]:
    if not v:
        raise ValueError(f"give at least one role ({', '.join(ROLES)})")
    if len(set(v)) != len(v):
        raise ValueError("a role is listed twice")
    return v


class OperatorEntry(Strict):
    name: Optional[str] = Field(None, min_length=1, max_length=MAX_NAME_LEN)
    roles: tuple[Role, ...]

    @field_validator("name")
    @classmethod
    def _printable(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        text = v.strip()
        if not text:
            raise ValueError("must not be blank")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise ValueError("must not contain control characters")
        return text

    @field_validator("roles")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _roles(v)


class OperatorsConfig(Strict):
    users: dict[str, OperatorEntry] = {}
    groups: dict[str, tuple[Role, ...]] = {}

    @field_validator("users", mode="before")
    @classmethod
    def _uid_keys(cls, v: Any) -> Any:
        # YAML reads `1002:` as a number: it is a uid, kept as its decimal text
        if isinstance(v, dict):
            return {str(k) if isinstance(k, int) and not isinstance(k, bool) else k: e for k, e in v.items()}
        return v

    @field_validator("users")
    @classmethod
    def _user_keys(cls, v: dict[str, OperatorEntry]) -> dict[str, OperatorEntry]:
        for key in v:
            if not (key.isascii() and key.isdigit()) and not _UNIX_NAME.match(key):
                raise ValueError(f"{key!r} is neither a unix user name nor a uid")
        return v

    @field_validator("groups")
    @classmethod
    def _group_keys(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for key, roles in v.items():
            if not _UNIX_NAME.match(key):
                raise ValueError(f"{key!r} is not a unix group name")
            try:
                _roles(roles)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return v

    @model_validator(mode="after")
    def _someone(self) -> "OperatorsConfig":
        if not self.users and not self.groups:
            raise ValueError("lists nobody: nobody could open a barrier. List users and/or groups, or remove the "
                             "section to let every member of the control socket's group act")
        return self


def uid_key(key: str) -> Optional[int]:
    """The uid a `users:` key names directly, or None for a user name."""
    return int(key) if key.isascii() and key.isdigit() else None
