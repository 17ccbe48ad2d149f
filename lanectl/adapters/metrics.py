"""/metrics: the daemon's figures in the Prometheus text format (prometheus-client), served on the LAN face only.

Two kinds of series (docs/operations.md "Metrics" lists each one):
- counters and histograms fed where things happen: the service layer records through the `Metrics` port
  (service/ports.py) — decisions, plate-to-command latency, barrier commands, device faults and how long they
  lasted, settlement attempts, late payments — and the HTTP listeners count their requests;
- gauges read at scrape time from what the daemon holds now (`Figures`: outbox depth and oldest age per
  destination, device faults still open, the database's size, storage health), gathered by the daemon before
  each scrape so nothing here touches the store or the lanes.

Each daemon owns its registry (never prometheus_client's global one): tests build several daemons in one process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Optional

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# a plate read to the barrier's answer: the module answers in tens of milliseconds; seconds mean a slow bus
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
# a device fault: a blip of a few seconds to a day without a camera
FAULT_BUCKETS = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


@dataclass
class Figures:
    """What the gauges show, as the daemon has it at the scrape."""

    outbox: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # destination -> (pending, dead, age s)
    faults: dict[tuple[str, str], bool] = field(default_factory=dict)  # (lane, device) -> faulted now
    database_bytes: int = 0
    storage_ok: bool = True
    # housekeeping job -> (last run ok: 1/0, or None before its first run; unix time of that run; failures since start)
    jobs: dict[str, tuple[Optional[bool], Optional[float], int]] = field(default_factory=dict)


class _Gauges(Collector):
    """The scrape-time gauges: the Figures set last (the scrape handler sets them right before rendering)."""

    def __init__(self) -> None:
        self.figures = Figures()

    def collect(self) -> Iterable[Metric]:
        f = self.figures
        pending = GaugeMetricFamily("lanectl_outbox_pending", "Outbox items waiting to be sent, per destination",
                                    labels=["destination"])
        dead = GaugeMetricFamily("lanectl_outbox_dead", "Outbox items given up on (need an operator), per "
                                 "destination", labels=["destination"])
        age = GaugeMetricFamily("lanectl_outbox_oldest_age_seconds", "Age of the oldest pending outbox item "
                                "(0 when none is pending), per destination", labels=["destination"])
        for destination, (n, n_dead, oldest_s) in sorted(f.outbox.items()):
            pending.add_metric([destination], n)
            dead.add_metric([destination], n_dead)
            age.add_metric([destination], oldest_s)
        active = GaugeMetricFamily("lanectl_device_fault_active", "1 while the lane's device is faulted",
                                   labels=["lane", "device"])
        for (lane, device), faulted in sorted(f.faults.items()):
            active.add_metric([lane, device], 1 if faulted else 0)
        size = GaugeMetricFamily("lanectl_database_size_bytes", "The SQLite database with its write-ahead log")
        size.add_metric([], f.database_bytes)
        storage = GaugeMetricFamily("lanectl_storage_ok", "1 while the database can be written")
        storage.add_metric([], 1 if f.storage_ok else 0)
        job_ok = GaugeMetricFamily("lanectl_housekeeping_last_ok", "1 if the job's last run succeeded, 0 if it "
                                   "failed (absent before its first run)", labels=["job"])
        job_at = GaugeMetricFamily("lanectl_housekeeping_last_run_timestamp_seconds", "When the job last ran "
                                   "(unix time)", labels=["job"])
        job_failed = GaugeMetricFamily("lanectl_housekeeping_failures", "Failed runs of the job since the daemon "
                                       "started", labels=["job"])
        for job, (ok, ran_at, failures) in sorted(f.jobs.items()):
            if ok is not None:
                job_ok.add_metric([job], 1 if ok else 0)
            if ran_at is not None:
                job_at.add_metric([job], ran_at)
            job_failed.add_metric([job], failures)
        return [pending, dead, age, active, size, storage, job_ok, job_at, job_failed]


class PrometheusMetrics:
    """The `Metrics` port (service/ports.py) over a registry of its own, plus the HTTP request counter and the
    scrape-time gauges; `handler(figures)` is the aiohttp GET handler that renders the text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._decisions = Counter("lanectl_decisions", "Records a lane decided, by kind (entry, exit, release) and "
                                  "outcome (the record's status as decided)", ["lane", "kind", "outcome"],
                                  registry=r)
        self._latency = Histogram("lanectl_plate_to_command_seconds", "From a plate read to the barrier module's "
                                  "answer to the OPEN it caused", ["lane"], buckets=LATENCY_BUCKETS, registry=r)
        self._commands = Counter("lanectl_barrier_commands", "Barrier commands by result (ok, refused: a car under "
                                 "the arm, failed: not delivered, no_device)", ["lane", "command", "result"],
                                 registry=r)
        self._faults = Counter("lanectl_device_faults", "Device faults that began", ["lane", "device"], registry=r)
        self._fault_s = Histogram("lanectl_device_fault_duration_seconds", "How long device faults lasted (counted "
                                  "when they end)", ["lane", "device"], buckets=FAULT_BUCKETS, registry=r)
        self._attempts = Counter("lanectl_settlement_attempts", "Payment attempts reaching a status (charging when "
                                 "created, then pending / fallback / paid / failed / skipped)", ["provider", "status"],
                                 registry=r)
        self._late = Counter("lanectl_late_payments", "Payments confirmed after the car stopped waiting for them",
                             ["provider"], registry=r)
        self._http = Counter("lanectl_http_requests", "HTTP requests by listener face, route (the route's pattern, "
                             "'unmatched' for none) and status", ["face", "route", "status"], registry=r)
        self.gauges = _Gauges()
        r.register(self.gauges)

    # --- the Metrics port -------------------------------------------------------------------------------------
    def decision(self, lane_id: str, kind: str, outcome: str) -> None:
        self._decisions.labels(lane_id, kind, outcome or "unknown").inc()

    def plate_to_command(self, lane_id: str, seconds: float) -> None:
        self._latency.labels(lane_id).observe(seconds)

    def barrier_command(self, lane_id: str, command: str, result: str) -> None:
        self._commands.labels(lane_id, command, result).inc()

    def device_fault(self, lane_id: str, device: str) -> None:
        self._faults.labels(lane_id, device).inc()

    def device_recovered(self, lane_id: str, device: str, seconds: float) -> None:
        self._fault_s.labels(lane_id, device).observe(seconds)

    def settlement_attempt(self, provider: str, status: str) -> None:
        self._attempts.labels(provider, status).inc()

    def late_payment(self, provider: str) -> None:
        self._late.labels(provider).inc()

    # --- the listeners ----------------------------------------------------------------------------------------
    def http_request(self, face: str, route: str, status: int) -> None:
        self._http.labels(face, route, str(status)).inc()

    def handler(self, figures: Callable[[], Awaitable[Figures]]
                ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def scrape(_request: web.Request) -> web.Response:
            self.gauges.figures = await figures()
            body = generate_latest(self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        return scrape
