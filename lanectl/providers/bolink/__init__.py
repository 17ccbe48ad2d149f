"""Bolink (泊链): the lot's online payment platform — wallet / sign-free charges, ETC, entries and exits.

    codec.py     pure: signing, requests, callbacks and their answers (shared/protocols/bolink.md)
    client.py    HTTP: the client, the exit providers (wallet, ETC) and the outbox publisher
    downlink.py  HTTP: the SDK HTTP mode (login + long-poll of download.do) for lanes behind NAT
    inbound.py   the callbacks' handlers (the steps of providers/pipeline.py)
    config.py    the site's `payments: bolink:` section
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, Optional

from lanectl.providers.bolink.config import BolinkConfig, check_lane
from lanectl.providers.ports import AppHooks, Results
from lanectl.providers.provider import Inbound, Platform, Provider, SignRequest, SiteContext


def build(site: SiteContext, cfg: BolinkConfig) -> Platform:
    # imported here, not with the package: loading the configuration (every CLI command) needs only the
    # section model and the codec, not the HTTP client (aiohttp) and the handlers
    from lanectl.providers.bolink.client import BolinkClient, BolinkEtcProvider, BolinkProvider, BolinkPublisher
    from lanectl.providers.bolink.downlink import BolinkDownlink
    from lanectl.providers.bolink.inbound import BolinkInbound

    key = site.secret(cfg.key, PROVIDER.name)
    channels = site.channels()
    client = BolinkClient(cfg, key, site.session)
    wallet = BolinkProvider(client, site.store, channels, links=site.links)
    etc = BolinkEtcProvider(wallet, {lane.id: lane.etc_lane_no for lane in site.config.lanes})

    def attach(settlement: Optional[Results], app: AppHooks) -> Inbound:
        handler = BolinkInbound(key, cfg.park_id, site.store, settlement, site.clock,
                                lanes_by_channel=site.lanes_by_channel(),
                                quote=partial(app.quote, provider=PROVIDER.name),
                                renew=partial(app.renew_card, provider=PROVIDER.name),
                                admit=partial(app.admit_plateless, provider=PROVIDER.name),
                                free_out_minutes=cfg.free_out_minutes,
                                max_fen=site.max_fen)
        if cfg.downlink == "http_mode":
            downlink = BolinkDownlink(cfg, key, site.session, handler.handle_downlink, login=client.sdk_login)
            return Inbound(handler, loops=[("bolink-downlink", downlink.run)],
                           status={"bolink_downlink": downlink.status})
        return Inbound(handler, routes=[(cfg.callback_path, handler.pipeline.handle_body)])

    return Platform({"bolink": wallet, "bolink_etc": etc}, BolinkPublisher(client, channels, links=site.links),
                    cfg.rate_per_s, attach)


def sign(req: SignRequest) -> tuple[str, str]:
    """Bolink signs the exact text of `data` (key order and spaces matter) in the sender's charset."""
    if req.data is None or req.params is not None:
        raise ValueError("bolink signs the `data` text: give --data '<exact JSON text>'")
    try:
        parsed = json.loads(req.data)
    except ValueError as exc:
        raise ValueError(f"--data is not JSON ({exc}); give the data object exactly as sent") from None
    if not isinstance(parsed, dict):
        raise ValueError("--data must be the JSON object of `data`")
    from lanectl.providers.bolink import codec  # here: a lot without Bolink never loads its codec

    try:
        return codec.sign(req.data, req.key, encoding=req.charset), ""
    except (LookupError, UnicodeEncodeError) as exc:
        raise ValueError(f"--charset {req.charset}: {exc}") from None


def _build(site: SiteContext, cfg: Any) -> Platform:
    return build(site, cfg)


PROVIDER = Provider("bolink", BolinkConfig, _build, charges=("bolink", "bolink_etc"), check_lane=check_lane,
                    sign=sign)
