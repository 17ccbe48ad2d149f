"""Issue 19's "Done when", proven on a fresh Debian 12 with systemd booted (a long campaign, not CI).

    python -m hil.fresh_debian [--keep] [--rootfs DIR] [--wheel FILE]        (as root, on a Debian host)

What a new installer does, following README.md and systemd/README.md only, inside a freshly booted Debian:
a venv under /opt/lanectl + `pip install` of the wheel (dependencies from the package registry) + the symlink,
`lanectl install-service`, the keys put where its printout says, `systemctl enable --now lanectl`; then the
figures: `systemd-analyze security lanectl` (must be <= 1.9), every /metrics series the issue lists after cars
were driven through (the rig's Modbus barrier emulator and HTTP camera emulator, run inside the container
as transient units: the lane PC has no hardware here), /healthz, a barrier fault and its recovery, the
scheduled backup, `lanectl restore` of it and the same records listed by the restarted daemon.

The container: `debootstrap --variant=minbase bookworm` once into --rootfs (a cache, never under the checkout),
copied afresh for each run to <rootfs>.run and booted with `systemd-nspawn -b` (--keep-unit --register=no, so
it also works where the host's PID 1 is not systemd). systemd only ever runs on that copy — never on the
host's root, whose /tmp a host systemd-tmpfiles would wipe. The copy is powered off and removed at the end
(kept with --keep). The host's extra CA certificates (/usr/local/share/ca-certificates) are copied in, so
pip and apt work behind the same TLS proxy as the host.

Each step prints its name, result and figures; the first failed step stops the run (after the cleanup) with
exit 1. Exit 2: bad arguments or not root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Optional

CHECKOUT = Path(__file__).resolve().parent.parent
DEFAULT_ROOTFS = Path("/var/lib/lanectl-fresh/rootfs")
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv,python3-pip,curl,ca-certificates"
MACHINE = "lanectl-fresh"
SECURITY_LIMIT = 1.9  # the unit's rating when issue 19 was filed; lower is better
LOT_TZ = timezone(timedelta(hours=8))  # the lot's Asia/Shanghai (no DST)
# the container shares the host's network: ports away from the rig's and the demo's defaults
HTTP_PORT, LAN_PORT, MODBUS_PORT, BOLINK_PORT = 18780, 18781, 18502, 18791
LAN = f"http://127.0.0.1:{LAN_PORT}"
CAMERA_USER, CAMERA_PASSWORD = "east_cam", "fresh-debian-test-camera-password"  # test credentials only
BACKOFFICE_TOKEN = "fresh-debian-test-backoffice-token"
BOLINK_KEY = "8403A41ED5EF20BC"  # the Bolink emulator's test vendor key
SIGN_FREE = "粤B12345"  # a Bolink wallet member: the platform pays its exit

# issue 19's list: (what the issue says, the series, whether this run's traffic must have produced a sample)
SERIES = [
    ("decisions by lane and outcome", "lanectl_decisions_total", True),
    ("plate-to-command latency histogram", "lanectl_plate_to_command_seconds", True),
    ("barrier commands by result", "lanectl_barrier_commands_total", True),
    ("device faults", "lanectl_device_faults_total", True),
    ("device fault durations", "lanectl_device_fault_duration_seconds", True),
    ("outbox depth by destination", "lanectl_outbox_pending", True),
    ("outbox oldest age by destination", "lanectl_outbox_oldest_age_seconds", True),
    ("settlement attempts by provider and status", "lanectl_settlement_attempts_total", True),
    ("late payments", "lanectl_late_payments_total", False),  # none happen in this run
    ("HTTP requests by route and status", "lanectl_http_requests_total", True),
    ("database size", "lanectl_database_size_bytes", True),
]


class StepFailed(Exception):
    pass


@dataclass
class Run:
    rootfs: Path
    keep: bool
    wheel: Optional[Path]
    work: Path = field(init=False)
    wheel_dir: Optional[Path] = None  # made by this run: removed at the end
    nspawn: Optional[subprocess.Popen] = None
    leader: int = 0
    figures: dict[str, object] = field(default_factory=dict)
    install_printout: str = ""
    records_at_backup: str = ""
    backup: str = ""

    def __post_init__(self) -> None:
        self.work = self.rootfs.with_name(self.rootfs.name + ".run")

    # -- running commands inside the container ------------------------------------------------------------------
    def sh(self, script: str, *, check: bool = True, timeout: float = 300, env: Optional[dict] = None) -> str:
        """Run a shell script inside the booted container as root (all its namespaces, its root); stdout+stderr."""
        environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                       "LANG": "C.UTF-8", **(env or {})}
        argv = ["nsenter", "-t", str(self.leader), "-a", "-r", "-w", "/usr/bin/env", "-i",
                *(f"{k}={v}" for k, v in environment.items()), "/bin/sh", "-c", f"cd /root && {script}"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        out = done.stdout + done.stderr
        if check and done.returncode != 0:
            raise StepFailed(f"`{script}` exited {done.returncode}:\n{_indent(out)}")
        return out

    def write(self, path: str, text: str, mode: int, owner: str = "root:root") -> None:
        self.sh(f"umask 077 && cat > {path} <<'EOF_FRESH'\n{text}EOF_FRESH\n"
                f"chmod {mode:o} {path} && chown {owner} {path}")

    def wait_for(self, what: str, probe: Callable[[], Optional[str]], timeout: float, every: float = 1.0) -> str:
        end = time.monotonic() + timeout
        while True:
            got = probe()
            if got is not None:
                return got
            if time.monotonic() > end:
                raise StepFailed(f"{what}: not within {timeout:.0f} s")
            time.sleep(every)

    def healthz(self) -> dict:
        return json.loads(self.sh(f"curl -s {LAN}/healthz"))


# -- the steps ----------------------------------------------------------------------------------------------------

def step_host_tools(run: Run) -> str:
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter") if shutil.which(t) is None]
    if missing:
        _host(["apt-get", "install", "-y", "debootstrap", "systemd-container"], timeout=600)
    return "debootstrap, systemd-nspawn, nsenter" + (f" (installed: {', '.join(missing)})" if missing else "")


def step_rootfs(run: Run) -> str:
    if (run.rootfs / "sbin" / "init").exists():
        return f"cached {run.rootfs}"
    t0 = time.monotonic()
    run.rootfs.parent.mkdir(parents=True, exist_ok=True)
    _host(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(run.rootfs), MIRROR],
          timeout=1800)
    run.figures["debootstrap_s"] = round(time.monotonic() - t0)
    return f"debootstrap bookworm minbase into {run.rootfs} in {run.figures['debootstrap_s']} s"


def step_fresh_copy(run: Run) -> str:
    _remove_work(run)
    t0 = time.monotonic()
    _host(["cp", "-a", "--reflink=auto", str(run.rootfs), str(run.work)], timeout=600)
    for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy2(crt, run.work / "usr/local/share/ca-certificates" / crt.name)
    return f"{run.work} ({time.monotonic() - t0:.1f} s)"


def step_wheel(run: Run) -> str:
    if run.wheel is None:
        out = run.wheel_dir = Path(tempfile.mkdtemp(prefix="lanectl-wheel-", dir=run.rootfs.parent))
        _host([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(CHECKOUT)], timeout=300)
        wheels = sorted(out.glob("lanectl-*.whl"))
        if not wheels:
            raise StepFailed(f"no lanectl wheel in {out}")
        run.wheel = wheels[-1]
    shutil.copy2(run.wheel, run.work / "root" / run.wheel.name)
    # the rig's emulators (they import nothing from lanectl) stand in for the lane's hardware
    shutil.copytree(CHECKOUT / "hil", run.work / "root/rig/hil", ignore=shutil.ignore_patterns("__pycache__"))
    return f"{run.wheel.name} ({run.wheel.stat().st_size // 1024} KiB) and the rig's emulators copied in"


def step_boot(run: Run) -> str:
    log = open(run.rootfs.parent / "nspawn.log", "w")
    run.nspawn = subprocess.Popen(
        ["systemd-nspawn", "-b", "-D", str(run.work), "--machine", MACHINE, "--keep-unit", "--register=no",
         "--console=passive"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()

    def leader() -> Optional[str]:
        if run.nspawn is not None and run.nspawn.poll() is not None:
            raise StepFailed(f"systemd-nspawn exited {run.nspawn.returncode}: see {log.name}")
        pid = _container_init(run.nspawn.pid)
        return str(pid) if pid else None
    run.leader = int(run.wait_for("the container's systemd", leader, 30, 0.2))
    state = run.sh("systemctl is-system-running --wait", check=False, timeout=120).strip()
    run.figures["boot_s"] = round(time.monotonic() - t0, 1)
    if state not in ("running", "degraded"):
        raise StepFailed(f"is-system-running: {state}")
    failed = run.sh("systemctl --failed --no-legend --plain", check=False).strip()
    version = run.sh("systemctl --version | head -1").strip()
    run.sh("update-ca-certificates >/dev/null")
    return f"{version}; is-system-running: {state} in {run.figures['boot_s']} s" + (f"; failed: {failed}" if failed
                                                                                     else "")


def step_pip_install(run: Run) -> str:
    # systemd/README.md section 1, as written
    t0 = time.monotonic()
    run.sh("apt-get install -y python3-venv >/dev/null && python3 -m venv /opt/lanectl")
    run.sh(f"/opt/lanectl/bin/pip install -q /root/{run.wheel.name}", timeout=900)  # type: ignore[union-attr]
    run.sh("ln -sf /opt/lanectl/bin/lanectl /usr/bin/lanectl && lanectl --help >/dev/null")
    run.figures["pip_install_s"] = round(time.monotonic() - t0, 1)
    version = run.sh("lanectl --version").strip()
    return f"{version} into /opt/lanectl in {run.figures['pip_install_s']} s (dependencies from PyPI)"


def step_install_service(run: Run) -> str:
    run.install_printout = run.sh("lanectl install-service")
    print(_indent(run.install_printout))
    again = run.sh("lanectl install-service")
    if "0 change(s)" not in again:
        raise StepFailed(f"a second install-service changed something:\n{_indent(again)}")
    verify = run.sh("systemd-analyze verify /etc/systemd/system/lanectl.service", check=False).strip()
    if verify:
        raise StepFailed(f"systemd-analyze verify:\n{_indent(verify)}")
    return "user, /etc/lanectl, /var/lib/lanectl, unit; a second run changes nothing; systemd-analyze verify clean"


def step_configure(run: Run) -> str:
    """Describe a lot that runs without hardware, and put its keys where the printout said."""
    found = re.search(r"put payment keys and passwords in (\S+)", run.install_printout)
    if not found:
        raise StepFailed("the printout names no file for the keys")
    secrets = found.group(1)
    backup_at = (datetime.now(LOT_TZ) + timedelta(minutes=4)).strftime("%H:%M")  # after the drive (~2 min)
    run.figures["backup_at"] = backup_at
    run.write("/etc/lanectl/site.yaml", site_yaml(run.sh("cat /etc/lanectl/site.yaml"), backup_at), 0o640,
              "root:lanectl")
    run.sh("rm -f /etc/lanectl/lanes/*.yaml")
    for lane, direction, unit in LANES:
        run.write(f"/etc/lanectl/lanes/{lane}.yaml", lane_yaml(lane, direction, unit), 0o640, "root:lanectl")
    run.write(secrets, SECRETS_YAML, 0o600)
    check = run.sh("lanectl check-config /etc/lanectl")
    return f"keys in {secrets} (root:root 0600); check-config: {check.strip().splitlines()[-1]}"


def step_rig(run: Run) -> str:
    _start_barrier(run)
    run.sh(f"systemd-run --unit rig-bolink -E PYTHONPATH=/root/rig /opt/lanectl/bin/python -m hil.emulators.bolink "
           f"--port {BOLINK_PORT} --key {BOLINK_KEY} --sign-free {SIGN_FREE} "
           f"--callback-url http://127.0.0.1:{HTTP_PORT}/bolink")
    run.wait_for("the Bolink emulator listening", lambda: "" if _listening(run, BOLINK_PORT) else None, 30)
    return (f"Modbus TCP barrier emulator (units 1, 2) on 127.0.0.1:{MODBUS_PORT} (rig-barrier.service), Bolink "
            f"platform emulator on 127.0.0.1:{BOLINK_PORT} (rig-bolink.service, {SIGN_FREE} has the wallet)")


def _start_barrier(run: Run) -> None:
    run.sh(f"systemd-run --unit rig-barrier -E PYTHONPATH=/root/rig /opt/lanectl/bin/python -m "
           f"hil.emulators.barrier_io --tcp {MODBUS_PORT} --units 1,2 --rise 0.5 --fall 0.5")
    run.wait_for("the barrier emulator listening", lambda: "" if _listening(run, MODBUS_PORT) else None, 30)


def step_start(run: Run) -> str:
    run.sh("systemctl daemon-reload && systemctl enable --now lanectl", timeout=120)
    active = run.sh("systemctl is-active lanectl", check=False).strip()
    if active != "active":
        raise StepFailed(f"lanectl is {active}:\n{_indent(run.sh('journalctl -u lanectl --no-pager | tail -30'))}")
    status = run.wait_for("both lanes healthy", lambda: _healthy(run), 60)
    # the keys reach the service only as a credential: its user cannot read the file itself
    if run.sh("runuser -u lanectl -- cat /etc/lanectl/secrets.yaml >/dev/null 2>&1 && echo readable || true").strip():
        raise StepFailed("the service user can read /etc/lanectl/secrets.yaml itself")
    return f"active; STATUS={status}; the keys reach it as a credential (user lanectl cannot read the file)"


def step_security(run: Run) -> str:
    out = run.sh("systemd-analyze security lanectl --no-pager")
    found = re.search(r"Overall exposure level for lanectl\.service: ([0-9.]+) (\S+)", out)
    if not found:
        raise StepFailed(f"no overall exposure in:\n{_indent(out[-2000:])}")
    level = float(found.group(1))
    run.figures["security"] = level
    if level > SECURITY_LIMIT:
        raise StepFailed(f"exposure {level} is worse than {SECURITY_LIMIT}")
    return f"systemd-analyze security: {level} {found.group(2)} (limit {SECURITY_LIMIT}, lower is better)"


def step_drive(run: Run) -> str:
    # the emulator has no car on its loops: each arm comes down after pass_timeout_s, then the lane is idle again
    lines = []
    entered = time.monotonic()
    for plate in (SIGN_FREE, "粤B23456", "粤B34567"):
        lines.append(_car(run, "east_in", plate))
        _wait_idle(run)
    # a barrier fault and its recovery: the module's line goes away for a while
    run.sh("systemctl stop rig-barrier")
    run.wait_for("a barrier fault", lambda: "" if run.healthz()["lanes"]["east_in"]["barrier_fault"] else None, 30)
    run.sh("systemctl reset-failed rig-barrier 2>/dev/null; true")
    _start_barrier(run)
    run.wait_for("the fault's end", lambda: _healthy(run), 60)
    # stays are counted in whole minutes: the member's must be one long to owe anything
    time.sleep(max(0.0, entered + 62 - time.monotonic()))
    lines.append(_car(run, "east_out", SIGN_FREE))
    _wait_idle(run)  # paid by the wallet: out without the booth
    lines.append(_car(run, "east_out", "粤B77777"))  # no entry: a fee Bolink does not charge (no member)
    run.wait_for("east_out awaiting payment", lambda: "" if run.healthz()["lanes"]["east_out"]["phase"]
                 == "awaiting_payment" else None, 60, 0.5)
    lines.append(run.sh("lanectl open --lane east_out --reason cash --amount 1000 --operator fresh-debian"))
    _wait_idle(run)
    records = run.sh("lanectl records --limit 1000")
    run.figures["records"] = len(records.strip().splitlines()) - 1
    return (f"{run.figures['records']} records; camera: "
            + "; ".join(ln.strip() for out in lines for ln in out.strip().splitlines()))


def step_metrics(run: Run) -> str:
    text = run.sh(f"curl -s -w '\\nHTTP %{{http_code}}' {LAN}/metrics")
    if not text.rstrip().endswith("HTTP 200"):
        raise StepFailed(f"/metrics answered {text[-40:]!r}")
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    sampled = {re.split(r"[{ ]", ln)[0] for ln in text.splitlines() if ln and not ln.startswith(("#", "HTTP"))}
    problems, report = [], []
    for what, name, must_sample in SERIES:
        base = name.removesuffix("_total")
        has_type = name in declared or base in declared
        samples = sorted(s for s in sampled if s == name or s.startswith(base + "_")
                         and s.removeprefix(base + "_") in ("bucket", "sum", "count", "total"))
        count = sum(1 for ln in text.splitlines() if re.match(rf"{re.escape(name)}(_bucket|_count|_sum)?[{{ ]", ln))
        report.append(f"{name}: {'declared' if has_type else 'MISSING'}, {count} sample line(s)")
        if not has_type or (must_sample and not samples):
            problems.append(f"{what} ({name}): {'no samples' if has_type else 'not declared'}")
    print(_indent("\n".join(report)))
    for name in ("lanectl_decisions_total", "lanectl_barrier_commands_total", "lanectl_outbox_pending",
                 "lanectl_settlement_attempts_total",
                 "lanectl_plate_to_command_seconds_count", "lanectl_device_fault_duration_seconds_count"):
        print(_indent("\n".join(ln for ln in text.splitlines() if ln.startswith(name + "{"))))
    for want in (f'lanectl_settlement_attempts_total{{provider="bolink",status="paid"}}',
                 f'lanectl_settlement_attempts_total{{provider="bolink",status="skipped"}}'):
        if want not in text:
            problems.append(f"no {want}")
    run.figures["metric_families"] = len(declared)
    if problems:
        raise StepFailed("; ".join(problems))
    return f"{len(declared)} metric families; every series of the issue declared, the lane and daemon ones sampled"


def step_healthz(run: Run) -> str:
    out = run.sh(f"curl -s -w '\\nHTTP %{{http_code}}' {LAN}/healthz").strip().splitlines()
    body = json.loads(out[0])
    if out[-1] != "HTTP 200" or body.get("ok") is not True:
        raise StepFailed(f"/healthz: {out}")
    return f"{out[-1]} {out[0]}"


def step_backup(run: Run) -> str:
    _wait_idle(run)
    before = run.sh("lanectl records --limit 1000")
    if run.sh("ls /var/lib/lanectl/backups/ 2>/dev/null || true").strip():
        raise StepFailed("the backup ran before the cars were through: the run was slower than backup_at allows")
    found = run.wait_for(f"the scheduled backup at {run.figures['backup_at']} lot time",
                         lambda: run.sh("ls /var/lib/lanectl/backups/*.db 2>/dev/null || true").strip() or None,
                         240, 5)
    run.backup = found.splitlines()[-1]
    run.records_at_backup = run.sh("lanectl records --limit 1000")
    if run.records_at_backup != before:
        raise StepFailed("records changed while waiting for the backup (a lane was not idle)")
    hk = run.sh("lanectl status | grep 'housekeeping backup'").strip()
    _car(run, "east_in", "粤B99999")  # after the backup: it must not be in the restored database
    _wait_idle(run)
    if "粤B99999" not in run.sh("lanectl records --plate 粤B99999"):
        raise StepFailed("the car after the backup was not recorded")
    size = run.sh(f"stat -c %s {run.backup}").strip()
    return f"{run.backup} ({int(size) // 1024} KiB); {hk}; one more car (粤B99999) after it"


def step_restore(run: Run) -> str:
    run.sh("systemctl stop lanectl")
    out = run.sh(f"runuser -u lanectl -- lanectl restore --config /etc/lanectl {run.backup}")
    print(_indent(out))
    run.sh("systemctl start lanectl")
    if run.sh("systemctl is-active lanectl", check=False).strip() != "active":
        raise StepFailed("lanectl did not start on the restored database")
    after = run.sh("lanectl records --limit 1000")
    if after != run.records_at_backup:
        raise StepFailed(f"records differ after the restore:\nat backup:\n{_indent(run.records_at_backup)}"
                         f"\nafter:\n{_indent(after)}")
    if "粤B99999" in after:
        raise StepFailed("the car recorded after the backup is in the restored database")
    n = len(after.strip().splitlines()) - 1
    return f"daemon active on the restored database; the same {n} records (粤B99999, after the backup, not among them)"


def step_journal(run: Run) -> str:
    """The whole run in the journal: warnings are expected (cars that never passed, the barrier fault, the
    webhook nobody answers); an error or a traceback is not."""
    journal = run.sh("journalctl -u lanectl --no-pager -o cat")
    bad = [ln for ln in journal.splitlines() if re.match(r"(ERROR|CRITICAL)\b", ln) or "Traceback" in ln]
    warnings = sum(1 for ln in journal.splitlines() if ln.startswith("WARNING"))
    run.figures["journal_lines"] = len(journal.splitlines())
    if bad:
        raise StepFailed("errors in the journal:\n" + _indent("\n".join(bad[:20])))
    return f"{run.figures['journal_lines']} lines from lanectl, {warnings} warnings, no error, no traceback"


STEPS: list[tuple[str, Callable[[Run], str]]] = [
    ("host-tools", step_host_tools), ("rootfs", step_rootfs), ("fresh-copy", step_fresh_copy),
    ("wheel", step_wheel), ("boot", step_boot), ("pip-install", step_pip_install),
    ("install-service", step_install_service), ("configure", step_configure), ("rig", step_rig),
    ("start", step_start), ("security", step_security), ("drive", step_drive), ("metrics", step_metrics),
    ("healthz", step_healthz), ("backup", step_backup), ("restore", step_restore), ("journal", step_journal),
]


# -- the lot this run describes (pure: tests/unit/test_fresh_debian.py loads it with lanectl's own loader) -----

LANES = [("east_in", "entry", 1), ("east_out", "exit", 2)]
SECRETS_YAML = (f"camera_password: \"{CAMERA_PASSWORD}\"\nbackoffice_token: \"{BACKOFFICE_TOKEN}\"\n"
                f"bolink_key: \"{BOLINK_KEY}\"\n")


def site_yaml(example: str, backup_at: str) -> str:
    """The example site.yaml install-service put in place, on this run's ports, with no free minutes (a stay of
    seconds owes a fee), the Bolink emulator as payment platform, a webhook nobody answers (the outbox fills)
    and the daily backup due a few minutes later."""
    site = (example.replace('listen: "0.0.0.0:8780"', f'listen: "127.0.0.1:{HTTP_PORT}"')
                   .replace('listen: "127.0.0.1:8781"', f'listen: "127.0.0.1:{LAN_PORT}"')
                   .replace("free_minutes: 30 ", "free_minutes: 0  ", 1))
    if f":{HTTP_PORT}" not in site or f":{LAN_PORT}" not in site or "free_minutes: 0 " not in site:
        raise StepFailed("the example site.yaml no longer has the listen addresses and free minutes this run edits")
    return site + (f"uploads:\n  webhook:\n    url: \"http://127.0.0.1:9/records\"   # nothing listens\n"
                   f"    token: {{secret: backoffice_token}}\n"
                   f"payments:\n  bolink:\n    base_url: http://127.0.0.1:{BOLINK_PORT}\n    union_id: 200208\n"
                   f"    park_id: \"21835\"\n    key: {{secret: bolink_key}}\n"
                   f"housekeeping:\n  backup_at: \"{backup_at}\"\n")


def lane_yaml(lane: str, direction: str, unit: int) -> str:
    return f"""\
id: {lane}
name: {lane}
direction: {direction}
devices:
  barrier: {{kind: modbus_tcp, host: 127.0.0.1, tcp_port: {MODBUS_PORT}, unit: {unit}}}
  camera:
    kind: vzenith_http
    allow_from: [127.0.0.1]
    basic_auth: {{username: {CAMERA_USER}, password: {{secret: camera_password}}}}
rules:
  duplicate_window_s: 10
  pass_timeout_s: 3      # the emulator has no car on its loops: the arm comes down after this
""" + ("payments: [bolink]\n" if direction == "exit" else "")


# -- helpers ------------------------------------------------------------------------------------------------------

def _car(run: Run, lane: str, plate: str) -> str:
    """One plate pushed by the rig's HTTP camera emulator, with the camera's test credentials."""
    return run.sh(f"CAMERA_PASSWORD={CAMERA_PASSWORD} PYTHONPATH=/root/rig /opt/lanectl/bin/python -m "
                  f"hil.emulators.camera_http --user {CAMERA_USER} {LAN}/camera/{lane} {plate}").strip()


def _healthy(run: Run) -> Optional[str]:
    try:
        if not run.healthz().get("ok"):
            return None
    except (ValueError, StepFailed):
        return None
    return run.sh("systemctl show -p StatusText --value lanectl").strip()


def _wait_idle(run: Run) -> None:
    run.wait_for("lanes idle", lambda: "" if all(
        lane["phase"] == "idle" for lane in run.healthz()["lanes"].values()) else None, 60, 0.5)


def _listening(run: Run, port: int) -> bool:
    return f":{port:04X} " in run.sh("cat /proc/net/tcp", check=False).upper()


def _container_init(nspawn_pid: int) -> Optional[int]:
    """The container's PID 1 as the host sees it: the descendant of nspawn that is PID 1 of its namespace."""
    parents: dict[int, int] = {}
    firsts: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.M)
        nspid = re.search(r"^NSpid:\s+(.*)$", status, re.M)
        if ppid:
            parents[int(entry.name)] = int(ppid.group(1))
        if nspid and len(nspid.group(1).split()) > 1 and nspid.group(1).split()[-1] == "1":
            firsts.add(int(entry.name))
    for pid in firsts:
        up = pid
        for _ in range(4):
            up = parents.get(up, 0)
            if up == nspawn_pid:
                return pid
    return None


def _host(argv: list[str], *, timeout: float) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise StepFailed(f"{shlex.join(argv)} exited {done.returncode}:\n{_indent((done.stdout + done.stderr)[-3000:])}")


def _indent(text: str) -> str:
    return "\n".join("      " + ln for ln in text.rstrip().splitlines())


def _remove_work(run: Run) -> None:
    # only ever the run copy this script makes: <rootfs>.run beside the cache
    if run.work.name.endswith(".run") and run.work.parent == run.rootfs.parent and run.work != run.rootfs:
        shutil.rmtree(run.work, ignore_errors=True)


def cleanup(run: Run) -> str:
    if run.wheel_dir is not None:
        shutil.rmtree(run.wheel_dir, ignore_errors=True)
    if run.nspawn is not None and run.nspawn.poll() is None:
        if run.leader:
            try:
                run.sh("systemctl poweroff", check=False, timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            run.nspawn.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.nspawn.pid, signal.SIGKILL)
            run.nspawn.wait(timeout=10)
    if run.keep:
        return f"container stopped; kept {run.work}"
    _remove_work(run)
    return f"container stopped; {run.work} removed"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m hil.fresh_debian", description=__doc__.splitlines()[0])
    ap.add_argument("--rootfs", type=Path, default=DEFAULT_ROOTFS,
                    help=f"the debootstrapped Debian 12 (made when missing; default {DEFAULT_ROOTFS})")
    ap.add_argument("--keep", action="store_true", help="keep the container's copy (<rootfs>.run) afterwards")
    ap.add_argument("--wheel", type=Path, help="install this wheel instead of building one from the checkout")
    args = ap.parse_args(argv)
    args.rootfs = args.rootfs.resolve()
    if args.rootfs == Path("/") or CHECKOUT in (args.rootfs, *args.rootfs.parents):
        ap.error("--rootfs must be a directory of its own, not / and not inside the checkout")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("python -m hil.fresh_debian: run as root (debootstrap, systemd-nspawn)", file=sys.stderr)
        return 2
    run = Run(args.rootfs, args.keep, args.wheel.resolve() if args.wheel else None)
    failed = None
    t_start = time.monotonic()
    try:
        for n, (name, step) in enumerate(STEPS, 1):
            print(f"[{n:2}/{len(STEPS)}] {name} ...", flush=True)
            t0 = time.monotonic()
            try:
                result = step(run)
            except (StepFailed, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as exc:
                print(f"        FAILED ({time.monotonic() - t0:.1f} s): {exc}", flush=True)
                failed = name
                break
            print(f"        ok ({time.monotonic() - t0:.1f} s): {result}", flush=True)
        if failed and run.leader:
            print(_indent(run.sh("journalctl -u lanectl --no-pager | tail -40", check=False)))
    except KeyboardInterrupt:
        failed = "interrupted"
    finally:
        print(f"cleanup: {cleanup(run)}")
    print(f"figures: {json.dumps(run.figures, ensure_ascii=False)}; total {time.monotonic() - t_start:.0f} s")
    print(f"FAILED at {failed}" if failed else "all steps passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
