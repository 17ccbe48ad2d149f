"""A real Mosquitto 2 started from the system's `mosquitto` binary: its own configuration (password file + ACL,
or client certificates) on a free loopback port, for the HIL benches and the tests (tests/mosquitto.py adds the
test users and the pytest fixtures).

    broker = Mosquitto(directory, users={"boothA": "pw"}, acl="user boothA\ntopic readwrite lanectl/#\n")
    broker.configure(); broker.start()
    broker.stop(); broker.start()          # a broker outage (same port; no persistence: sessions are lost)
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


def binary(name: str) -> Optional[str]:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificates(d: Path, clients: tuple[str, ...]) -> None:
    """A throw-away CA, the broker's certificate (for IP 127.0.0.1) and one client certificate per name
    (CN = the name: the broker's user name with use_identity_as_username). EC keys: fast to make."""
    d.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=lanectl test CA")
    for name, ext in (("broker", "subjectAltName=IP:127.0.0.1"), *((c, "extendedKeyUsage=clientAuth")
                                                                   for c in clients)):
        (d / f"{name}.ext").write_text(ext + "\n")
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")


@dataclass
class Mosquitto:
    directory: Path
    port: int = field(default_factory=free_port)
    process: Optional[subprocess.Popen[bytes]] = None
    tls: bool = False  # mqtts with client certificates (CN = user name) instead of passwords
    users: dict[str, str] = field(default_factory=dict)  # user name -> password
    acl: str = ""  # the broker's acl_file text (mosquitto's format)
    options: str = ""  # more lines for mosquitto.conf (e.g. "set_tcp_nodelay true\n")
    persistence: bool = False  # True: sessions, their queued QoS 1 messages and retained ones survive a restart

    @property
    def uri(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def certs(self) -> Path:
        return self.directory / "certs"

    def configure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        passwords = self.directory / "passwd"
        passwords.write_text("")
        for user, password in self.users.items():
            subprocess.run([binary("mosquitto_passwd"), "-b", str(passwords), user, password], check=True,
                           capture_output=True)
        (self.directory / "acl").write_text(self.acl)
        for f in ("passwd", "acl"):
            (self.directory / f).chmod(0o600)
        if self.tls:
            make_certificates(self.certs, tuple(self.users))
            auth = (f"cafile {self.certs / 'ca.pem'}\ncertfile {self.certs / 'broker.pem'}\n"
                    f"keyfile {self.certs / 'broker.key'}\nrequire_certificate true\nuse_identity_as_username true\n")
        else:
            auth = f"password_file {passwords}\n"
        (self.directory / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            + auth +
            f"acl_file {self.directory / 'acl'}\n"
            + (f"persistence true\npersistence_location {self.directory}/\n" if self.persistence
               else "persistence false\n") +
            # as root mosquitto would switch to the `mosquitto` user, who cannot read pytest's private tmp dir
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n" + self.options)

    def start(self, timeout_s: float = 5.0) -> None:
        assert self.process is None
        log = open(self.directory / "mosquitto.log", "ab")
        self.process = subprocess.Popen([binary("mosquitto"), "-c", str(self.directory / "mosquitto.conf")],
                                        stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:  # accepting connections, not just started
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.process.returncode}): {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto not accepting on {self.port} after {timeout_s} s: {self.log()}")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""
