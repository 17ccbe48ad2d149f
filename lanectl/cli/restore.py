"""`lanectl restore --config DIR BACKUP`: put a backup (housekeeping's daily copy, docs/operations.md) in place
of the configured database while the daemon is stopped. The database it replaces is kept beside it."""

from __future__ import annotations

import argparse
import socket
import sys
from datetime import datetime
from pathlib import Path

from lanectl.config import ConfigError, load_config


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("restore", help="restore the database from a backup (stop the daemon first)")
    p.add_argument("--config", required=True, metavar="DIR", help="directory with site.yaml and lanes/")
    p.add_argument("backup", metavar="BACKUP", help="a backup file, e.g. /var/lib/lanectl/backups/lanectl-*.db")
    p.set_defaults(func=cmd_restore)


def daemon_running(path: Path) -> bool:
    """The control socket answers: a daemon has the database open."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def cmd_restore(args: argparse.Namespace) -> int:
    from lanectl.adapters.housekeeping.backup import RestoreError, restore_sync
    from lanectl.adapters.store.schema import MIGRATIONS
    try:
        config = load_config(args.config, credentials=False)
    except ConfigError as exc:
        print(f"lanectl: {len(exc.problems)} problem(s) in {args.config}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    site = config.site
    if daemon_running(site.control.socket):
        print(f"lanectl: the daemon is running (its control socket {site.control.socket} answers): stop it first "
              "(systemctl stop lanectl), then restore", file=sys.stderr)
        return 1
    try:
        done = restore_sync(Path(args.backup), site.database, len(MIGRATIONS), datetime.now(site.tz))
    except RestoreError as exc:
        print(f"lanectl: cannot restore: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lanectl: cannot restore into {site.database}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"restored {args.backup} (schema v{done['schema']}, {done['records']} records) into {done['database']}")
    if done["previous"]:
        print(f"the database it replaced is kept as {done['previous']}")
    print("start the daemon (systemctl start lanectl); it migrates an older schema at start")
    return 0
