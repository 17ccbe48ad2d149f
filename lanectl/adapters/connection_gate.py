"""A cap on the connections one listener holds open, so a flood cannot eat the daemon's file descriptors.

Measured before: 1100 idle TCP connections to the public listener used up the 1024 descriptors the unit had;
the control socket could not accept `lanectl status` any more and asyncio logged a traceback per failed accept.
Now each listener (the public HTTP listener, the control socket) accepts at most ``limit`` connections at a time:
one over the limit is closed at once (it never waits holding a descriptor), and the refusals are counted in a
:class:`~lanectl.adapters.log_tally.Tally` (one log line per interval). Idle connections are closed by the
aiohttp runner's ``keepalive_timeout`` (which also runs from the moment a connection is accepted, so a client
that sends nothing, or a request slowly, is dropped after that time).

:class:`GatedSite` is an aiohttp site that serves a runner through the gate, on a host/port or on a bound
socket.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable, Optional

from aiohttp import web

from lanectl.adapters.log_tally import Tally


class ConnectionGate:
    """Counts the connections of one listener and refuses those over ``limit``."""

    def __init__(self, limit: int, refused: Tally) -> None:
        self.limit = limit
        self.open = 0
        self.refused_total = 0
        self.tally = refused  # counts the refusals in the log

    def wrap(self, factory: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.BaseProtocol]:
        def make() -> asyncio.BaseProtocol:
            if self.open >= self.limit:
                return _Refuse(self)
            self.open += 1
            return _Counted(factory(), self)
        return make

    def _closed(self) -> None:
        self.open -= 1

    def _refuse(self) -> None:
        self.refused_total += 1
        self.tally.note(f"over the limit of {self.limit} open connections")


class _Refuse(asyncio.Protocol):
    """Closes the connection the moment it is made: the descriptor is given back at once."""

    def __init__(self, gate: ConnectionGate) -> None:
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._gate._refuse()
        transport.abort()  # no lingering close: the descriptor is freed now


class _Counted(asyncio.Protocol):
    """The real protocol (aiohttp's request handler) behind a counter that drops when the connection ends."""

    def __init__(self, inner: Any, gate: ConnectionGate) -> None:
        self._inner, self._gate, self._done = inner, gate, False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self._done:
            self._done = True
            self._gate._closed()
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> Optional[bool]:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GatedSite(web.BaseSite):
    """An aiohttp site whose connections go through a :class:`ConnectionGate`: on ``host``/``port`` or on an
    already bound ``sock``."""

    def __init__(self, runner: web.BaseRunner, gate: ConnectionGate, *, host: Optional[str] = None,
                 port: Optional[int] = None, sock: Optional[socket.socket] = None, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self.gate = gate
        self._host, self._port, self._sock = host, port, sock

    @property
    def name(self) -> str:
        if self._sock is not None:
            return f"sock:{self._sock.getsockname()}"
        return f"http://{self._host}:{self._port}"

    @property
    def sockets(self) -> list[socket.socket]:
        server = self._server
        return list(getattr(server, "sockets", None) or [])

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        factory = self.gate.wrap(server)
        if self._sock is not None:
            self._server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(factory, self._host, self._port, backlog=self._backlog,
                                                    reuse_address=True)
