"""HIL: the HTTP fuzzer (python -m hil.fuzz_http) at CI size — the same code against the daemon process on the
rig, every route it reports: no 5xx, no traceback in its log."""

from __future__ import annotations

import pytest

from hil.fuzz_http import run

pytestmark = pytest.mark.hil

REQUESTS = 500


@pytest.mark.timeout(90)
async def test_a_few_hundred_hostile_requests_at_every_route_get_no_5xx_and_log_no_traceback():
    report = await run(REQUESTS, seed=14)
    summary = "\n".join(report.lines())
    assert report.outcome.total == REQUESTS, summary
    assert report.outcome.server_errors == 0, summary
    assert report.tracebacks == 0, summary
    # the routes come from the running daemon: the platforms' callbacks and both lanes' cameras at least
    paths = {r.path for r in report.routes}
    assert {"/bolink", "/xft/notify", "/tdzn", "/healthz"} <= paths, summary
    assert {p for p in paths if p.startswith("/camera/")}, summary
    # the fuzz reached past the parsers: some requests were accepted, some refused, some malformed HTTP
    assert report.outcome.statuses["200"] > 0 and report.outcome.statuses["400"] > 0, summary
    assert report.ok
