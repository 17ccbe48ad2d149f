"""Issue 16 item 2: a payment platform is one package under lanectl/providers/, registered in one place, and
its callbacks go through the one shared pipeline (verify, park check, inbox dedupe, result, count, answer).

What can be proved of "adding a platform touches one folder":
  * outside lanectl/providers/ no module names a platform (string literal or import) — only the registry does,
    except the three app hooks that serve Bolink's own features (listed below, with why);
  * a fourth platform, defined only in this test and added to a registry, gets its config section, its exit
    provider, its outbox publisher, its callback route and the whole pipeline without any other change.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import pydantic
import pytest

from lanectl.config import load_config
from lanectl.config.base import Route, SecretRef, Strict
from lanectl.config.payments import NEEDS, PROVIDERS, PaymentsConfig, payments_model
from lanectl.core.settlement import ChargeAnswer
from lanectl.providers import REGISTRY
from lanectl.providers.pipeline import Answers, CallbackPipeline, Payment, Refused
from lanectl.providers.ports import AppHooks, InboundStore, Results
from lanectl.providers.provider import Inbound, Platform, Provider, SiteContext
from lanectl.providers.wiring import PlatformWiring
from lanectl.service.ports import Clock
from tests.fakes import FakeClock, FakeSession, SettlementResults
from tests.minimal_site import write_minimal_config

LANECTL = Path(__file__).resolve().parents[2] / "lanectl"
PLATFORM_NAMES = {n for p in REGISTRY.values() for n in (p.name, *p.lane_names)}

# Where a platform is still named outside its package, and why: nowhere. The app's hooks (quote, renew_card,
# admit_plateless) take the asking platform's name from its package.
NAMED_OUTSIDE: dict[tuple[str, str], str] = {}


def platform_mentions(path: Path) -> set[str]:
    """Platform names a module uses as a string literal (not in prose) or imports (lanectl.providers.<name>)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in PLATFORM_NAMES:
            found.add(node.value)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.module == "lanectl.providers":
                modules += [f"lanectl.providers.{a.name}" for a in node.names]
            for module in modules:
                parts = module.split(".")
                if parts[:2] == ["lanectl", "providers"] and len(parts) > 2 and parts[2] in PLATFORM_NAMES:
                    found.add(parts[2])
    return found


def test_the_mention_finder_sees_literals_and_imports_but_not_prose(tmp_path: Path):
    source = ('"""Bolink and xft in a docstring."""\nfrom lanectl.providers.tdzn.codec import sign\n'
              'from lanectl.providers import bolink\nimport lanectl.providers.xft.client\nx = "bolink_etc"\n'
              'y = "bolink is named in a sentence"\n')
    path = tmp_path / "probe.py"
    path.write_text(source, encoding="utf-8")
    assert platform_mentions(path) == {"tdzn", "bolink", "xft", "bolink_etc"}


def test_only_the_registry_names_the_platforms_outside_their_packages():
    named = {}
    for path in sorted(LANECTL.rglob("*.py")):
        relative = path.relative_to(LANECTL)
        if relative.parts[0] == "providers":
            continue
        for name in platform_mentions(path):
            named[(str(relative), name)] = NAMED_OUTSIDE.get((str(relative), name), "NOT ALLOWED")
    assert named == NAMED_OUTSIDE


def test_the_config_is_assembled_from_the_registry():
    assert PROVIDERS == tuple(REGISTRY) == ("bolink", "xft", "tdzn")
    assert NEEDS == {"bolink": "bolink", "bolink_etc": "bolink", "xft": "xft", "tdzn": "tdzn"}
    for name, provider in REGISTRY.items():
        assert PaymentsConfig.model_fields[name].annotation == Optional[provider.config_model]
        assert provider.config_model.__module__ == f"lanectl.providers.{name}.config"


# ---------------------------------------------------------------- a fourth platform, defined only here

KEY = "acme-key"


class AcmeConfig(Strict):
    park: str
    key: SecretRef
    callback_path: Route = "/acme"
    rate_per_s: float = 3.0


def acme_body(order: str, state: str, *, park: str = "P1", key: str = KEY) -> bytes:
    data = json.dumps({"order": order, "state": state, "park": park, "amount_fen": 500}, separators=(",", ":"))
    return json.dumps({"data": data, "sign": hashlib.sha256((data + key).encode()).hexdigest()}).encode()


class AcmeInbound:
    """Only what is Acme's own: its codec calls, its park field, its answer forms and its result mapping."""

    name, content_type = "acme", "application/json"

    def __init__(self, key: str, park: str, store: InboundStore, settlement: Optional[Results], clock: Clock) -> None:
        self.key, self.park = key, park
        self.counts = {"accepted": 0, "duplicate": 0, "bad_signature": 0, "malformed": 0, "refused": 0, "error": 0}
        self.pipeline: CallbackPipeline[dict[str, Any]] = CallbackPipeline(self, store, settlement, clock,
                                                                          logging.getLogger("acme"))

    @staticmethod
    def answer(code: int, msg: str = "") -> bytes:
        return json.dumps({"code": code, "msg": msg}).encode()

    def verify(self, body: bytes, content_type: str = "") -> dict[str, Any]:
        try:
            envelope = json.loads(body)
            data = envelope["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise Refused("malformed", self.answer(400, "bad request"), str(exc)) from None
        if hashlib.sha256((data + self.key).encode()).hexdigest() != envelope.get("sign"):
            raise Refused("bad_signature", self.answer(401, "bad sign"), "signature does not match")
        return dict(json.loads(data), text=body.decode())

    def park_of(self, msg: dict[str, Any]) -> tuple[Optional[str], str]:
        return msg.get("park"), self.park

    def wrong_park(self, msg: dict[str, Any], park: str) -> bytes:
        return self.answer(403, f"park {park} is not this park")

    def server_error(self) -> Optional[bytes]:
        return self.answer(500, "try again")

    async def dispatch(self, msg: dict[str, Any], body: bytes) -> bytes:
        answer = ChargeAnswer("paid" if msg["state"] == "paid" else "pending", msg["order"], msg["amount_fen"])
        return await self.pipeline.pay(
            Payment(f"{msg['order']}:{msg['state']}", msg["text"], msg["order"], answer),
            Answers(ack=lambda outcome: self.answer(200, outcome or ""), duplicate=self.answer(200, "again"),
                    count=lambda outcome: "accepted"))


class AcmeCharge:
    name = "acme"


class AcmePublisher:
    async def publish(self, item: Any) -> Any:
        raise AssertionError("nothing is uploaded in this test")


def build_acme(site: SiteContext, cfg: AcmeConfig) -> Platform:
    key = site.secret(cfg.key, "acme")

    def attach(settlement: Optional[Results], app: AppHooks) -> Inbound:
        handler = AcmeInbound(key, cfg.park, site.inbox, settlement, site.clock)
        return Inbound(handler, routes=[(cfg.callback_path, handler.pipeline.handle_body)])

    return Platform({"acme": AcmeCharge()}, AcmePublisher(), cfg.rate_per_s, attach)  # type: ignore[dict-item]


ACME = Provider("acme", AcmeConfig, build_acme)  # type: ignore[arg-type]
WITH_ACME = {**REGISTRY, "acme": ACME}


class MemoryInbox:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}

    async def inbox_put(self, provider: str, key: str, payload: str, now: datetime) -> bool:
        if (provider, key) in self.rows:
            return False
        self.rows[(provider, key)] = payload
        return True


def test_the_fourth_platforms_section_is_part_of_payments():
    model = payments_model(WITH_ACME)
    payments = model.model_validate({"acme": {"park": "P1", "key": {"env": "ACME_KEY"}}})
    assert payments.configured() == ("acme",) and payments.section("acme") == AcmeConfig(
        park="P1", key=SecretRef(env="ACME_KEY"))
    with pytest.raises(pydantic.ValidationError, match="acme.parc"):
        model.model_validate({"acme": {"parc": "P1", "key": {"env": "ACME_KEY"}}})  # a typo names the key
    with pytest.raises(pydantic.ValidationError, match="acme"):
        PaymentsConfig.model_validate({"acme": {"park": "P1", "key": {"env": "ACME_KEY"}}})  # not registered


@pytest.fixture
def acme_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ACME_KEY", KEY)
    config = load_config(write_minimal_config(tmp_path))
    payments = payments_model(WITH_ACME).model_validate({"acme": {"park": "P1", "key": {"env": "ACME_KEY"}}})
    return dataclasses.replace(config, site=config.site.model_copy(update={"payments": payments}))


async def test_a_fourth_platform_gets_its_charge_publisher_route_and_the_pipeline(acme_site):
    inbox, results = MemoryInbox(), SettlementResults()
    wiring = PlatformWiring.build(acme_site, inbox, FakeSession(), FakeClock(), registry=WITH_ACME)  # type: ignore[arg-type]
    assert set(wiring.providers) == {"acme"} and set(wiring.publishers) == {"acme"} and wiring.rates == {"acme": 3.0}
    wiring.attach(results, app=None)  # type: ignore[arg-type]
    [(path, route)] = wiring.routes
    assert path == "/acme"

    # verified, stored, handed to the settlement once, counted, acknowledged in Acme's own form
    assert await route(acme_body("R1", "paid"), "application/json") == (
        json.dumps({"code": 200, "msg": "recorded"}).encode(), "application/json")
    assert [(p, ref, a.status, a.amount_fen) for p, ref, a, _ in results.calls] == [("acme", "R1", "paid", 500)]
    assert list(inbox.rows) == [("acme", "R1:paid")]

    # a repeat is answered again and changes nothing
    assert json.loads((await route(acme_body("R1", "paid"), ""))[0]) == {"code": 200, "msg": "again"}
    assert len(results.calls) == 1

    # refused before the inbox: a wrong signature, another park, garbage
    assert json.loads((await route(acme_body("R2", "paid", key="forged"), ""))[0])["code"] == 401
    assert json.loads((await route(acme_body("R3", "paid", park="P9"), ""))[0])["code"] == 403
    assert json.loads((await route(b"\xff not json", ""))[0])["code"] == 400
    assert list(inbox.rows) == [("acme", "R1:paid")] and len(results.calls) == 1
    assert wiring.status() == {"acme": {"accepted": 1, "duplicate": 1, "bad_signature": 1, "malformed": 1,
                                        "refused": 1, "error": 0}}


async def test_a_store_that_cannot_write_gets_the_platforms_try_again_and_nothing_applied(acme_site):
    from lanectl.service.ports import StorageUnavailable

    class FullDisk(MemoryInbox):
        async def inbox_put(self, *a: Any) -> bool:
            raise StorageUnavailable("disk full")

    results = SettlementResults()
    wiring = PlatformWiring.build(acme_site, FullDisk(), FakeSession(), FakeClock(), registry=WITH_ACME)  # type: ignore[arg-type]
    wiring.attach(results, app=None)  # type: ignore[arg-type]
    [(_, route)] = wiring.routes
    assert json.loads((await route(acme_body("R1", "paid"), ""))[0]) == {"code": 500, "msg": "try again"}
    assert results.calls == [] and wiring.status()["acme"]["error"] == 1


def test_the_daemons_registry_builds_only_the_configured_platforms(acme_site):
    wiring = PlatformWiring.build(acme_site, MemoryInbox(), FakeSession(), FakeClock())  # type: ignore[arg-type]
    assert wiring.providers == {} and wiring.routes == []  # acme is not in lanectl.providers.REGISTRY


async def test_a_result_is_stored_before_the_settlement_is_asked(acme_site):
    inbox = MemoryInbox()

    class Settlement:
        async def on_result(self, provider: str, order_ref: str, answer: Any, *, lane_id: Optional[str] = None) -> str:
            assert (provider, f"{order_ref}:paid") in inbox.rows  # written ahead of the hand-off
            raise RuntimeError("settlement down")

    wiring = PlatformWiring.build(acme_site, inbox, FakeSession(), FakeClock(), registry=WITH_ACME)  # type: ignore[arg-type]
    wiring.attach(Settlement(), app=None)  # type: ignore[arg-type]
    [(_, route)] = wiring.routes
    # Acme has no "stored, not applied" answer of its own: its "try again" (the pipeline logs the failure)
    assert json.loads((await route(acme_body("R1", "paid"), ""))[0]) == {"code": 500, "msg": "try again"}
    assert list(inbox.rows) == [("acme", "R1:paid")]
    assert wiring.status()["acme"]["accepted"] == 0 and wiring.status()["acme"]["error"] == 1
