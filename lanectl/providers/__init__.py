"""The payment platforms: one package each, registered here, sharing one callback pipeline.

    <name>/       one platform: codec.py (pure) · client.py (HTTP) · inbound.py (callback handlers) ·
                  config.py (its `payments: <name>:` section) · __init__.py (its registration, PROVIDER)
    pipeline.py   the one callback pipeline: verify, park check, inbox dedupe, result, count, answer
    ports.py      what the handlers need (inbox, settlement results, app hooks), declared once
    provider.py   what a package registers (Provider) and what it builds (Platform, Inbound)
    wiring.py     the configured platforms assembled for the composition root (lanectl/bootstrap.py, app.py)

REGISTRY is the one list of platforms: the config (lanectl/config/payments.py), the wiring and the outbox
destinations all iterate it. A new platform is a new package here and one line below.
"""

from __future__ import annotations

from lanectl.providers import bolink, tdzn, xft
from lanectl.providers.provider import Provider

REGISTRY: dict[str, Provider] = {p.name: p for p in (bolink.PROVIDER, xft.PROVIDER, tdzn.PROVIDER)}
