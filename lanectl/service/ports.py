"""Ports: what the service layer needs from the outside world. Adapters implement them; tests use fakes."""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Protocol

from lanectl.core import effects as fx
from lanectl.core.events import Event

# Adapters push events through this; it never blocks (it puts on the lane's queue).
Emit = Callable[[Event], None]


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware wall-clock time."""

    def monotonic(self) -> float:
        """Seconds, for intervals and deadlines."""

    async def sleep(self, seconds: float) -> None: ...


class Barrier(Protocol):
    """Barrier + loops IO. One adapter instance owns the device (and its bus)."""

    async def run(self, emit: Emit) -> None:
        """Connect, poll inputs, emit IoSnapshot on change, DeviceFault / DeviceRecovered; reconnect with
        backoff. Runs until cancelled."""

    async def open(self) -> None:
        """Pulse OPEN. Raises BarrierError when the command could not be delivered."""

    async def close(self) -> None:
        """Pulse CLOSE. Raises BarrierUnsafe (without writing) when the safety loop or anti-smash input is
        active at the moment of the command, BarrierError when it could not be delivered."""


class PlateSource(Protocol):
    async def run(self, emit: Emit) -> None:
        """Read plates and emit PlateRead; survive garbage and a vanishing port. Runs until cancelled."""


class Display(Protocol):
    """The lane's LED / voice board. Renders the lane's message (its key and fields through the lot's
    templates, or the default text/voice) and sends it; raises on a broken board (the runner logs it)."""

    async def show(self, message: fx.Display) -> None: ...


class BarrierError(Exception):
    """A barrier command could not be delivered (timeout, port gone, exception answer)."""


class BarrierUnsafe(BarrierError):
    """CLOSE refused: a car or obstacle is under the arm."""



class StorageUnavailable(Exception):
    """The local store cannot write now (disk full, read-only file system, I/O error, locked by another
    process). Raised only after a clean rollback: nothing of the failed write was kept. The caller does
    without it (a lane refuses what must be written ahead) or retries later; the store's StorageHealth has
    logged the fault once and probes for its end."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
