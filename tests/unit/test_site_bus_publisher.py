"""The site bus publisher sends an entry as two messages: the car's retained state (lanectl/<park>/<booth>/inside/<id>)
and the numbered log message (…/records). The bus may drop between the two; the outbox then tries the item again.
The retained state goes first, so a retry repeats only that idempotent overwrite and the numbered log carries each
message once (a duplicate there was seen under load: the log went first and the state's failure resent it)."""

from __future__ import annotations

from datetime import datetime, timezone

from lanectl.service.outbox import OutboxItem, PublishResult
from lanectl.service.site_bus import BusUnavailable
from lanectl.service.site_replication import SiteBusPublisher


class DropsAfter:
    """A bus that takes `n` publishes, then is down until `back()`."""

    def __init__(self, n: int) -> None:
        self.left, self.sent = n, []
        self.connected = True

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        if self.left == 0:
            self.connected = False
            raise BusUnavailable("dropped")
        self.left -= 1
        self.sent.append((topic, retain))

    def back(self) -> None:
        self.left, self.connected = 10, True


def entry_item(seq: int) -> OutboxItem:
    payload = {"booth": "A", "seq": seq, "kind": "entry", "record_id": f"r{seq}", "plate": "粤B12345",
               "status": "inside"}
    return OutboxItem(seq, "site_bus", "entry", f"entry:r{seq}:{seq}", payload, 0, datetime.now(timezone.utc))


async def test_an_entry_cut_off_between_its_two_messages_puts_its_numbered_message_on_the_log_once():
    bus = DropsAfter(1)
    publisher = SiteBusPublisher(bus, "p1", "A")
    first = await publisher.publish(entry_item(7))
    assert first.result is PublishResult.RETRY
    bus.back()
    again = await publisher.publish(entry_item(7))
    assert again.result is PublishResult.DONE
    records = [t for t, _ in bus.sent if t == "lanectl/p1/A/records"]
    states = [t for t, retain in bus.sent if t == "lanectl/p1/A/inside/r7" and retain]
    assert records == ["lanectl/p1/A/records"] and len(states) == 2  # the log once; the retained state overwritten
