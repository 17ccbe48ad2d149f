"""OutboxRelay over MemoryOutboxQueue, ScriptedPublisher and FakeClock: no real sleeping anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import timedelta

import pytest

from lanectl.service.outbox import Backoff, Outcome, OutboxRelay, TokenBucket
from tests.fakes import FakeClock, MemoryOutboxQueue, ScriptedPublisher

LOGGER = "lanectl.service.outbox"
RETRY = Outcome.retry("HTTP 503")
NO_JITTER = Backoff(base_s=1.0, cap_s=300.0, jitter=0.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue() -> MemoryOutboxQueue:
    return MemoryOutboxQueue()


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay, clock: FakeClock):
    task = asyncio.create_task(relay.run())
    await clock.settle()
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.done()


def add_items(queue: MemoryOutboxQueue, destination: str, n: int, kind: str = "entry") -> list[int]:
    return [queue.add(destination, kind, f"{destination}-{i}", {"i": i}) for i in range(n)]


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in zip(times, times[1:])]


# -- order ------------------------------------------------------------------------------------------------
async def test_items_go_out_in_id_order(clock, queue):
    ids = add_items(queue, "bolink", 6)
    pub = ScriptedPublisher(clock)
    relay = OutboxRelay(queue, {"bolink": pub}, clock, rate_per_s={"bolink": 1000})
    async with running(relay, clock):
        await clock.run_until(lambda: len(pub.calls) == 6)
    assert pub.keys == [f"bolink-{i}" for i in range(6)]
    assert queue.done_order == ids
    assert relay.destination_status("bolink").sent == 6


async def test_the_wait_for_each_done_mark_is_not_added_to_the_send_interval(clock, queue):
    """A send takes 50 ms and writing its "done" (a commit with fsync) 100 ms, at 10 uploads/s: waiting for each
    mark before the next send would space them 150 ms apart (a backlog drained 1.5x slower than the rate)."""
    add_items(queue, "webhook", 8)
    marked = queue.mark_done

    async def slow_mark(item_id, now):  # type: ignore[no-untyped-def]
        await clock.sleep(0.1)
        await marked(item_id, now)

    queue.mark_done = slow_mark  # type: ignore[method-assign]

    class SlowSend(ScriptedPublisher):
        async def publish(self, item):  # type: ignore[no-untyped-def]
            outcome = await super().publish(item)
            await clock.sleep(0.05)
            return outcome

    pub = SlowSend(clock)
    relay = OutboxRelay(queue, {"webhook": pub}, clock, rate_per_s={"webhook": 10}, batch=4)
    async with running(relay, clock):
        await clock.run_until(lambda: queue.pending_count() == 0)
    assert queue.done_order == sorted(queue.done_order) and len(queue.done_order) == 8
    # within a batch at the rate; between batches (4 items) the last mark is awaited before the next due()
    assert gaps([t for t, _ in pub.calls]) == [0.1, 0.1, 0.1, 0.15, 0.1, 0.1, 0.1], gaps([t for t, _ in pub.calls])


async def test_a_retried_item_holds_back_the_later_ones(clock, queue):
    entry = queue.add("bolink", "entry", "r1-entry")
    exit_ = queue.add("bolink", "exit", "r1-exit")
    other = queue.add("bolink", "entry", "r2-entry")
    script = {"r1-entry": iter([RETRY, RETRY, Outcome.done()])}
    pub = ScriptedPublisher(clock, lambda item: next(script.get(item.key, iter(())), Outcome.done()))
    relay = OutboxRelay(queue, {"bolink": pub}, clock, backoff=NO_JITTER)
    async with running(relay, clock):
        await clock.run_until(lambda: queue.pending_count() == 0)
    assert pub.keys == ["r1-entry", "r1-entry", "r1-entry", "r1-exit", "r2-entry"]
    assert queue.done_order == [entry, exit_, other]
    assert queue.row(entry).item.attempts == 2


async def test_one_failing_destination_does_not_hold_back_another(clock, queue):
    add_items(queue, "bolink", 2)
    add_items(queue, "webhook", 3)
    down = ScriptedPublisher(clock, lambda item: RETRY)
    up = ScriptedPublisher(clock)
    relay = OutboxRelay(queue, {"bolink": down, "webhook": up}, clock, backoff=NO_JITTER)
    async with running(relay, clock):
        await clock.advance(2.0)
    assert up.keys == ["webhook-0", "webhook-1", "webhook-2"]
    assert set(down.keys) == {"bolink-0"}  # never the second one while the first is failing
    assert queue.pending_count("bolink") == 2


async def test_a_head_waiting_from_a_previous_run_still_blocks(clock, queue):
    # after a restart the relay knows nothing; the store's due() keeps the order
    head = queue.add("bolink", "entry", "e", attempts=3, next_at=clock.now() + timedelta(seconds=12))
    tail = queue.add("bolink", "exit", "x")
    pub = ScriptedPublisher(clock)
    relay = OutboxRelay(queue, {"bolink": pub}, clock, idle_s=5.0)
    async with running(relay, clock):
        await clock.advance(11.0)
        assert pub.calls == []
        await clock.run_until(lambda: queue.pending_count() == 0)
    assert pub.keys == ["e", "x"]
    assert queue.done_order == [head, tail]
    # found at the first 5 s poll after it became due; the next one 1/5 s later (rate limit)
    assert [t - 1000.0 for t, _ in pub.calls] == pytest.approx([15.0, 15.2])


# -- backoff ----------------------------------------------------------------------------------------------
async def test_backoff_doubles_from_one_second_up_to_the_cap(clock, queue):
    (item,) = add_items(queue, "bolink", 1)
    pub = ScriptedPublisher(clock, lambda it: RETRY)
    relay = OutboxRelay(queue, {"bolink": pub}, clock, backoff=NO_JITTER)
    async with running(relay, clock):
        await clock.run_until(lambda: len(pub.calls) == 13)
    assert gaps([t for t, _ in pub.calls]) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    row = queue.row(item)
    assert row.item.attempts == 13 and row.error == "HTTP 503" and row.state == "pending"
    assert row.next_at == clock.now() + timedelta(seconds=300)


async def test_a_destination_with_its_own_backoff_retries_on_its_own_schedule(clock, queue):
    add_items(queue, "bolink", 1)
    add_items(queue, "site_bus", 1)
    pub = ScriptedPublisher(clock, lambda it: RETRY)
    relay = OutboxRelay(queue, {"bolink": pub, "site_bus": pub}, clock, backoff=NO_JITTER,
                        backoffs={"site_bus": Backoff(base_s=0.5, cap_s=2.0, jitter=0.0)})
    async with running(relay, clock):
        await clock.run_until(lambda: sum(k.startswith("site_bus") for k in pub.keys) == 6)
    site = [t for (t, _), k in zip(pub.calls, pub.keys) if k.startswith("site_bus")]
    bolink = [t for (t, _), k in zip(pub.calls, pub.keys) if k.startswith("bolink")]
    assert gaps(site) == [0.5, 1, 2, 2, 2]  # the lot's broker: capped at 2 s
    assert gaps(bolink)[:2] == [1, 2]  # the platform keeps the relay's backoff


async def test_jitter_shortens_delays_within_bounds_and_is_reproducible(clock):
    def delays(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [Backoff(jitter=0.2).delay(n, rng) for n in range(1, 12)]

    first = delays(7)
    assert first == delays(7)
    assert first != delays(8)
    for n, d in enumerate(first, start=1):
        raw = min(300.0, 2.0 ** (n - 1))
        assert 0.8 * raw <= d <= raw


async def test_jittered_retries_use_the_injected_rng(clock, queue):
    add_items(queue, "bolink", 1)
    pub = ScriptedPublisher(clock, lambda it: RETRY)
    relay = OutboxRelay(queue, {"bolink": pub}, clock, backoff=Backoff(jitter=0.5), rng=random.Random(1))
    async with running(relay, clock):
        await clock.run_until(lambda: len(pub.calls) == 5)
    rng = random.Random(1)
    expected = [Backoff(jitter=0.5).delay(n, rng) for n in range(1, 5)]
    assert gaps([t for t, _ in pub.calls]) == pytest.approx(expected)


async def test_retry_then_done(clock, queue):
    (item,) = add_items(queue, "bolink", 1)
    pub = ScriptedPublisher(clock, [RETRY])
    relay = OutboxRelay(queue, {"bolink": pub}, clock, backoff=NO_JITTER)
    async with running(relay, clock):
        await clock.run_until(lambda: queue.state(item) == "done")
    assert len(pub.calls) == 2 and pub.calls[1][1].attempts == 1
    assert clock.elapsed == pytest.approx(1.0)
    st = relay.destination_status("bolink")
    assert st.sent == 1 and st.failing_since is None and st.last_error == "HTTP 503"


async def test_a_raising_publisher_is_a_retry_with_the_exception_text(clock, queue):
    (item,) = add_items(queue, "bolink", 1)
    pub = ScriptedPublisher(clock, [RuntimeError("boom"), Outcome.done()])
    relay = OutboxRelay(queue, {"bolink": pub}, clock, backoff=NO_JITTER)
    async with running(relay, clock):
        await clock.advance(0.5)
        assert queue.row(item).error == "RuntimeError: boom"
        assert relay.destination_status("bolink").last_error == "RuntimeError: boom"
        await clock.run_until(lambda: queue.state(item) == "done")


async def test_a_publisher_returning_nonsense_is_a_retry(clock, queue):
    (item,) = add_items(queue, "bolink", 1)
    pub = ScriptedPublisher(clock, lambda it: None)  # type: ignore[arg-type, return-value]
    relay = OutboxRelay(queue, {"bolink": pub}, clock)
    async with running(relay, clock):
        await clock.advance(0.1)
    assert queue.row(item).error == "publisher returned None"
    assert queue.state(item) == "pending"


# -- dead letters -----------------------------------------------------------------------------------------
async def test_reject_is_dead_at_once_and_the_next_item_goes_on(clock, queue, caplog):
    bad, good = add_items(queue, "bolink", 2)
    pub = ScriptedPublisher(clock, [Outcome.reject("HTTP 422: plate missing")])
    relay = OutboxRelay(queue, {"bolink": pub}, clock, rate_per_s={"bolink": 1000})
    with caplog.at_level(logging.INFO, logger=LOGGER):
        async with running(relay, clock):
            await clock.run_until(lambda: queue.pending_count() == 0)
    assert clock.elapsed < 0.01
    assert queue.state(bad) == "dead" and queue.row(bad).error == "HTTP 422: plate missing"
    assert queue.state(good) == "done"
    assert pub.keys == ["bolink-0", "bolink-1"]
    st = relay.destination_status("bolink")
    assert (st.sent, st.rejected) == (1, 1)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "bolink-0" in errors[0].getMessage()


async def test_max_attempts_gives_up_and_moves_on(clock, queue):
    first, second = add_items(queue, "bolink", 2)
    pub = ScriptedPublisher(clock, lambda it: RETRY if it.id == first else Outcome.done())
    relay = OutboxRelay(queue, {"bolink": pub}, clock, backoff=NO_JITTER, max_attempts=3)
    async with running(relay, clock):
        await clock.run_until(lambda: queue.pending_count() == 0)
    assert queue.state(first) == "dead" and queue.row(first).error.startswith("gave up after 3 attempts")
    assert queue.state(second) == "done"
    assert pub.keys == ["bolink-0"] * 3 + ["bolink-1"]
    assert clock.elapsed == pytest.approx(1 + 2 + 0.2)  # two backoffs, then one rate-limit slot


# -- rate limit -------------------------------------------------------------------------------------------
async def test_rate_limit_spaces_sends_per_destination(clock, queue):
    add_items(queue, "bolink", 20)
    add_items(queue, "webhook", 6)
    bolink, webhook = ScriptedPublisher(clock), ScriptedPublisher(clock)
    relay = OutboxRelay(queue, {"bolink": bolink, "webhook": webhook}, clock, rate_per_s={"webhook": 2.0})
    async with running(relay, clock):
        await clock.run_until(lambda: queue.pending_count() == 0)
    b_times = [t for t, _ in bolink.calls]
    w_times = [t for t, _ in webhook.calls]
    assert b_times[-1] - b_times[0] == pytest.approx(19 / 5)  # default 5/s: 20 items in ≈ 20/5 s
    assert w_times[-1] - w_times[0] == pytest.approx(5 / 2)
    assert min(gaps(b_times)) >= 0.2 - 1e-9 and min(gaps(w_times)) >= 0.5 - 1e-9
    # never 10 or more in any 1 s window (Bolink's limit)
    assert max(sum(1 for u in b_times if t <= u < t + 1.0) for t in b_times) < 10


async def test_token_bucket_allows_a_burst_then_the_rate(clock):
    bucket = TokenBucket(clock, rate=4.0, burst=3)
    done: list[float] = []

    async def take_many() -> None:
        for _ in range(7):
            await bucket.take()
            done.append(clock.monotonic() - 1000.0)

    task = asyncio.create_task(take_many())
    await clock.run_until(task.done)
    assert done == pytest.approx([0, 0, 0, 0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError):
        TokenBucket(clock, rate=0)


async def test_token_bucket_does_not_add_late_wake_ups_to_the_interval():
    """Every sleep ends 3 ms late (a busy event loop): at 10/s, 21 sends still take 2 s, not 2.06 s."""
    from tests.fakes import FakeClock

    class LateClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            await super().sleep(seconds + 0.003 if seconds > 0 else seconds)

    clock = LateClock()
    bucket = TokenBucket(clock, rate=10.0)
    done: list[float] = []

    async def take_many() -> None:
        for _ in range(21):
            await bucket.take()
            done.append(clock.monotonic() - 1000.0)

    task = asyncio.create_task(take_many())
    await clock.run_until(task.done)
    assert done[-1] == pytest.approx(2.003)
    assert min(gaps(done)) >= 0.1 - 0.003 - 1e-9  # never faster than the rate by more than one wake-up's lateness


# -- wake-up ----------------------------------------------------------------------------------------------
async def test_wake_sends_a_new_item_without_waiting_for_the_poll(clock, queue):
    pub = ScriptedPublisher(clock)
    relay = OutboxRelay(queue, {"bolink": pub}, clock, idle_s=5.0)
    async with running(relay, clock):
        await clock.advance(1.3)  # the worker is idle, its poll is due at 5 s
        queue.add("bolink", "entry", "k1")
        relay.wake()
        await clock.settle()
        assert [(t - 1000.0, item.key) for t, item in pub.calls] == [(pytest.approx(1.3), "k1")]
        queue.add("bolink", "exit", "k2")
        relay.wake("webhook")  # another destination: no effect here
        relay.wake("bolink")
        await clock.settle()
        assert pub.keys == ["k1"]  # woken, but the rate limit (5/s) still spaces the sends
        await clock.advance(0.2)
        assert pub.keys == ["k1", "k2"]


async def test_without_wake_an_item_waits_for_the_next_poll(clock, queue):
    pub = ScriptedPublisher(clock)
    relay = OutboxRelay(queue, {"bolink": pub}, clock, idle_s=5.0)
    async with running(relay, clock):
        queue.add("bolink", "entry", "k1")
        await clock.advance(4.9)
        assert pub.calls == []
        await clock.advance(0.1)
        assert pub.keys == ["k1"]


async def test_wake_does_not_cut_short_a_backoff(clock, queue):
    add_items(queue, "bolink", 1)
    pub = ScriptedPublisher(clock, [RETRY])
    relay = OutboxRelay(queue, {"bolink": pub}, clock, backoff=Backoff(base_s=10.0, jitter=0.0))
    async with running(relay, clock):
        await clock.advance(1.0)
        queue.add("bolink", "exit", "late")
        relay.wake()
        await clock.advance(8.0)
        assert len(pub.calls) == 1
        await clock.advance(1.0)
        assert pub.keys == ["bolink-0", "bolink-0"]
        await clock.advance(0.2)
        assert pub.keys == ["bolink-0", "bolink-0", "late"]


async def test_retry_now_sends_the_waiting_head_at_once_and_the_items_behind_it(clock, queue):
    """The destination is back (the site bus reconnected): the item waiting out a 10 s backoff goes now."""
    add_items(queue, "site_bus", 1)
    pub = ScriptedPublisher(clock, [RETRY])
    relay = OutboxRelay(queue, {"site_bus": pub}, clock, backoff=Backoff(base_s=10.0, jitter=0.0))
    async with running(relay, clock):
        await clock.advance(1.0)
        queue.add("site_bus", "exit", "behind")
        assert len(pub.calls) == 1
        relay.retry_now("site_bus")
        await clock.advance(0.5)
        assert pub.keys == ["site_bus-0", "site_bus-0", "behind"]
        assert clock.elapsed < 2.0  # not the 10 s of the backoff


async def test_retry_now_also_skips_a_retry_time_stored_by_a_previous_run(clock, queue):
    queue.add("site_bus", "entry", "e", attempts=3, next_at=clock.now() + timedelta(seconds=60))
    pub = ScriptedPublisher(clock)
    relay = OutboxRelay(queue, {"site_bus": pub}, clock, idle_s=5.0)
    async with running(relay, clock):
        await clock.advance(1.0)
        assert pub.calls == []
        relay.retry_now("site_bus")
        relay.retry_now("nowhere")  # a destination this relay does not have: nothing
        await clock.advance(0.1)
        assert pub.keys == ["e"]


# -- logging and status ---------------------------------------------------------------------------------
async def test_failure_and_recovery_are_logged_once_each(clock, queue, caplog):
    add_items(queue, "bolink", 3)
    pub = ScriptedPublisher(clock, [RETRY] * 6 + [RuntimeError("reset by peer")] * 2)
    relay = OutboxRelay(queue, {"bolink": pub}, clock, backoff=NO_JITTER)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with running(relay, clock):
            await clock.advance(0.1)
            st = relay.destination_status("bolink")
            assert st.failing_since == clock.now() - timedelta(seconds=0.1)
            assert st.retry_at == st.failing_since + timedelta(seconds=1)
            started = st.failing_since
            await clock.run_until(lambda: queue.pending_count() == 0)
            st = relay.destination_status("bolink")
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2, messages
    assert messages[0][0] == "WARNING" and "failing" in messages[0][1] and "HTTP 503" in messages[0][1]
    assert messages[1][0] == "INFO" and "recovered" in messages[1][1]
    assert st.failing_since is None and st.retry_at is None and st.sent == 3
    assert st.last_error == "RuntimeError: reset by peer"
    assert st.last_sent_at == clock.now()
    assert (clock.now() - started).total_seconds() == pytest.approx(sum(2**n for n in range(8)) + 0.4)


async def test_a_broken_queue_is_logged_once_and_retried(clock, queue, caplog):
    add_items(queue, "bolink", 1)
    queue.fail_due = OSError("disk I/O error")
    pub = ScriptedPublisher(clock)
    relay = OutboxRelay(queue, {"bolink": pub}, clock, idle_s=5.0)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        async with running(relay, clock):
            await clock.advance(20.0)
            assert pub.calls == []
            queue.fail_due = None
            await clock.advance(5.0)
            assert pub.keys == ["bolink-0"]
    levels = [r.levelname for r in caplog.records if r.name == LOGGER]
    assert levels == ["ERROR", "INFO"]


async def test_status_is_plain_data_for_the_control_socket(clock, queue):
    add_items(queue, "bolink", 1)
    relay = OutboxRelay(queue, {"bolink": ScriptedPublisher(clock, [RETRY])}, clock, backoff=NO_JITTER)
    async with running(relay, clock):
        await clock.advance(0.5)
        assert relay.status() == {"bolink": {
            "sent": 0, "rejected": 0, "last_error": "HTTP 503", "failing_since": clock.now() - timedelta(seconds=0.5),
            "last_sent_at": None, "retry_at": clock.now() + timedelta(seconds=0.5)}}


async def test_cancelling_run_stops_every_worker(clock, queue):
    pub_a, pub_b = ScriptedPublisher(clock), ScriptedPublisher(clock)
    relay = OutboxRelay(queue, {"a": pub_a, "b": pub_b}, clock)
    before = len(asyncio.all_tasks())
    async with running(relay, clock):
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert {"outbox:a", "outbox:b"} <= names
    await clock.settle()
    assert len(asyncio.all_tasks()) == before
    assert clock.sleeping == 0


async def test_system_clock_is_aware_in_the_lot_zone():
    from zoneinfo import ZoneInfo

    from lanectl.adapters.clock import SystemClock

    clock = SystemClock(ZoneInfo("Asia/Shanghai"))
    now = clock.now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(hours=8)
    first = clock.monotonic()
    await clock.sleep(0)
    await clock.sleep(-1)  # a deadline already passed: returns at once
    assert clock.monotonic() >= first
