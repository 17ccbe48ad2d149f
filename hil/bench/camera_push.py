"""Benchmark: a Vzenith-style camera's plate push → the HTTP reply that carries the relay OPEN, on a camera-only
entry lane (no IO module: the camera's relay raises the arm), daemon as its own process.

The camera pushes to the daemon's LAN listener with HTTP basic auth, as a real one is set up; the
authentication check runs for every request, the reference included.

The reference is a heartbeat round trip to the same listener in the same run: same HTTP stack, nothing decided,
nothing written. On top of it a push pays for parsing the JSON (and its base64 pictures), writing the picture,
the lane's decision with its fsync'd commit, and handing the OPEN to the reply. Pictures of 2 KB (a crop) and
of 200 KB (a typical full-scene JPEG; ~270 KB of base64 in the body) are measured separately.

    python -m hil.bench.camera_push [--cars 60]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from hil.bench.figures import Figure, Figures, percentile
from hil.daemon_process import DaemonProcess
from hil.emulators.camera_http import HttpCamera
from hil.platforms import free_port

REST_S = 0.35  # after a car: the relay's cycle (0.2 s) ends and the lane is idle for the next one
PASSWORD = secrets.token_urlsafe(18)


def _site(workdir: Path, port: int) -> dict:
    return {"park_id": "bench", "database": str(workdir / "lanectl.db"), "http": {"listen": "127.0.0.1:0"},
            "lan": {"listen": f"127.0.0.1:{port}"}, "control": {"socket": str(workdir / "c.sock")},
            "secrets_file": "secrets.yaml",
            "tariffs": {"default": {"free_minutes": 15, "first_minutes": 60, "first_fen": 500}}}


def _lane() -> dict:
    return {"id": "in1", "direction": "entry",
            "devices": {"camera": {"kind": "vzenith_http", "relay_barrier": True, "relay_cycle_s": 0.2,
                                   "max_image_kb": 1024,
                                   "basic_auth": {"username": "cam", "password": {"secret": "camera_password"}}}},
            "rules": {"auto_close": True, "duplicate_window_s": 1}}


async def heartbeats(camera: HttpCamera, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        reply = await camera.heartbeat()
        out.append(time.perf_counter() - t0)
        if reply.status != 200:
            raise SystemExit(f"heartbeat answered {reply.status}")
    return out


async def padded_heartbeats(camera: HttpCamera, n: int, pad_bytes: int) -> list[float]:
    """Heartbeats carrying `pad_bytes` of base64 text: the same body size as a push with a picture, read and
    parsed, but nothing decided (the floor for large bodies)."""
    body = json.dumps({"heartbeat": {"serialno": camera.serialno, "deviceName": camera.device_name},
                       "pad": base64.b64encode(bytes(pad_bytes * 3 // 4)).decode()}).encode()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        reply = await camera.post_raw(body)
        out.append(time.perf_counter() - t0)
        if reply.status != 200:
            raise SystemExit(f"padded heartbeat answered {reply.status}: {reply.error}")
    return out


async def pushes(camera: HttpCamera, prefix: str, n: int, image_size: int) -> tuple[list[float], int]:
    """Push latencies from the request going out to the reply read (the emulator's own JSON and base64
    encoding of the body is not counted), and the body size."""
    camera.image_size = image_size
    out: list[float] = []
    sizes: list[int] = []
    post = camera._post

    async def timed(kind: str, body: bytes):  # type: ignore[no-untyped-def]
        sizes.append(len(body))
        t0 = time.perf_counter()
        reply = await post(kind, body)
        out.append(time.perf_counter() - t0)
        return reply
    camera._post = timed  # type: ignore[method-assign]
    try:
        for i in range(n):
            plate = f"粤{prefix}{10000 + i:05d}"
            reply = await camera.car(plate)
            if not reply.commands.open_gate:
                raise SystemExit(f"{plate}: the push's reply carried no OPEN ({reply})")
            await asyncio.sleep(REST_S)
    finally:
        camera._post = post  # type: ignore[method-assign]
    return out, max(sizes)


@dataclass(frozen=True)
class Result:
    heartbeat: list[float]  # seconds
    small: list[float]
    small_body: int  # bytes
    large: list[float]
    large_body: int
    large_heartbeat: list[float]
    rss_mib: float
    saved: int


async def measure(n: int) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix="lanectl-bench-", dir="/tmp"))
    port = free_port()
    etc = workdir / "etc"
    (etc / "lanes").mkdir(parents=True)
    (etc / "site.yaml").write_text(yaml.safe_dump(_site(workdir, port), allow_unicode=True))
    (etc / "lanes" / "in1.yaml").write_text(yaml.safe_dump(_lane(), allow_unicode=True))
    (etc / "secrets.yaml").write_text(yaml.safe_dump({"camera_password": PASSWORD}))
    (etc / "secrets.yaml").chmod(0o600)
    daemon = DaemonProcess(etc, workdir / "c.sock", workdir / "daemon.log", log_level="WARNING")
    camera = HttpCamera(f"http://127.0.0.1:{port}/camera/in1", timeout_s=5.0, username="cam", password=PASSWORD)
    try:
        await daemon.start()
        await camera.start()
        await heartbeats(camera, 20)  # warm up the connection and the handler
        floor = await heartbeats(camera, n)
        small, small_body = await pushes(camera, "S", n, 2048)
        large, large_body = await pushes(camera, "L", n, 200 * 1024)
        large_floor = await padded_heartbeats(camera, n, large_body)
        rss_mib = daemon.peak_rss_kib() / 1024
        saved = len(list((workdir / "images" / "in1").glob("*.jpg")))
    finally:
        await camera.close()
        await daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return Result(floor, small, small_body, large, large_body, large_floor, rss_mib, saved)


def report(n: int, r: Result) -> None:
    floor, small, small_body, large, large_body = r.heartbeat, r.small, r.small_body, r.large, r.large_body
    large_floor, saved, rss_mib = r.large_heartbeat, r.saved, r.rss_mib

    def p(xs: list[float], q: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(len(xs) * q))] * 1000

    print(f"camera push -> reply carrying the relay OPEN, {n} cars each, camera-only entry lane, daemon as its "
          f"own process, local HTTP")
    for label, xs, ref_label, ref in (
            (f"push, 2 KB picture ({small_body // 1024} KB body):", small, "heartbeat", floor),
            (f"push, 200 KB picture ({large_body // 1024} KB body):", large, "same-size heartbeat", large_floor)):
        base, med = statistics.median(ref) * 1000, statistics.median(xs) * 1000
        print(f"  {ref_label + ' (reference):':44} p50 {base:6.1f} ms   p99 {p(ref, 0.99):6.1f} ms")
        print(f"  {label:44} p50 {med:6.1f} ms   p99 {p(xs, 0.99):6.1f} ms   {med / base:5.1f}x the reference "
              f"(+{med - base:.1f} ms)")
    print(f"  pictures saved: {saved}; peak RSS of the daemon: {rss_mib:.1f} MiB")


async def figures(smoke: bool = False) -> dict[str, Figures]:
    n = 5 if smoke else 60
    r = await measure(n)
    report(n, r)
    return {"camera push": {
        "2 KB picture p50": Figure(statistics.median(r.small) * 1000, "ms", statistics.median(r.heartbeat) * 1000),
        "2 KB picture p99": Figure(percentile(r.small, 0.99) * 1000, "ms", percentile(r.heartbeat, 0.99) * 1000),
        "200 KB picture p50": Figure(statistics.median(r.large) * 1000, "ms",
                                     statistics.median(r.large_heartbeat) * 1000),
        "200 KB picture p99": Figure(percentile(r.large, 0.99) * 1000, "ms",
                                     percentile(r.large_heartbeat, 0.99) * 1000),
        "daemon peak RSS, camera-only lane": Figure(r.rss_mib, "MiB"),
    }}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cars", type=int, default=60)
    args = ap.parse_args()
    report(args.cars, asyncio.run(measure(args.cars)))


if __name__ == "__main__":
    main()
