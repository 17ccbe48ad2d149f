"""sd_notify(3) without libsystemd: readiness, status text, stopping and watchdog pings.

systemd passes ``$NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for the abstract namespace) to a
``Type=notify`` service; the service sends newline-separated ``KEY=VALUE`` datagrams to it. Outside systemd the
variable is unset and every call here is a cheap no-op, so the daemon runs unchanged from a shell or in tests.

The watchdog: with ``WatchdogSec=30`` systemd sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``) and restarts the
service if no ``WATCHDOG=1`` arrives within the period. :func:`watchdog_loop` pings every half period, and only
while the app's ``health()`` says so: a wedged event loop never reaches the ping, and a dead lane task makes
``health()`` false, so in both cases systemd restarts us.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Optional

log = logging.getLogger(__name__)

__all__ = ["SystemdNotifier", "watchdog_interval", "watchdog_loop"]


def _address(raw: str | None) -> str | bytes | None:
    """The sendto() address for a $NOTIFY_SOCKET value, or None when there is nothing to notify."""
    if not raw:
        return None
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()  # abstract namespace
    if raw.startswith("/"):
        return raw
    # vsock:... and relative paths are not something systemd gives a system service on a lane PC.
    log.warning("ignoring unsupported NOTIFY_SOCKET=%r", raw)
    return None


class SystemdNotifier:
    """Sends notifications to systemd. ``socket_path=None`` reads ``$NOTIFY_SOCKET`` from ``env``."""

    def __init__(self, socket_path: str | None = None, *, env: Mapping[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        raw = socket_path if socket_path is not None else environ.get("NOTIFY_SOCKET")
        self._address = _address(raw)
        self._sock: socket.socket | None = None
        self._failing = False

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram. Returns True if it was sent; I/O errors are logged
        (once, and once on recovery), never raised."""
        if self._address is None or not assignments:
            return False
        for a in assignments:
            if "=" not in a or "\n" in a:
                raise ValueError(f"bad sd_notify assignment {a!r}")
        payload = "\n".join(assignments).encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # never stall the event loop on a full systemd queue
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                log.warning("sd_notify to %r failing: %s", self._address, exc)
            return False
        if self._failing:
            self._failing = False
            log.info("sd_notify to %r recovered", self._address)
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *((f"STATUS={_one_line(status)}",) if status else ()))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *((f"STATUS={_one_line(status)}",) if status else ()))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time during a long start-up or shutdown (``EXTEND_TIMEOUT_USEC``)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def watchdog_interval(env: Mapping[str, str] | None = None, *, pid: int | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None when the watchdog is off or meant
    for another process (``$WATCHDOG_PID`` differs from ours)."""
    environ = os.environ if env is None else env
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring unparsable WATCHDOG_USEC=%r", raw)
        return None
    if usec <= 0:
        return None
    wpid = environ.get("WATCHDOG_PID")
    if wpid:
        try:
            if int(wpid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            log.warning("ignoring unparsable WATCHDOG_PID=%r", wpid)
            return None
    return usec / 2 / 1_000_000


async def watchdog_loop(
    notifier: SystemdNotifier,
    health: Callable[[], bool],
    *,
    interval: float | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    status: Callable[[], str] = lambda: "running",
) -> None:
    """Ping the watchdog every ``interval`` seconds (default: :func:`watchdog_interval`) while ``health()`` is
    true. Returns at once when there is no watchdog; otherwise runs until cancelled. A ``health()`` that raises
    counts as unhealthy. Logs once when pings are withheld and once when they resume."""
    if interval is None:
        interval = watchdog_interval()
    if interval is None or interval <= 0 or not notifier.enabled:
        return
    withholding = False
    while True:
        try:
            healthy = bool(health())
            why = "health check failed"
        except Exception as exc:  # noqa: BLE001 - a broken health check must stop the pings, not the loop
            healthy = False
            why = f"health check raised {type(exc).__name__}: {exc}"
        if healthy:
            notifier.watchdog()
            if withholding:
                withholding = False
                log.info("health restored; watchdog pings resumed")
                notifier.status(status())
        elif not withholding:
            withholding = True
            log.error("%s; withholding watchdog pings, systemd will restart lanectl", why)
            notifier.status(f"unhealthy: {why}; watchdog pings withheld")
        await sleep(interval)


async def status_loop(
    notifier: SystemdNotifier,
    line: Callable[[], str],
    *,
    interval: float = 5.0,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    changed: Optional[asyncio.Event] = None,
) -> None:
    """Keep STATUS= current: send ``line()`` when it differs from what was last sent, looked at every
    ``interval`` seconds and at once when ``changed`` is set (a lane's fault came or went). Returns at once
    outside systemd."""
    if not notifier.enabled:
        return
    last = None
    while True:
        text = line()
        if text != last:
            notifier.status(text)
            last = text
        if changed is None:
            await sleep(interval)
            continue
        try:
            await asyncio.wait_for(changed.wait(), interval)
        except TimeoutError:
            pass
        changed.clear()
