"""`lanectl console-user add|passwd|remove|list --config DIR`: the booth console's operator accounts, kept in the
file named by `console.users_file` of the site configuration (docs/console.md)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Optional, TextIO

from lanectl.config import ConfigError, load_config


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("console-user", help="manage the booth console's operator accounts")
    p.add_argument("--config", required=True, metavar="DIR", help="directory with site.yaml and lanes/")
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = acts.add_parser("add", help="add an account (asks for its password)")
    add.add_argument("name")
    add.add_argument("--role", choices=("operator", "supervisor"), default="operator")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    pw = acts.add_parser("passwd", help="set an account's password")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    rm = acts.add_parser("remove", help="remove an account (its sessions end at their next request)")
    rm.add_argument("name")
    acts.add_parser("list", help="list the accounts and their roles")
    p.set_defaults(func=cmd_console_user)


def read_password(from_stdin: bool, stdin: TextIO = sys.stdin) -> str:
    """From stdin (scripts), or asked twice without echo."""
    if from_stdin:
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def users_file(config_dir: str) -> Path:
    return load_config(config_dir, credentials=False).site.console.users_file


def cmd_console_user(args: argparse.Namespace, stdin: Optional[TextIO] = None) -> int:
    from lanectl.adapters.console.accounts import (AccountError, User, check_name, check_password, check_role,
                                                   hash_password, read_users, write_users)
    try:
        path = users_file(args.config)
    except ConfigError as exc:
        print(f"lanectl: {len(exc.problems)} problem(s) in {args.config}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    try:
        users = read_users(path)
        if args.action == "list":
            for user in sorted(users.values(), key=lambda u: u.name):
                print(f"{user.name}\t{user.role}")
            if not users:
                print(f"no accounts in {path}", file=sys.stderr)
            return 0
        name = check_name(args.name)
        if args.action == "remove":
            if name not in users:
                raise AccountError(f"no account {name!r} in {path}")
            del users[name]
            write_users(path, users)
            print(f"removed {name} from {path}")
            return 0
        if args.action == "add" and name in users:
            raise AccountError(f"{name!r} already has an account (change its password with `passwd`)")
        if args.action == "passwd" and name not in users:
            raise AccountError(f"no account {name!r} in {path}")
        role = check_role(args.role) if args.action == "add" else users[name].role
        password = check_password(read_password(args.password_stdin, stdin or sys.stdin))
        users[name] = User(name, role, hash_password(password))
        write_users(path, users)
        print(f"{'added' if args.action == 'add' else 'password changed for'} {name} ({role}) in {path}")
        return 0
    except (AccountError, ValueError) as exc:
        print(f"lanectl: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lanectl: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
