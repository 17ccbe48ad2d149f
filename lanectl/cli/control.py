"""What the commands that talk to the running daemon share: their common flags, the control socket path,
the call (a refused or failed call is one line and exit 1), and how money and operators are shown."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Optional

from lanectl.config import ConfigError, load_config
from lanectl.core.money import fen_to_yuan

DEFAULT_SOCKET = "/run/lanectl/control.sock"


def add_client_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, helptext: str,
                      func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    sp = sub.add_parser(name, help=helptext)
    sp.add_argument("--socket", help=f"control socket (default: from --config, else {DEFAULT_SOCKET})")
    sp.add_argument("--config", metavar="DIR", help="read the control socket path from this configuration")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(func=func)
    return sp


def socket_path(args: argparse.Namespace) -> str:
    if args.socket:
        return args.socket
    if args.config:
        try:
            return str(load_config(args.config, credentials=False).site.control.socket)
        except ConfigError as exc:
            raise SystemExit(f"lanectl: configuration is invalid:\n{exc}")
    return os.environ.get("LANECTL_CONTROL__SOCKET", DEFAULT_SOCKET)


def call(args: argparse.Namespace, method: str, **kwargs: Any) -> Any:
    from lanectl.adapters.control_client import ControlClient, ControlClientError
    client = ControlClient(socket_path(args))
    try:
        return client.call_sync(method, **kwargs)
    except ControlClientError as exc:
        print(f"lanectl: {exc}", file=sys.stderr)
        raise SystemExit(1)


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def short_over(r: dict[str, Any]) -> str:
    """A released car's takings against what it owed: "short 4.00", "over 1.00" or "-"."""
    if r.get("short_fen"):
        return f"short {yuan(r['short_fen'])}"
    if r.get("over_fen"):
        return f"over {yuan(r['over_fen'])}"
    return "-"


def who(name: str, uid: Optional[int]) -> str:
    """An operator as records show them: name and, when the kernel told it, the unix uid."""
    return f"{name} (uid {uid})" if uid is not None else name


def yuan(fen: int) -> str:
    return fen_to_yuan(fen)


def signed_yuan(fen: int) -> str:
    return ("-" if fen < 0 else "+") + yuan(abs(fen))
