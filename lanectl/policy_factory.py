"""Builds the lot's Policy (core/policy.py) from the site configuration."""

from __future__ import annotations

from lanectl.config import Config
from lanectl.core.plates import normalize_plate
from lanectl.core.policy import FlatPolicy, Policy


def build_policy(config: Config) -> Policy:
    site = config.site
    return FlatPolicy(
        flat_fen=site.fee.flat_fen,
        free_minutes=site.fee.free_minutes,
        no_entry_fen=site.fee.no_entry_fen,
        whitelist=frozenset(normalize_plate(p) for p in site.lists.whitelist),
        blacklist=frozenset(normalize_plate(p) for p in site.lists.blacklist),
        allow_temporary=site.lists.allow_temporary,
    )
