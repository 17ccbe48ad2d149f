"""tdzn: the preLeaveNotify platform ("HTTP 对接文档") — exit charges, price queries, remote releases.

    codec.py     pure: signing, requests, the platform's calls to the lane and their answers
                 (shared/protocols/tdzn.md)
    client.py    HTTP: the client, the exit provider and the outbox publisher
    inbound.py   the handlers of the platform's calls (the steps of providers/pipeline.py)
    config.py    the site's `payments: tdzn:` section
"""

from __future__ import annotations

from functools import partial
from typing import Any, Optional

from lanectl.providers.ports import AppHooks, Results
from lanectl.providers.provider import Inbound, Platform, Provider, SignRequest, SiteContext
from lanectl.providers.tdzn.config import TdznConfig


def build(site: SiteContext, cfg: TdznConfig) -> Platform:
    # imported here, not with the package: loading the configuration (every CLI command) needs only the
    # section model and the codec, not the HTTP client (aiohttp) and the handlers
    from lanectl.providers.tdzn.client import TdznClient, TdznProvider, TdznPublisher
    from lanectl.providers.tdzn.inbound import TdznInbound

    key = site.secret(cfg.key, PROVIDER.name)
    channels = site.channels()
    client = TdznClient(cfg, key, site.session, site.tz)

    def attach(settlement: Optional[Results], app: AppHooks) -> Inbound:
        handler = TdznInbound(key, cfg.pid, cfg.park_code, site.inbox, settlement, site.clock, site.tz,
                              window_s=cfg.timestamp_window_s, lanes_by_channel=site.lanes_by_channel(),
                              quote=partial(app.quote, provider=PROVIDER.name), release=app.release,
                              max_fen=site.max_fen)
        return Inbound(handler, routes=[(cfg.callback_path, handler.pipeline.handle_body)])

    publisher = TdznPublisher(client, channels, site.tz, total_spaces=cfg.total_spaces, links=site.links)
    return Platform({"tdzn": TdznProvider(client, channels)}, publisher, cfg.rate_per_s, attach)


def sign(req: SignRequest) -> tuple[str, str]:
    """tdzn signs a parameter set: the signature and the string that is hashed."""
    from lanectl.providers.tdzn import codec  # here: a lot without it never loads its codec

    params = req.params_object(PROVIDER.name)
    try:
        return codec.sign(params, req.key), codec.signing_string(params, req.key)
    except codec.TdznError as exc:
        raise ValueError(str(exc)) from None


def _build(site: SiteContext, cfg: Any) -> Platform:
    return build(site, cfg)


PROVIDER = Provider("tdzn", TdznConfig, _build, sign=sign)
