"""The site's `console:` section: the booth console in the browser (docs/console.md), served on the LAN listener
only. Its accounts live in their own file (`users_file`), managed by `lanectl console-user`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from lanectl.config.base import Strict


class ConsoleConfig(Strict):
    enabled: bool = False  # on: the LAN listener opens and serves /console/
    # operator accounts (scrypt hashes); relative to the configuration directory: /etc/lanectl/console-users.yaml
    users_file: Path = Path("console-users.yaml")
    idle_logout_min: int = Field(15, ge=1, le=720)  # a session with no operator action for this long ends
    # login rate limiting, per source address and per user name: this many failures lock out for lockout_s
    max_failures: int = Field(5, ge=1, le=100)
    lockout_s: int = Field(60, ge=1, le=86400)
