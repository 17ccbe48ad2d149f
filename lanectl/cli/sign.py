"""`lanectl sign bolink|xft|tdzn`: compute or check a platform signature — integrators debug `签名错误` with it.

    lanectl sign bolink --key KEY --data '{"union_id":"200208",...}'        signs the exact text given
    lanectl sign xft    --key KEY --params '{"app_id":"...","extra":"{...}"}' [--show]
    lanectl sign tdzn   --key KEY --params '{"pid":"123456","bizContent":"{...}",...}' [--show]
    ... --verify SIGN   exit 0 when SIGN matches, 1 (with the expected value) when it does not

The key may come from the environment instead of the command line (`--key-env VAR`), so it stays out of
shell history.
"""

from __future__ import annotations

import argparse
import os
import sys

from lanectl.providers import REGISTRY
from lanectl.providers.provider import SignRequest

PLATFORMS = tuple(name for name, provider in REGISTRY.items() if provider.sign is not None)


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("sign", help="compute or verify a Bolink / XFT / tdzn signature")
    p.add_argument("platform", choices=PLATFORMS)
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--key", help="the platform key")
    key.add_argument("--key-env", metavar="VAR", help="read the key from this environment variable")
    p.add_argument("--data", help="bolink: the exact JSON text of `data` as sent (key order and spaces matter)")
    p.add_argument("--params", help="xft / tdzn: the request parameters as a JSON object")
    p.add_argument("--charset", default="utf-8", help="bolink: charset the sender signed in (utf-8, gbk)")
    p.add_argument("--verify", metavar="SIGN", help="check this signature instead of printing one")
    p.add_argument("--show", action="store_true", help="xft / tdzn: also print the string that is hashed")
    p.set_defaults(func=run)


class SignUsageError(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    try:
        key = _key(args)
        expected, shown = _compute(args, key)
    except SignUsageError as exc:
        print(f"lanectl sign: {exc}", file=sys.stderr)
        return 2
    if args.show and shown:
        print(f"signing string: {shown}")
    if args.verify is None:
        print(expected)
        return 0
    if args.verify.strip().upper() == expected:
        print(f"OK: signature matches ({expected})")
        return 0
    print(f"MISMATCH: expected {expected}, got {args.verify.strip()}")
    return 1


def _key(args: argparse.Namespace) -> str:
    if args.key_env:
        value = os.environ.get(args.key_env, "")
        if not value:
            raise SignUsageError(f"environment variable {args.key_env} is not set")
        return value
    if not args.key:
        raise SignUsageError("--key is empty")
    return str(args.key)


def _compute(args: argparse.Namespace, key: str) -> tuple[str, str]:
    """(signature, the hashed string or ""): each platform's package signs (lanectl/providers/<name>/)."""
    sign = REGISTRY[args.platform].sign
    assert sign is not None  # argparse offers only the platforms that sign
    try:
        return sign(SignRequest(key, data=args.data, params=args.params, charset=args.charset))
    except ValueError as exc:
        raise SignUsageError(str(exc)) from None
