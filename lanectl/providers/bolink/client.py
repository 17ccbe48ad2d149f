"""Bolink (泊链) over HTTP: the client, the exit-payment provider and the record publisher.

* BolinkClient signs each request once (codec.py) and spaces calls so the whole lot connection
  stays under the platform's 10 order uploads per second.
* BolinkProvider charges sign-free members at an exit lane: 3.2 `updateorder` with `pay_type=wallet`,
  then 4.3 `queryOrderState` while the result is pending (re-issuing 3.2 when the platform reports a failed
  try, as its SDK doc asks). A sync `state=1` without a trade_no is "accepted", not paid: only a result
  carrying the payment counts; the 5.5 `outpark` push usually settles it (inbound.py).
* BolinkPublisher uploads records through the outbox: 3.1 for entries, 3.2 (`cash`, or what the booth
  took) for exits the platform did not charge itself. Repeats answered `数据已处理过`/`订单已存在` are done.
* `bolink.uplink: sdk` — a lot registered only for the SDK channel: entries, exits and status queries go to
  /bpd/upload.do as `inpark` / `outpark` / `query_order_state` (data as for 3.1 / 3.2 / 4.3 without union_id,
  signed the same way) under the token of the one HTTP-mode login (SdkLogin), shared with the downlink. Same
  outbox, same rate limit, same idempotency; a `token无效` answer logs in again and retries once. ETC (3.7) has no
  SDK form in the documents and stays on the API path.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Mapping, Optional, Protocol

import aiohttp

from lanectl.adapters.image_links import LinkFn, no_links
from lanectl.adapters.platform_http import PlatformTransport
from lanectl.providers.bolink.config import BolinkConfig
from lanectl.core import effects as fx
from lanectl.providers.bolink import codec as bl
from lanectl.service.outbox import Outcome, OutboxItem
from lanectl.service.settlement import Attempt, ChargeAnswer, ProviderUnavailable

log = logging.getLogger("lanectl.bolink")

# our canonical plate colours -> Bolink license_color (0 blue 1 yellow 2 white 3 black 4 new energy 5 yellow-green)
LICENSE_COLOR = {"blue": 0, "yellow": 1, "white": 2, "black": 3, "green": 4, "yellow-green": 5}
REISSUE_EVERY_POLLS = 5  # a pending wallet charge gets its 3.2 repeated every ~10 s (2 s polls)


class Marks(Protocol):
    async def mark(self, provider: str, plate: str, name: str) -> Optional[str]: ...


# the SDK channel's names of the API calls (inpark / outpark observed from real clients; query_order_state inferred)
SDK_SERVICES = {bl.PATHS["entry"]: "inpark", bl.PATHS["exit"]: "outpark", bl.PATHS["order_state"]: "query_order_state"}


def token_refused(errmsg: str) -> bool:
    return bl.ERR_TOKEN in errmsg or bl.ERR_NOT_LOGGED_IN in errmsg


class SdkLogin:
    """The one HTTP-mode login of a lot connection, shared by the SDK uplink and the downlink so the two never
    log each other out. `login(stale)` logs in unless someone already replaced the stale token."""

    def __init__(self, cfg: BolinkConfig, key: str, session: aiohttp.ClientSession) -> None:
        self.cfg, self._key, self._session = cfg, key, session
        self.token: Optional[str] = None
        self.logins = 0
        self._lock = asyncio.Lock()

    async def login(self, stale: Optional[str] = None) -> str:
        async with self._lock:
            if self.token is not None and self.token != stale:
                return self.token  # another task logged in meanwhile
            cfg = self.cfg
            body = bl.encode_upload("login", bl.login_data(cfg.union_id, cfg.park_id, cfg.local_id or cfg.park_id),
                                    self._key)
            url = cfg.base_url + bl.HTTP_MODE_PATHS["upload"]
            try:
                async with self._session.post(url, data=body, timeout=aiohttp.ClientTimeout(total=cfg.timeout_s),
                                              headers={"Content-Type": "application/json;charset=utf-8"}) as resp:
                    raw = await resp.read()
                    if resp.status != 200:
                        raise ProviderUnavailable(f"bolink login: HTTP {resp.status}")
                self.token = bl.parse_login_answer(raw)
            except asyncio.TimeoutError:
                raise ProviderUnavailable(f"bolink login: no answer within {cfg.timeout_s:g} s") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise ProviderUnavailable(f"bolink login: {type(exc).__name__}: {exc}") from None
            except bl.Refused as exc:
                raise ProviderUnavailable(f"bolink login refused: {exc.errmsg or '(no errmsg)'}") from None
            except bl.BolinkError as exc:
                raise ProviderUnavailable(f"bolink login: {exc}") from None
            self.logins += 1
            log.info("bolink: logged in (HTTP mode) as park %s", cfg.park_id)
            return self.token

    def invalidate(self, token: Optional[str]) -> None:
        """The platform refused `token`; forgotten unless it was already replaced."""
        if token is not None and self.token == token:
            self.token = None


class BolinkClient:
    def __init__(self, cfg: BolinkConfig, key: str, session: aiohttp.ClientSession,
                 sdk_login: Optional[SdkLogin] = None) -> None:
        self.cfg, self._key = cfg, key
        self._http = PlatformTransport("bolink", session, rate_per_s=cfg.rate_per_s, timeout_s=cfg.timeout_s)
        self.sdk_login = sdk_login or (SdkLogin(cfg, key, session) if cfg.uplink == "sdk" else None)

    async def post(self, path: str, data: Mapping[str, Any]) -> bytes:
        """One signed call; the raw answer body. ProviderUnavailable when there is no usable answer."""
        if self.sdk_login is not None and path in SDK_SERVICES:
            return await self._upload(SDK_SERVICES[path], data)
        return await self._http.post(self.cfg.base_url + path, bl.encode_request(self.cfg.union_id, data, self._key),
                                     path)

    async def _upload(self, service_name: str, data: Mapping[str, Any]) -> bytes:
        """The SDK channel: upload.do {service_name, sign, data, token}; the data text is serialized once and
        the same bytes are sent again after a re-login (the token is outside the signed data)."""
        assert self.sdk_login is not None
        text = bl.dumps_data({k: v for k, v in data.items() if k != "union_id"})
        url, what = self.cfg.base_url + bl.HTTP_MODE_PATHS["upload"], f"upload.do:{service_name}"
        raw = b""
        for attempt in (1, 2):
            token = self.sdk_login.token or await self.sdk_login.login()
            raw = await self._http.post(url, bl.encode_upload(service_name, text, self._key, token), what)
            try:
                refused = token_refused(bl.parse_answer(raw).errmsg)
            except bl.BolinkError:
                return raw  # the caller reads (and judges) the answer
            if not refused:
                return raw
            self.sdk_login.invalidate(token)
            if attempt == 1:
                log.info("bolink: %s answered token无效, logging in again", what)
        return raw


def _unix(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


class BolinkProvider:
    name = "bolink"

    def __init__(self, client: BolinkClient, marks: Marks, channels: Mapping[str, str], *,
                 links: LinkFn = no_links) -> None:
        self.client, self.marks, self.channels, self.links = client, marks, channels, links
        self._polls: dict[int, int] = {}
        self._by_code: set[int] = set()  # attempts paid by a scanned code: never re-issued as wallet charges

    def order_ref(self, order: fx.StartSettlement) -> str:
        # Bolink's order_id is the stay: the id its entry was uploaded with (3.1), else the exit record's.
        return order.entry_record_id or order.record_id

    async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        if not order.plate:
            return ChargeAnswer("skip", detail="plate-less car: no sign-free wallet")
        if await self.marks.mark("bolink", order.plate, "signfree") != "1":
            return ChargeAnswer("skip", detail="not a Bolink sign-free member")
        return await self._exit(order, attempt)

    async def charge_code(self, order: fx.StartSettlement, attempt: Attempt, code: str) -> ChargeAnswer:
        """The booth scanner's payment code: 3.2 with pay_type sweepcode; the money result comes by 5.5 / 4.3."""
        self._by_code.add(attempt.id)
        return await self._exit(order, attempt, pay_type="sweepcode", auth_code=code)

    async def query(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        cfg = self.client.cfg
        data = bl.order_state_data(park_id=cfg.park_id, union_id=cfg.union_id, order_id=attempt.order_ref)
        try:
            states = bl.parse_order_state(await self.client.post(bl.PATHS["order_state"], data))
        except bl.Refused as exc:
            states, detail = [], str(exc)
        except bl.BolinkError as exc:
            raise ProviderUnavailable(f"bolink order state: {exc}") from None
        else:
            detail = "paying"
        for s in states:
            if s.paid and s.trade_no:
                return ChargeAnswer("paid", s.trade_no, s.total_fen, s.pay_type or "wallet", "4.3 order state")
        polls = self._polls[attempt.id] = self._polls.get(attempt.id, 0) + 1
        if attempt.id in self._by_code:
            return ChargeAnswer("pending", detail=detail)  # a code is single-use: only the platform settles it
        if any(s.state == 0 for s in states) or polls % REISSUE_EVERY_POLLS == 0:
            # "其它状态时，收费系统需要再次调用车辆出场接口，明确结算方式pay_type"
            return await self._exit(order, attempt)
        return ChargeAnswer("pending", detail=detail)

    async def _exit(self, order: fx.StartSettlement, attempt: Attempt, *, pay_type: str = "wallet",
                    auth_code: Optional[str] = None) -> ChargeAnswer:
        cfg = self.client.cfg
        data = bl.exit_data(
            park_id=cfg.park_id, union_id=cfg.union_id, car_number=order.plate or "无牌车",
            in_time=_unix(order.entered_at or order.left_at), out_time=_unix(order.left_at),
            order_id=attempt.order_ref, empty_plot=cfg.empty_plot, total_fen=attempt.amount_fen, pay_type=pay_type,
            auth_code=auth_code, out_channel_id=self.channels.get(order.lane_id, order.lane_id),
            outpark_img=self.links(order.image), license_color=LICENSE_COLOR.get(order.color))
        try:
            answer = bl.parse_answer(await self.client.post(bl.PATHS["exit"], data))
        except bl.BolinkError as exc:
            raise ProviderUnavailable(f"bolink exit answer: {exc}") from None
        if answer.paid:
            return ChargeAnswer("paid", answer.trade_no, answer.total_fen, answer.pay_type or pay_type, "3.2 answer")
        if answer.state == 0 and not (answer.duplicate or answer.rate_limited or answer.bad_signature):
            return ChargeAnswer("failed", detail=answer.errmsg or "3.2 refused")
        return ChargeAnswer("pending", detail=answer.errmsg or ("paying" if answer.pending else "accepted"))


class BolinkEtcProvider:
    """ETC at the exit (3.7 etcPayApi): the platform charges the car's ETC account by plate and lane box.
    State 1 with a trade_no is paid; 2 (jyyh) is paying — the 5.5 push or 4.3 settles it; 0 (no ETC account,
    refused) hands the car to the next provider."""

    name = "bolink_etc"

    def __init__(self, wallet: BolinkProvider, lane_boxes: Mapping[str, str]) -> None:
        self.wallet, self.lane_boxes = wallet, lane_boxes  # lane id -> ETC box id (lane_no)

    def order_ref(self, order: fx.StartSettlement) -> str:
        return self.wallet.order_ref(order)

    async def charge(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        if not order.plate:
            return ChargeAnswer("skip", detail="plate-less car: no ETC account")
        client, channels, links = self.wallet.client, self.wallet.channels, self.wallet.links
        cfg = client.cfg
        entered = _unix(order.entered_at or order.left_at)
        left = _unix(order.left_at)
        inpark_img, outpark_img = links(order.entry_image), links(order.image)
        if cfg.etc_pay_type == "my" and not (inpark_img and outpark_img):
            # the platform requires both pictures for this ETC service; the camera missed one
            return ChargeAnswer("skip", detail="ETC (my) needs the entry and exit pictures: " +
                                ("no entry picture" if not inpark_img else "no exit picture"))
        data = bl.etc_data(
            park_id=cfg.park_id, car_number=order.plate, in_time=entered, out_time=left,
            pay_type=cfg.etc_pay_type, total_fen=attempt.amount_fen, order_id=attempt.order_ref,
            out_channel_id=channels.get(order.lane_id, order.lane_id),
            in_channel_id=channels.get(order.entry_lane_id, order.entry_lane_id) or "unknown",
            parking_time_min=max(0, (left - entered) // 60), lane_no=self.lane_boxes.get(order.lane_id, ""),
            empty_plot=cfg.empty_plot, total_original_fen=order.total_fen, inpark_img=inpark_img,
            outpark_img=outpark_img, license_color=LICENSE_COLOR.get(order.color))
        try:
            answer = bl.parse_answer(await client.post(bl.PATHS["etc"], data))
        except bl.BolinkError as exc:
            raise ProviderUnavailable(f"bolink etc answer: {exc}") from None
        if answer.paid:
            return ChargeAnswer("paid", answer.trade_no, answer.total_fen, "etc", "3.7 answer")
        if answer.state == 0 and not (answer.rate_limited or answer.bad_signature):
            return ChargeAnswer("failed", detail=answer.errmsg or "ETC refused")
        return ChargeAnswer("pending", detail=answer.errmsg or "ETC paying")

    async def query(self, order: fx.StartSettlement, attempt: Attempt) -> ChargeAnswer:
        cfg = self.wallet.client.cfg
        data = bl.order_state_data(park_id=cfg.park_id, union_id=cfg.union_id, order_id=attempt.order_ref)
        try:
            states = bl.parse_order_state(await self.wallet.client.post(bl.PATHS["order_state"], data))
        except bl.BolinkError:
            return ChargeAnswer("pending", detail="ETC paying")  # no state yet: the 5.5 push settles it
        for s in states:
            if s.paid and s.trade_no:
                return ChargeAnswer("paid", s.trade_no, s.total_fen, "etc", "4.3 order state")
        return ChargeAnswer("pending", detail="ETC paying")


class BolinkPublisher:
    """Outbox destination "bolink": entries as 3.1, exits as 3.2."""

    def __init__(self, client: BolinkClient, channels: Mapping[str, str], *, links: LinkFn = no_links) -> None:
        self.client, self.channels, self.links = client, channels, links

    async def publish(self, item: OutboxItem) -> Outcome:
        r = item.payload
        try:
            built = self._build(item.kind, r)
        except bl.BolinkError as exc:
            return Outcome.reject(f"cannot upload to bolink: {exc}")
        if built is None:
            return Outcome.done()
        path, data = built
        try:
            answer = bl.parse_answer(await self.client.post(path, data))
        except ProviderUnavailable as exc:
            return Outcome.retry(str(exc))
        except bl.BolinkError as exc:
            return Outcome.retry(f"bolink answer unreadable: {exc}")
        if answer.state == 1 or answer.duplicate:
            return Outcome.done()
        if answer.rate_limited or answer.bad_signature or bl.ERR_NOT_LOGGED_IN in answer.errmsg or \
                bl.ERR_TOKEN in answer.errmsg:
            return Outcome.retry(f"bolink: {answer.errmsg}")  # load or our credentials: keep the item
        return Outcome.reject(f"bolink refused: {answer.errmsg or answer.state}")

    def _build(self, kind: str, r: Mapping[str, Any]) -> Optional[tuple[str, dict[str, Any]]]:
        cfg = self.client.cfg
        if not r.get("plate"):
            return None  # plate-less cars reach Bolink through its own 5.7 flow, with the platform's id
        channel = self.channels.get(r["lane_id"], r["lane_id"])
        color = LICENSE_COLOR.get(r.get("color", ""))
        if kind == "entry":
            if r.get("status") == "refused":
                return None
            return bl.PATHS["entry"], bl.entry_data(
                park_id=cfg.park_id, union_id=cfg.union_id, car_number=r["plate"], in_time=_unix(r["at"]),
                order_id=r["record_id"], empty_plot=cfg.empty_plot, in_channel_id=channel,
                car_type=r.get("vehicle_class") or None, inpark_img=self.links(r.get("image")), license_color=color)
        if kind != "exit":
            return None
        payments = r.get("payments") or []
        if any(p["method"].startswith("bolink:") for p in payments):
            return None  # the platform charged it: its 3.2 was the upload
        taken = sum(p["amount_fen"] for p in payments if not p.get("flag"))
        return bl.PATHS["exit"], bl.exit_data(
            park_id=cfg.park_id, union_id=cfg.union_id, car_number=r["plate"],
            in_time=_unix(r.get("entered_at") or r["at"]), out_time=_unix(r["at"]),
            order_id=r.get("entry_record_id") or r["record_id"], empty_plot=cfg.empty_plot, total_fen=taken,
            pay_type="cash", out_channel_id=channel, outpark_img=self.links(r.get("image")), license_color=color)
