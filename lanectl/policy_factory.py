"""Builds the lot's Policy (core/policy.py) from the site configuration."""

from __future__ import annotations

from typing import Optional

from lanectl.config import Config
from lanectl.core.rules import RulesPolicy, VehicleRules


def build_policy(config: Config, vehicles: Optional[VehicleRules] = None) -> RulesPolicy:
    """The configured rules, or the configured tariffs with `vehicles` as they are now (platform renewals)."""
    return RulesPolicy(config.site.tariffs, vehicles or config.site.vehicles, tz=config.site.tz)
