"""Checks every HIL test makes of the rig after it ran."""

from __future__ import annotations


def no_harm(bench) -> None:
    """The IO emulator counts any CLOSE sent onto an occupied arm (close_refused) and any arm lowered onto a
    car (arm_hits): both must stay 0."""
    for unit, model in bench.rig.io.barriers.items():
        assert model.close_refused == 0, f"unit {unit}: CLOSE sent while the arm was occupied"
        assert model.arm_hits == 0, f"unit {unit}: arm lowered onto a car"
