"""Snapshots written before compact messages (issue 15) still load, field for field.

``data/snapshot-main-c03f069.msgpack`` is a snapshot payload written by
main at commit c03f069 (full 20-field message rows, lists for acks and
mentions, six claim fields): two channels holding a plain message, one
with metadata, an actor, a label and a mention, a leased one, one acked by
two actors after its claim, one claimed without a lease, a retracted one,
a delayed one, and an expired one in history.
"""

from __future__ import annotations

from pathlib import Path

import msgpack

from backchannel.core.records import EMPTY_METADATA, Message, message_row
from backchannel.storage.state import (
    load_snapshot_payload,
    pack_channel,
    pack_registry,
    pack_snapshot,
)

FIXTURE = Path(__file__).parent / "data" / "snapshot-main-c03f069.msgpack"
SECOND = 1_000_000
T0 = 1_800_000_000 * SECOND


def _row_bytes(payload: bytes) -> int:
    """Bytes of the packed chunks of live rows in a snapshot payload."""
    stream = msgpack.Unpacker(raw=False, strict_map_key=False)
    stream.feed(payload)
    header = next(stream)
    next(stream)  # the registry
    parts = [next(stream) for _ in range(header["channels"])]
    if header["format"] == 2:  # one map per channel
        return sum(len(chunk) for part in parts for chunk in part["live"])
    return sum(len(chunk) for _small, live, _history in parts for chunk in live)


def _by_content(messages: list[Message]) -> dict[str, Message]:
    return {m.content: m for m in messages}


def test_a_snapshot_written_by_main_loads_every_message_field() -> None:
    world, clock = load_snapshot_payload(FIXTURE.read_bytes())
    assert clock == T0 + 100 * SECOND
    jobs, short = world.channels.values()
    live = _by_content(list(jobs.live.values()))
    assert set(live) == {"plain", "rich", "leased", "acked", "claimed"}
    worker = next(a for a in world.actors.values() if a.name == "worker")
    second = next(a for a in world.actors.values() if a.name == "second")

    plain = live["plain"]
    assert plain.metadata is EMPTY_METADATA
    assert plain.mentions == ()
    assert plain.acks == ()
    assert (plain.claim, plain.deliveries, plain.visible_at, plain.seq) == (None, 0, None, 1)

    rich = live["rich"]
    assert rich.metadata == {"k": [1, 2], "n": {"deep": True}}
    assert (rich.actor_id, rich.actor_name, rich.actor_label) == (worker.id, "worker", "bot-1")
    assert rich.mentions == ([second.id, "second"],)

    leased = live["leased"]
    assert leased.claimed_by_id == worker.id
    assert leased.claimed_by_name == "worker"
    assert leased.claimed_at == T0 + 10
    assert leased.lease_expires_at == T0 + 10 + 60 * SECOND
    assert leased.lease_token is not None
    assert leased.deliveries == 1
    assert jobs.next_deadline() == leased.lease_expires_at  # the lease heap was rebuilt

    acked = live["acked"]
    assert acked.claimed_by_id == second.id
    assert acked.lease_token is None
    assert acked.acks == ([second.id, "second", T0 + 11], [worker.id, "worker", T0 + 12])

    claimed = live["claimed"]
    assert claimed.claimed_by_id == worker.id
    assert claimed.lease_token is None
    assert [m.content for m in jobs.page(0, 10, "unclaimed")] == ["plain", "rich"]

    (retracted,) = jobs.history
    assert (retracted.message.content, retracted.reason) == ("retracted", "retracted")
    (delayed,) = jobs.delayed.values()
    assert (delayed.content, delayed.seq, delayed.visible_at) == ("later", 0, T0 + 7 + 600 * SECOND)

    (expired,) = short.history
    assert (expired.message.content, expired.reason) == ("gone", "expired")
    assert [m.content for m in short.live.values()] == ["stays"]


def test_a_main_snapshot_survives_a_round_trip_through_the_new_writer() -> None:
    world, clock = load_snapshot_payload(FIXTURE.read_bytes())
    payload = pack_snapshot(
        clock, pack_registry(world), [pack_channel(s) for s in world.channels.values()]
    )
    again, _clock = load_snapshot_payload(payload)
    # plain rows lose their trailing defaults (format 3 adds ids and counts beside them)
    assert _row_bytes(payload) < _row_bytes(FIXTURE.read_bytes())
    for channel_id, state in world.channels.items():
        other = again.channels[channel_id]
        assert pack_channel(other) == pack_channel(state)
        for old, new in zip(state.iter_live(), other.iter_live(), strict=True):
            assert message_row(new) == message_row(old)
        assert [e.message.id for e in other.history] == [e.message.id for e in state.history]
        assert list(other.delayed) == list(state.delayed)
