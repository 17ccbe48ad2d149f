"""`lanectl remote open|release|topup`: a signed command to another booth over the site bus, and its answer.

    lanectl remote open    --config DIR --booth B --lane L --operator X --reason R [--amount FEN]
    lanectl remote release --config DIR --booth B --lane L --operator X --reason R
    lanectl remote topup   --config DIR --booth B --plate P --amount FEN --operator X --reason R

The command is signed with the site key of the configuration (`site_bus.site_key`), issued by this booth
(`site_bus.booth_id`, or `--issuer` for a console), valid for `--ttl` seconds, published on
lanectl/<park>/<booth>/commands; the booth's signed reply comes back on lanectl/<park>/<issuer>/replies/<id>.
Exit status: 0 done (for open/release: OPEN delivered to the barrier), 1 refused or not opened, 2 usage or
configuration, 75 no answer within `--wait` seconds (the command may still have run until its expiry: check
`lanectl records` at that booth; it is never run twice).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any, Callable, Optional

from lanectl.config import Config, ConfigError, load_config
from lanectl.protocols.site_commands import (MAX_TTL_S, CommandRefused, RemoteCommand, decode_reply, encode)
from lanectl.service.site_bus import BusUnavailable, SiteBus, topic
from lanectl.startup import EX_TEMPFAIL

BusFactory = Callable[[Config, str], SiteBus]  # (configuration, MQTT client id) -> a bus, not yet running
DEFAULT_TTL_S = 30
DEFAULT_WAIT_S = 10.0


class RemoteUsageError(Exception):
    pass


def default_bus(config: Config, client_id: str) -> SiteBus:
    """The MQTT adapter (adapters/mqtt_bus.py, issue 17 item 1) on the configuration's broker, under its own
    client id (the booth daemon's session is never taken over)."""
    try:
        from lanectl.adapters.mqtt_bus import MqttBus  # type: ignore[import-not-found]
    except ImportError:
        raise RemoteUsageError("this build has no MQTT adapter (lanectl/adapters/mqtt_bus.py)") from None
    cfg = config.site.site_bus
    if not cfg.enabled:
        raise RemoteUsageError("site_bus.enabled is false in this configuration: there is no broker to use")
    password_ref = getattr(cfg, "password", None)
    password = config.secret(password_ref, "site_bus.password") if password_ref is not None else None
    # no presence: the retained online flag and last will are the booth daemon's; a CLI that ends must not
    # mark it offline
    return MqttBus(cfg, config.site.park_id, password=password, client_id=client_id, presence=False)


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("remote", help="send a signed command to another booth over the site bus")
    kinds = p.add_subparsers(metavar="KIND")
    for kind, helptext in (("open", "raise a barrier at another booth (audited there)"),
                           ("release", "let a waiting car out at another booth, no cash taken"),
                           ("topup", "credit a stored-value balance at another booth")):
        sp = kinds.add_parser(kind, help=helptext)
        sp.add_argument("--config", required=True, metavar="DIR", help="site configuration with site_bus:")
        sp.add_argument("--booth", required=True, help="the booth that runs the command")
        if kind == "topup":
            sp.add_argument("--plate", required=True)
            sp.add_argument("--amount", type=int, required=True, metavar="FEN")
        else:
            sp.add_argument("--lane", required=True)
            if kind == "open":
                sp.add_argument("--amount", type=int, metavar="FEN", help="cash taken, in fen")
        sp.add_argument("--operator", required=True, help="who acts (recorded as OPERATOR@ISSUER at the booth)")
        sp.add_argument("--reason", required=True)
        sp.add_argument("--issuer", help="this console's id (default: site_bus.booth_id)")
        sp.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, metavar="S",
                        help=f"seconds the command stays valid (1..{MAX_TTL_S}, default {DEFAULT_TTL_S})")
        sp.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="S", help="seconds to wait for the answer")
        sp.add_argument("--json", action="store_true", help="print the booth's reply as JSON")
        sp.set_defaults(func=cmd_remote, kind=kind)


def cmd_remote(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"lanectl remote: configuration is invalid:\n{exc}", file=sys.stderr)
        return 2
    return asyncio.run(remote(args, config, default_bus))


async def remote(args: argparse.Namespace, config: Config, bus_factory: BusFactory,
                 now: Callable[[], float] = time.time) -> int:
    try:
        command, key = build_command(args, config, now())
        bus = bus_factory(config, f"lanectl-remote-{command.id[:8]}")
    except (RemoteUsageError, CommandRefused, ConfigError) as exc:
        print(f"lanectl remote: {exc}", file=sys.stderr)
        return 2
    park = config.site.park_id
    try:
        reply = await asyncio.wait_for(send(bus, park, command, key), args.wait)
    except asyncio.TimeoutError:
        print(f"lanectl remote: no answer from booth {command.booth} within {args.wait:g} s (command {command.id}"
              f" valid until it expires; it never runs twice)", file=sys.stderr)
        return EX_TEMPFAIL
    return show(args, command, reply)


def build_command(args: argparse.Namespace, config: Config, now: float) -> tuple[RemoteCommand, bytes]:
    cfg = config.site.site_bus
    if cfg.site_key is None:
        raise RemoteUsageError("site_bus.site_key is not configured: commands cannot be signed")
    if not 0 < args.ttl <= MAX_TTL_S:
        raise RemoteUsageError(f"--ttl must be 1..{MAX_TTL_S} seconds")
    key = config.secret(cfg.site_key, "site_bus.site_key").encode("utf-8")
    issued = int(now)
    command = RemoteCommand(
        id=str(uuid.uuid4()), kind=args.kind, booth=args.booth, operator=args.operator.strip(),
        reason=args.reason.strip(), issued_at=issued, expires_at=issued + args.ttl,
        issuer=args.issuer or cfg.booth_id, key_id=cfg.site_key_id, lane=getattr(args, "lane", None),
        plate=_plate(args), amount_fen=getattr(args, "amount", None))
    encode(command, key)  # Malformed (a bad lane, a negative amount...) before anything is sent
    return command, key


def _plate(args: argparse.Namespace) -> Optional[str]:
    from lanectl.core.plates import normalize_plate
    plate = getattr(args, "plate", None)
    return normalize_plate(plate) if plate is not None else None


async def send(bus: SiteBus, park: str, command: RemoteCommand, key: bytes) -> dict[str, Any]:
    """Publish `command` once the bus is up and return the booth's signed reply to it."""
    answered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def on_reply(_topic: str, payload: bytes) -> None:
        try:
            reply = decode_reply(payload, {command.key_id: key})
        except CommandRefused as exc:  # not signed with the site key: not the booth's answer
            print(f"lanectl remote: ignored an unverifiable reply ({exc.code})", file=sys.stderr)
            return
        if reply.get("id") == command.id and not answered.done():
            answered.set_result(reply)

    bus.subscribe(topic(park, command.issuer, "replies", command.id), on_reply)
    running = asyncio.create_task(bus.run(), name="site-bus")
    payload = encode(command, key)
    try:
        while True:
            while not bus.connected:
                await asyncio.sleep(0.05)
            try:
                await bus.publish(topic(park, command.booth, "commands"), payload, qos=1)
                break
            except BusUnavailable:  # dropped before the broker took it: the same bytes again (same id)
                await asyncio.sleep(0.2)
        return await answered
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def show(args: argparse.Namespace, command: RemoteCommand, reply: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(reply, ensure_ascii=False, indent=2, sort_keys=True))
    where = f"booth {command.booth} " + (f"lane {command.lane}" if command.lane else f"plate {command.plate}")
    if not reply.get("ok"):
        if not args.json:
            print(f"{where}: refused: {reply.get('code')}: {reply.get('message')}")
        return 1
    result = reply.get("result") or {}
    if command.kind == "topup":
        if not args.json:
            print(f"{where}: +{command.amount_fen} fen, balance {result.get('balance_fen')} fen "
                  f"(by {command.operator}@{command.issuer})")
        return 0
    if not args.json:
        if result.get("opened"):
            print(f"{where}: OPEN delivered to the barrier (record {result.get('record_id')}, "
                  f"by {result.get('operator')})")
        else:
            print(f"{where}: not opened: {result.get('message') or result.get('phase')}")
    return 0 if result.get("opened") else 1
