"""A virtual RS-485 cable made of two real pty pairs.

The daemon opens one tty path and the device emulator the other, exactly as on a lane PC, so the code under
test is the real serial stack (pyserial, pymodbus' serial transport) and not a mock. A pty has no line speed,
and pymodbus' RTU framer ignores inter-character timing, so timing bugs would not show on a bare pty: with
`baudrate` set, the relay holds every byte for its time on the wire.

    daemon --(slave A)== pty A ==(master A)--[relay threads]--(master B)== pty B ==(slave B)-- emulator

The relay runs in plain threads (blocking select + monotonic-clock pacing), so it works the same whatever
asyncio loop (or none) the two ends use.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty

__all__ = ["CableProcess", "VirtualCable", "wire_time", "char_time"]


def char_time(baudrate: int, bits_per_char: int = 10) -> float:
    """Seconds one character occupies the line (8N1 = 10 bits: start, 8 data, stop; 8E1 = 11)."""
    if baudrate <= 0:
        raise ValueError("baudrate must be positive")
    return bits_per_char / baudrate


def wire_time(n_bytes: int, baudrate: int, bits_per_char: int = 10) -> float:
    """Seconds `n_bytes` back to back take on the wire, e.g. a 16-byte frame at 9600 8N1: ~16.7 ms."""
    return n_bytes * char_time(baudrate, bits_per_char)


class _Pump:
    """One direction of the cable: reads a master, writes the other master, paced like a UART.

    Pacing is computed, not slept: `start` is when the first queued byte began to leave the sender, so byte k
    is due at start + (k + 1) * char_t no matter how late the thread wakes. A byte that arrives while the
    line is busy queues behind the previous one (back-to-back), one that arrives on an idle line starts then.
    """

    def __init__(self, name: str, src: int, dst: int, wake_r: int, char_t: float) -> None:
        self.src, self.dst, self.wake_r, self.char_t = src, dst, wake_r, char_t
        self.queued = bytearray()  # received from src, still "on the wire"
        self.start = 0.0  # wire start time of queued[0]
        self.out = bytearray()  # due bytes the receiver's buffer could not take yet
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._loop()
        except OSError:
            # The fds are closed only after the threads are joined, so this is an unexpected pty error:
            # end this direction quietly, like a cut wire.
            return

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            self._release_due(now)
            timeout = 0.5  # upper bound only: the wake pipe ends the thread promptly
            if self.queued:
                timeout = max(0.0, self.start + self.char_t - now)
            writers = [self.dst] if self.out else []
            readable, writable, _ = select.select([self.src, self.wake_r], writers, [], timeout)
            if self.wake_r in readable:
                return
            if self.src in readable:
                data = os.read(self.src, 4096)
                if data:
                    arrived = time.monotonic()
                    if not self.queued:
                        # An idle line: the byte starts now, or after the previous byte has fully left.
                        self.start = max(self.start, arrived)
                    self.queued += data
            if writable:
                self._flush()

    def _release_due(self, now: float) -> None:
        if not self.queued:
            return
        if self.char_t <= 0:
            n = len(self.queued)
        else:
            # A small epsilon so a byte due "exactly now" is not held for one more wake-up.
            n = min(len(self.queued), int((now - self.start) / self.char_t + 1e-6))
        if n <= 0:
            return
        self.out += self.queued[:n]
        del self.queued[:n]
        self.start += n * self.char_t
        self._flush()

    def _flush(self) -> None:
        if not self.out:
            return
        try:
            written = os.write(self.dst, self.out)
        except BlockingIOError:
            return  # receiver's input buffer full: wait for writability
        del self.out[:written]


class VirtualCable:
    """Two pty pairs relayed master<->master; the slave ends are published at `a_link` and `b_link`.

    `unplug()` removes the links and closes the ptys (an open port's reads/writes start failing, like a USB
    adapter pulled out); `plug()` creates fresh ptys behind the same paths.
    """

    def __init__(self, a_link: str, b_link: str, baudrate: int | None = None, bits_per_char: int = 10) -> None:
        self.a_link, self.b_link = a_link, b_link
        self.baudrate, self.bits_per_char = baudrate, bits_per_char
        self._char_t = char_time(baudrate, bits_per_char) if baudrate else 0.0
        self._fds: list[int] = []
        self._pumps: list[_Pump] = []
        self._wake_w: int | None = None
        self._lock = threading.Lock()
        self.plug()

    @property
    def plugged(self) -> bool:
        return bool(self._pumps)

    def plug(self) -> None:
        """Create fresh pty pairs and publish them at the two link paths (no-op when already plugged)."""
        with self._lock:
            if self._pumps:
                return
            m_a, s_a = os.openpty()
            m_b, s_b = os.openpty()
            wake_r, wake_w = os.pipe()
            # We keep our own slave fds open: without any open slave, reading a master fails with EIO, so the
            # relay would break each time the daemon closes and reopens its port.
            for fd in (s_a, s_b):
                tty.setraw(fd)  # no echo, no line discipline: bytes pass as they are
            for fd in (m_a, m_b):
                os.set_blocking(fd, False)
            self._fds = [m_a, s_a, m_b, s_b, wake_r, wake_w]
            self._wake_w = wake_w
            self._publish(self.a_link, os.ttyname(s_a))
            self._publish(self.b_link, os.ttyname(s_b))
            name = os.path.basename(self.a_link)
            self._pumps = [
                _Pump(f"wire-{name}-a2b", m_a, m_b, wake_r, self._char_t),
                _Pump(f"wire-{name}-b2a", m_b, m_a, wake_r, self._char_t),
            ]
            for pump in self._pumps:
                pump.thread.start()

    def unplug(self) -> None:
        """Remove the links and close the ptys: whoever holds a slave end open sees EOF / EIO."""
        with self._lock:
            if not self._pumps:
                return
            for link in (self.a_link, self.b_link):
                try:
                    os.unlink(link)
                except FileNotFoundError:
                    pass
            # Stop the threads before closing their fds (closing an fd under a blocked select is undefined).
            assert self._wake_w is not None
            os.write(self._wake_w, b"x")
            for pump in self._pumps:
                pump.thread.join(timeout=5)
            self._pumps = []
            for fd in self._fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._fds = []
            self._wake_w = None

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> "VirtualCable":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wire_time(self, n_bytes: int) -> float:
        """Wire time of `n_bytes` on this cable (0 when unpaced)."""
        return n_bytes * self._char_t

    @staticmethod
    def _publish(link: str, target: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(link)), exist_ok=True)
        # Atomic replace: a reader never sees the path missing or pointing at a stale pty mid-update.
        tmp = f"{link}.tmp{os.getpid()}"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(target, tmp)
        os.replace(tmp, link)



class CableProcess:
    """Several cables relayed by a process of their own (`python -m hil.wire SPEC_JSON`), for the benches.

    In the bench's process the relay threads share one interpreter lock with the emulators and the bench's
    own loop: a thread woken for a byte can wait for the lock (up to the 5 ms switch interval, longer when the
    loop is busy), and a frame then arrives late on one side of a comparison and not the other. Here they
    share it only with each other. No unplug/replug (the HIL tests that pull cables use VirtualCable).
    """

    def __init__(self, cables: list[tuple[str, str]], baudrate: int | None, nice: int = 0) -> None:
        self.cables, self.baudrate, self.nice = cables, baudrate, nice
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 10.0) -> None:
        spec = json.dumps({"baudrate": self.baudrate, "cables": self.cables})
        nice = self.nice

        def priority() -> None:
            os.setpriority(os.PRIO_PROCESS, 0, nice)  # absolute, whatever the bench runs at
        self.proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hil.wire", spec,
                                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                         preexec_fn=priority if nice else None)
        assert self.proc.stdout is not None
        if (await asyncio.wait_for(self.proc.stdout.readline(), timeout)).strip() != b"ready":
            raise RuntimeError("the cable process did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


def _serve(spec_json: str) -> None:
    spec = json.loads(spec_json)
    cables = [VirtualCable(a, b, spec["baudrate"]) for a, b in spec["cables"]]
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    try:
        while not done.wait(0.5):
            if os.getppid() == 1:  # the bench died without stopping us
                break
    finally:
        for cable in cables:
            cable.close()


if __name__ == "__main__":
    _serve(sys.argv[1])
