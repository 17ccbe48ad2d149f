"""ARCHITECTURE rule 1: core/, protocols/ and each payment platform's codec (providers/<name>/codec.py) are pure —
standard library (no I/O, clock or randomness modules), pydantic and each other. And only adapters/ (plus the composition root) touch I/O libraries.
And the product (lanectl/) never imports the rig (hil/)."""

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


CODECS = sorted((ROOT / "providers").glob("*/codec.py"))
PURE = sorted((ROOT / "core").glob("*.py")) + sorted((ROOT / "protocols").glob("*.py")) + CODECS


def is_pure_module(name: str) -> bool:
    """lanectl.core.*, lanectl.protocols.* or lanectl.providers.<name>.codec."""
    parts = name.split(".")
    return name.startswith(("lanectl.core", "lanectl.protocols")) or (
        parts[:2] == ["lanectl", "providers"] and len(parts) == 4 and parts[3] == "codec")


def test_the_platform_codecs_are_under_the_purity_rule():
    assert {p.parent.name for p in CODECS} >= {"bolink", "xft", "tdzn"}
    assert is_pure_module("lanectl.providers.xft.codec") and not is_pure_module("lanectl.providers.xft.client")


@pytest.mark.parametrize("path", PURE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_core_and_protocols_are_pure(path: Path):
    for name in imports(path):
        root = name.split(".")[0]
        if root == "lanectl":
            assert is_pure_module(name), f"{path.name} imports {name}"
            continue
        assert root in ("__future__", "pydantic") or (root in sys.stdlib_module_names
                                                       and root not in IMPURE_STDLIB), f"{path.name} imports {name}"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert called not in ("now", "today", "utcnow", "open", "fromtimestamp"), \
                f"{path.name} calls {called}() (time comes in as an argument; no I/O)"


# the service layer, and the platforms' callback handlers and their shared pipeline (drivers over ports too)
DRIVERS = (sorted((ROOT / "service").glob("*.py")) + sorted((ROOT / "providers").glob("*/inbound.py"))
           + [ROOT / "providers" / "pipeline.py", ROOT / "providers" / "ports.py"])


@pytest.mark.parametrize("path", DRIVERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_service_layer_reaches_io_only_through_ports(path: Path):
    for name in imports(path):
        assert name.split(".")[0] not in IO_LIBRARIES, f"{path.relative_to(ROOT)} imports {name}"


# ---------------------------------------------------------------- the product never imports the rig

def imported_modules(source: str) -> list[str]:
    """Every module a file imports: import / from-import at any depth, importlib.import_module("...") and
    __import__("...") with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in
              ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            found.append(str(node.args[0].value))
    return found


def test_the_import_walk_sees_every_form():
    source = ("import os, hil.rig\nfrom hil import scenario\nimport importlib\n"
              "def f():\n    from hil.emulators.xft import X\n    return importlib.import_module('hil.demo')\n"
              "g = __import__('hil')\n")
    assert sorted(m for m in imported_modules(source) if m.split(".")[0] == "hil") == [
        "hil", "hil", "hil.demo", "hil.emulators.xft", "hil.rig"]


PRODUCT = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_product_never_imports_the_rig(path: Path):
    """hil/ (rig, emulators, demo) is a test bench: a booth PC runs lanectl without it. The demo is started
    from hil (`python -m hil.demo`); `lanectl demo` only launches that as a process."""
    rig = [m for m in imported_modules(path.read_text(encoding="utf-8")) if m.split(".")[0] == "hil"]
    assert rig == [], f"lanectl/{path.relative_to(ROOT)} imports {rig}"
