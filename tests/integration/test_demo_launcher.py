"""`lanectl demo` launches the demo that lives with the rig (`python -m hil.demo`) as its own process: the
product imports nothing from hil (tests/unit/test_architecture.py), yet the command, its flags and its exit
codes stay what they were."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lanectl.cli import demo as launcher
from lanectl.cli import main


def test_lanectl_demo_runs_hil_demo_with_the_flags_and_returns_its_exit_code(capfd: pytest.CaptureFixture[str]):
    assert main(["demo", "--scenario", "no-such-scenario", "--baud", "0", "--log-level", "INFO",
                 "--booth-via", "console", "--serve", "--console-listen", "127.0.0.1:0", "--booth-cases"]) == 2
    err = capfd.readouterr().err
    assert "lanectl demo: no scenario 'no-such-scenario' (known: " in err and "demo" in err


def test_python_m_hil_demo_is_the_same_demo():
    result = subprocess.run([sys.executable, "-m", "hil.demo", "--scenario", "no-such-scenario"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "lanectl demo: no scenario 'no-such-scenario'" in result.stderr


def test_without_the_rig_installed_the_launcher_says_so(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(launcher.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(launcher, "checkout", lambda: None)  # a wheel install: no checkout beside lanectl
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "package `hil`) is not installed" in err and "source checkout: scripts/demo" in err


def test_from_a_checkout_without_hil_on_the_path_the_launcher_finds_it(monkeypatch: pytest.MonkeyPatch,
                                                                       capfd: pytest.CaptureFixture[str],
                                                                       tmp_path):
    # `.venv/bin/lanectl demo` in a checkout: the editable install has no hil, the checkout has
    monkeypatch.setattr(launcher.importlib.util, "find_spec", lambda name: None)
    monkeypatch.chdir(tmp_path)  # not the checkout's directory: only PYTHONPATH can find hil
    assert main(["demo", "--scenario", "no-such-scenario"]) == 2
    assert "lanectl demo: no scenario 'no-such-scenario'" in capfd.readouterr().err
