"""The daemon as a separate process on the rig — as on a lane PC — for HIL tests and benchmarks."""

from __future__ import annotations

import asyncio
import compileall
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import lanectl
from lanectl.adapters.control_client import ControlClient, ControlClientError


@functools.cache
def bytecode_as_installed() -> None:
    """Compile lanectl's modules as `pip install` of the wheel does: a lane PC's daemon never compiles at start. A
    checkout run under PYTHONDONTWRITEBYTECODE (or with a changed source) compiles in the daemon instead: a slower
    start, and the compiler's memory stays in the daemon's RSS (2.3 MiB of 63 with 4 lanes, measured Dec 2026)."""
    compileall.compile_dir(Path(lanectl.__file__).parent, quiet=1)


class DaemonProcess:
    def __init__(self, config_dir: Path, socket: Path, log_path: Path, *, log_level: str = "INFO",
                 nofile: Optional[int] = None, module: str = "lanectl",
                 env: Optional[dict[str, str]] = None, nice: int = 0) -> None:
        self.config_dir, self.socket, self.log_path = config_dir, socket, log_path
        self.log_level = log_level
        self.nofile = nofile  # e.g. 1024: the daemon runs with this hard and soft open-file limit, as under a unit
        self.module = module  # e.g. hil.bench.traced_daemon: the daemon with stage timestamps
        self.env = env or {}
        self.nice = nice  # e.g. -10: the daemon runs at this priority, as under a unit with Nice=-10
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.client = ControlClient(str(socket))

    async def start(self, timeout: float = 20.0) -> None:
        bytecode_as_installed()
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        env.pop("NOTIFY_SOCKET", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, "run", "--config", str(self.config_dir),
                 "--log-level", self.log_level], stdout=log, stderr=subprocess.STDOUT, env=env,
                preexec_fn=self._limits if self.nofile or self.nice else None)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                await self.client.status()
                return
            except ControlClientError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daemon not ready after {timeout} s:\n{self.log()[-3000:]}") from None
                await asyncio.sleep(0.1)

    def _limits(self) -> None:
        import resource
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        if self.nice:
            os.setpriority(os.PRIO_PROCESS, 0, self.nice)  # absolute, whatever the parent runs at

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("daemon ignored SIGTERM")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def peak_rss_kib(self) -> int:
        """VmHWM of the running daemon (Linux)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
