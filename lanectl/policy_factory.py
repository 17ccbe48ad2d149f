"""Builds the lot's Policy (core/policy.py) from the site configuration."""

from __future__ import annotations

from lanectl.config import Config
from lanectl.core.policy import Policy
from lanectl.core.rules import RulesPolicy


def build_policy(config: Config) -> Policy:
    return RulesPolicy(config.site.tariffs, config.site.vehicles, tz=config.site.tz)
