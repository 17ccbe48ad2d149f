"""A minimal configuration directory for tests that run the daemon: one entry lane without devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lanectl.core.events import IoSnapshot

# An entry lane with a Modbus barrier and a serial plate reader, for a daemon built with fake devices
# (tests/fakes.FakeLaneDevices): the paths are never opened.
DEVICE_LANE = """id: in1
direction: entry
devices:
  barrier: {kind: modbus_rtu, port: /dev/null-rs485, unit: 1}
  plate_reader: {kind: serial_line, port: /dev/null-camera}
"""
AT_THE_LOOP = IoSnapshot(arming=True, safety=False, up_limit=False, down_limit=True)  # a car on the loop, arm down


def write_minimal_config(d: Path, **site: Any) -> Path:
    """d/etc with site.yaml and lanes/in1.yaml; the database (d/db/lanectl.db) and control socket
    (d/control.sock) under d; both HTTP listeners (the LAN one serves /metrics) on free ports of 127.0.0.1.
    ``site`` keys replace the defaults."""
    etc = d / "etc"
    (etc / "lanes").mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"park_id": "t", "database": str(d / "db" / "lanectl.db"),
                           "http": {"listen": "127.0.0.1:0"},
                           "lan": {"listen": "127.0.0.1:0"}, "control": {"socket": str(d / "control.sock")},
                           "tariffs": {"default": {"free_minutes": 0, "first_minutes": 60, "first_fen": 500,
                                                   "increment_minutes": 60, "increment_fen": 100}}}
    doc.update(site)
    (etc / "site.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (etc / "lanes" / "in1.yaml").write_text("id: in1\ndirection: entry\n")
    return etc
