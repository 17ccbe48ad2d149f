"""A real Mosquitto 2 for the tests: its own configuration (password file + ACL) on a free loopback port.

scripts/test installs Debian's `mosquitto` when it is missing and it runs as root; without it (non-root, not
installed) the `mosquitto` fixture skips its tests, saying so. No mock broker: the adapter is tested against
what the lots run.

    broker = mosquitto_factory()          # a second broker for fail-over, same users
    broker.stop(); broker.start()          # a broker restart (same port; no persistence: sessions are lost)
    mosquitto_factory(tls=True)            # mqtts: a throw-away CA, client certificates (CN = user name)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from hil.mosquitto import Mosquitto as Broker
from hil.mosquitto import binary, free_port, make_certificates  # noqa: F401  (the tests' names for them)

USERS = {"booth1": "b00th-one", "booth2": "b00th-two", "screen": "scr33n", "cam1": "c4m-one", "cam2": "c4m-two"}
# booths write under the lot's topics and read the cameras' recognitions; the central screen only reads; each
# plate camera (docs/site-bus.md "Cameras over MQTT") may write its own ivs_result topic and nothing else
ACL = """user booth1
topic readwrite lanectl/#
topic read device/+/message/up/ivs_result
user booth2
topic readwrite lanectl/#
topic read device/+/message/up/ivs_result
user screen
topic read lanectl/#
user cam1
topic write device/CAM1/message/up/ivs_result
user cam2
topic write device/CAM2/message/up/ivs_result
"""


@dataclass
class Mosquitto(Broker):
    """The test broker: the test users and their ACL."""

    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    acl: str = ACL


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Starts brokers on demand (each its own directory and port); stops every one after the test."""
    if binary("mosquitto") is None or binary("mosquitto_passwd") is None:
        pytest.skip("mosquitto is not installed (scripts/test installs it when run as root: "
                    "apt-get install mosquitto)")
    started: list[Mosquitto] = []

    def make(tls: bool = False) -> Mosquitto:
        if tls and shutil.which("openssl") is None:
            pytest.skip("openssl is not installed: no certificates for the TLS broker")
        broker = Mosquitto(tmp_path / f"mosquitto{len(started)}", tls=tls)
        broker.configure()
        started.append(broker)
        broker.start()
        return broker

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return mosquitto_factory()
