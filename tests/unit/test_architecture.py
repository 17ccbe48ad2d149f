"""ARCHITECTURE rule 1: core/ and protocols/ are pure — standard library (no I/O, clock or randomness
modules), pydantic and each other. And only adapters/ (plus the composition root) touch I/O libraries."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "lanectl"
IMPURE_STDLIB = {"asyncio", "socket", "sqlite3", "time", "random", "subprocess", "threading", "os", "shutil",
                 "selectors", "ssl", "http", "urllib", "signal", "tempfile", "multiprocessing"}
IO_LIBRARIES = {"serial", "serial_asyncio_fast", "pymodbus", "aiohttp", "paho", "aiomqtt", "sqlite3",
                "sqlite_utils", "apscheduler"}


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
    return names


PURE = sorted((ROOT / "core").glob("*.py")) + sorted((ROOT / "protocols").glob("*.py"))


@pytest.mark.parametrize("path", PURE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_core_and_protocols_are_pure(path: Path):
    for name in imports(path):
        root = name.split(".")[0]
        if root == "lanectl":
            assert name.startswith(("lanectl.core", "lanectl.protocols")), f"{path.name} imports {name}"
            continue
        assert root in ("__future__", "pydantic") or (root in sys.stdlib_module_names
                                                       and root not in IMPURE_STDLIB), f"{path.name} imports {name}"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert called not in ("now", "today", "utcnow", "open", "fromtimestamp"), \
                f"{path.name} calls {called}() (time comes in as an argument; no I/O)"


@pytest.mark.parametrize("path", sorted((ROOT / "service").glob("*.py")), ids=lambda p: p.name)
def test_service_layer_reaches_io_only_through_ports(path: Path):
    for name in imports(path):
        assert name.split(".")[0] not in IO_LIBRARIES, f"service/{path.name} imports {name}"
