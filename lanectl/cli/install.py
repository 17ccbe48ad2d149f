"""`lanectl install-service [--root DIR] [--dry-run]`: the service user, /etc/lanectl, /var/lib/lanectl and the
systemd unit, from the files the package carries (lanectl/data). Never overwrites a configuration or a secret;
says what it did, what it left alone, and what to do next.

With --root DIR (a staging tree, the tests) the files go under DIR and nothing outside it is touched: the user
database is not edited (the user and group steps are only printed) and no file is chowned, since `lanectl` may
not exist there. --dry-run changes nothing and prints the same plan.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

USER = "lanectl"
SERIAL_GROUP = "dialout"
UNIT_PATH = "etc/systemd/system/lanectl.service"
CONFIG_DIR = "etc/lanectl"
STATE_DIR = "var/lib/lanectl"
SECRETS = "etc/lanectl/secrets.yaml"
PACKAGED_LANECTL = "/usr/bin/lanectl"  # the path the packaged unit names
EX_NOPERM = 77

SECRETS_TEMPLATE = """\
# lanectl payment keys and passwords (root:root 0600). systemd reads this file as root and hands it to the
# service as a credential (LoadCredential= in lanectl.service): the service user never reads it here.
# Refer to a key from site.yaml or a lane file as {secret: KEY}, e.g.
#   payments: {bolink: {key: {secret: bolink_key}}}
# bolink_key: "..."
# backoffice_token: "..."
"""


@dataclass
class Step:
    text: str                         # what it does, for the printout
    apply: Optional[Callable[[], None]]  # None: nothing to do (already there / skipped)


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("install-service", help="create the lanectl user, /etc/lanectl, /var/lib/lanectl and the "
                                               "systemd unit (never overwrites a configuration)")
    p.add_argument("--root", default="/", metavar="DIR",
                   help="install under DIR instead of / (a staging tree: the user database is not edited)")
    p.add_argument("--dry-run", action="store_true", help="change nothing; print what would be done")
    p.set_defaults(func=cmd_install_service)


def cmd_install_service(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve()
    system = root == Path("/")
    if system and not args.dry_run and os.geteuid() != 0:
        print("lanectl install-service: must run as root (sudo lanectl install-service), or try --dry-run",
              file=sys.stderr)
        return EX_NOPERM
    try:
        steps = plan(root, system=system)
    except OSError as exc:
        print(f"lanectl install-service: {exc}", file=sys.stderr)
        return 73
    for step in steps:
        mark = "skip " if step.apply is None else ("would" if args.dry_run else "do   ")
        print(f"{mark}  {step.text}")
        if step.apply is not None and not args.dry_run:
            try:
                step.apply()
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"lanectl install-service: failed: {step.text}: {exc}", file=sys.stderr)
                return 73
    changed = sum(step.apply is not None for step in steps)
    print(f"\n{'dry run: nothing changed' if args.dry_run else f'{changed} change(s)'}"
          f"{'' if system else f'; staged under {root} (user database and ownership left alone)'}")
    print(next_steps(root))
    return 0


def plan(root: Path, *, system: bool) -> list[Step]:
    steps = _account_steps(system)
    owner = _Owner(system)
    etc, state, secrets = root / CONFIG_DIR, root / STATE_DIR, root / SECRETS
    steps.append(_directory(etc, 0o750, owner.config, "configuration directory"))
    if (etc / "site.yaml").exists():
        steps.append(Step(f"{etc}: has a site.yaml: the example configuration is not copied", None))
    else:
        steps.append(_directory(etc / "lanes", 0o750, owner.config, "lane files"))
        for name, text in _example_files():
            steps.append(_file(etc / name, text, 0o640, owner.config, "example configuration", replace=False))
    steps.append(_file(secrets, SECRETS_TEMPLATE, 0o600, owner.root, "secrets (empty template; LoadCredential=)",
                       replace=False))
    steps.append(_directory(state, 0o750, owner.state, "state: the database"))
    steps.append(_file(root / UNIT_PATH, unit_text(), 0o644, owner.root, "systemd unit", replace=True))
    return steps


def unit_text() -> str:
    """The packaged unit, naming this installation's lanectl when /usr/bin/lanectl is not it."""
    text = (resources.files("lanectl") / "data" / "lanectl.service").read_text(encoding="utf-8")
    usr = Path(PACKAGED_LANECTL)
    # the console script beside this interpreter (a venv), else the one on PATH (pip install into /usr/local)
    found = [p for p in (Path(sys.executable).parent / "lanectl", Path(shutil.which("lanectl") or "/nonexistent"))
             if p.is_file()]
    if found and not (usr.exists() and usr.resolve() == found[0].resolve()):
        text = text.replace(f"={PACKAGED_LANECTL} ", f"={found[0]} ")
    return text


def next_steps(root: Path) -> str:
    etc, secrets = root / CONFIG_DIR, root / SECRETS
    return f"""
next steps:
  1. describe the lot: {etc}/site.yaml and one file per lane in {etc}/lanes/ (docs: systemd/README.md)
  2. put payment keys and passwords in {secrets} (sudoedit {secrets}; keep it root:root 0600) and refer to
     them as {{secret: KEY}}; systemd hands the file to the service as a credential
  3. sudo lanectl check-config {etc}
  4. sudo systemctl daemon-reload && sudo systemctl enable --now lanectl
  5. systemctl status lanectl; journalctl -u lanectl -f"""


def _example_files() -> list[tuple[str, str]]:
    base = resources.files("lanectl") / "data" / "config" / "example"
    files = [("site.yaml", (base / "site.yaml").read_text(encoding="utf-8"))]
    lanes = base / "lanes"
    files += sorted((f"lanes/{f.name}", f.read_text(encoding="utf-8")) for f in lanes.iterdir()
                    if f.name.endswith(".yaml"))
    return files


class _Owner:
    """uid/gid to give each kind of path: real ids on the system, None (leave as created) in a staging root."""

    def __init__(self, system: bool) -> None:
        self.system = system

    def _ids(self, user: str, group: str) -> Callable[[], tuple[int, int]]:
        return lambda: (pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)  # looked up once the user exists

    @property
    def config(self) -> Optional[Callable[[], tuple[int, int]]]:
        return self._ids("root", USER) if self.system else None

    @property
    def state(self) -> Optional[Callable[[], tuple[int, int]]]:
        return self._ids(USER, USER) if self.system else None

    @property
    def root(self) -> Optional[Callable[[], tuple[int, int]]]:
        return (lambda: (0, 0)) if self.system else None


Ids = Optional[Callable[[], tuple[int, int]]]


def _set(path: Path, mode: int, ids: Ids) -> None:
    path.chmod(mode)
    if ids is not None:
        os.chown(path, *ids())


def _state_of(path: Path, mode: int, ids: Ids) -> Optional[str]:
    """What differs from the wanted mode/owner (None: nothing)."""
    st = path.stat()
    wrong = []
    if st.st_mode & 0o7777 != mode:
        wrong.append(f"mode {st.st_mode & 0o7777:04o} -> {mode:04o}")
    if ids is not None:
        try:
            uid, gid = ids()
        except KeyError:  # the user is created by an earlier step of this run
            return "owner"
        if (st.st_uid, st.st_gid) != (uid, gid):
            wrong.append("owner")
    return ", ".join(wrong) or None


def _directory(path: Path, mode: int, ids: Ids, what: str) -> Step:
    if path.is_dir():
        wrong = _state_of(path, mode, ids)
        if wrong is None:
            return Step(f"{path}/: exists ({what})", None)
        return Step(f"{path}/: fix {wrong} ({what})", lambda: _set(path, mode, ids))

    def make() -> None:
        path.mkdir(parents=True, exist_ok=True)
        _set(path, mode, ids)
    return Step(f"{path}/: create, mode {mode:04o} ({what})", make)


def _file(path: Path, text: str, mode: int, ids: Ids, what: str, *, replace: bool) -> Step:
    if path.exists():
        if not replace:
            return Step(f"{path}: exists, left as it is ({what})", None)
        if path.read_text(encoding="utf-8") == text:
            wrong = _state_of(path, mode, ids)
            if wrong is None:
                return Step(f"{path}: up to date ({what})", None)
            return Step(f"{path}: fix {wrong} ({what})", lambda: _set(path, mode, ids))
        verb = "replace with the packaged one (local changes belong in drop-ins: systemctl edit lanectl)"
    else:
        verb = f"create, mode {mode:04o}"

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        _set(tmp, mode, ids)
        tmp.replace(path)
    return Step(f"{path}: {verb} ({what})", write)


def _account_steps(system: bool) -> list[Step]:
    if not system:
        return [Step(f"user and group {USER} (+ {SERIAL_GROUP}): staging root, not created; on the target run "
                     f"`lanectl install-service` as root, or: {' '.join(_useradd())}", None)]
    steps = []
    if not _exists(grp.getgrnam, SERIAL_GROUP):
        steps.append(Step(f"group {SERIAL_GROUP}: create (owns the serial ports)",
                          lambda: _run(["groupadd", "--system", SERIAL_GROUP])))
    if _exists(pwd.getpwnam, USER):
        members = _exists(grp.getgrnam, SERIAL_GROUP)
        if members and USER in members.gr_mem:
            steps.append(Step(f"user {USER}: exists, in group {SERIAL_GROUP}", None))
        else:
            steps.append(Step(f"user {USER}: add to group {SERIAL_GROUP}",
                              lambda: _run(["usermod", "--append", "--groups", SERIAL_GROUP, USER])))
    else:
        if _exists(grp.getgrnam, USER):
            cmd = _useradd(user_group=False)
            steps.append(Step(f"user {USER} in existing group {USER}: {' '.join(cmd)}", lambda: _run(cmd)))
        else:
            steps.append(Step(f"user and group {USER}: {' '.join(_useradd())}", lambda: _run(_useradd())))
    return steps


def _useradd(*, user_group: bool = True) -> list[str]:
    group = ["--user-group"] if user_group else ["--gid", USER]
    return ["useradd", "--system", *group, "--groups", SERIAL_GROUP, "--home-dir", "/var/lib/lanectl",
            "--no-create-home", "--shell", "/usr/sbin/nologin", USER]


def _exists(lookup: Callable[[str], object], name: str):  # type: ignore[no-untyped-def]
    try:
        return lookup(name)
    except KeyError:
        return None


def _run(cmd: list[str]) -> None:
    if shutil.which(cmd[0]) is None:
        raise OSError(f"{cmd[0]} not found")
    subprocess.run(cmd, check=True)
