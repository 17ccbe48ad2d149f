"""The daemon's file-descriptor budget: the soft RLIMIT_NOFILE raised to the hard limit at start, and the
listeners' connection limits checked against it (lanectl.service sets LimitNOFILE=)."""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger("lanectl")

# Descriptors the daemon needs besides its listeners' connections: the database (+ WAL, SHM), serial ports,
# Modbus links, outgoing platform / webhook / camera HTTP connections, the listening sockets, the journal.
RESERVED_FDS = 128
_MIN_HTTP = 16
_CAP_WHEN_UNLIMITED = 65536  # a soft limit cannot be set to "infinity" for NOFILE


@dataclass(frozen=True)
class Budget:
    soft: int  # the open-file limit in force after raise_nofile()
    hard: int
    http_max_connections: int  # what the HTTP listener may hold (the configured value, or less if it does not fit)
    control_max_connections: int
    lan_max_connections: int = 0  # the LAN listener (cameras): a room of its own, like the control socket's


def raise_nofile() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one (systemd's LimitNOFILE=, a shell's ulimit -Hn); returns
    (soft, hard) in force. Never lowers anything; a refusal leaves the limit as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, _CAP_WHEN_UNLIMITED)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft, hard


def plan(soft: int, hard: int, http_max: int, control_max: int, *, lan_max: int = 0) -> Budget:
    """The connection limits that fit ``soft``: the control socket and the LAN listener keep their room
    (operators and cameras must get in), the public HTTP listener gets what is left after RESERVED_FDS. One log
    line if the configuration had to be cut."""
    if soft == resource.RLIM_INFINITY or http_max + control_max + lan_max + RESERVED_FDS <= soft:
        return Budget(soft, hard, http_max, control_max, lan_max)
    http = max(_MIN_HTTP, soft - control_max - lan_max - RESERVED_FDS)
    lan = f" + lan.max_connections {lan_max}" if lan_max else ""
    log.warning("open-file limit %d does not fit http.max_connections %d + control.max_connections %d%s + %d "
                "reserved: the HTTP listener holds at most %d connections (raise LimitNOFILE= in the unit or lower "
                "http.max_connections)", soft, http_max, control_max, lan, RESERVED_FDS, http)
    return Budget(soft, hard, min(http, http_max), control_max, lan_max)
