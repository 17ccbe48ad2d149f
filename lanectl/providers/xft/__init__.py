"""XFT (信付通) aggregation parking API v2: sign-free (无感) charges at the exit and their notify.

    codec.py     pure: signing, requests, answers and the notify (shared/protocols/xft.md)
    client.py    HTTP: the client, the exit provider and the outbox publisher
    inbound.py   the notify's handler (the steps of providers/pipeline.py)
    config.py    the site's `payments: xft:` section
"""

from __future__ import annotations

from typing import Any, Optional

from lanectl.providers.ports import AppHooks, Results
from lanectl.providers.provider import Inbound, Platform, Provider, SignRequest, SiteContext
from lanectl.providers.xft.config import XftConfig


def build(site: SiteContext, cfg: XftConfig) -> Platform:
    # imported here, not with the package: loading the configuration (every CLI command) needs only the
    # section model and the codec, not the HTTP client (aiohttp) and the handlers
    from lanectl.providers.xft.client import XftClient, XftProvider, XftPublisher
    from lanectl.providers.xft.inbound import XftInbound

    key = site.secret(cfg.key, PROVIDER.name)
    client = XftClient(cfg, key, site.session)

    def attach(settlement: Optional[Results], app: AppHooks) -> Inbound:
        handler = XftInbound(key, site.inbox, settlement, site.clock, require_signature=cfg.require_notify_signature,
                             store_code=cfg.store_code, max_fen=site.max_fen)
        return Inbound(handler, routes=[(cfg.notify_path, handler.handle_body)])

    # every lane charges on the configured channel
    return Platform({"xft": XftProvider(client, {}, site.tz)}, XftPublisher(client, {}, site.tz), cfg.rate_per_s,
                    attach)


def sign(req: SignRequest) -> tuple[str, str]:
    """XFT signs a parameter set: the signature and the string that is hashed."""
    from lanectl.providers.xft import codec  # here: a lot without it never loads its codec

    params = req.params_object(PROVIDER.name)
    try:
        return codec.sign(params, req.key), codec.signing_string(params, req.key)
    except codec.XftError as exc:
        raise ValueError(str(exc)) from None


def _build(site: SiteContext, cfg: Any) -> Platform:
    return build(site, cfg)


PROVIDER = Provider("xft", XftConfig, _build, sign=sign)
