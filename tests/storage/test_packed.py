"""Channels restored packed (format 3) behave exactly like channels loaded eagerly.

The source is ``data/snapshot-main-c03f069.msgpack`` (see
``test_snapshot_compat``): plain, rich, leased, acked, claimed, retracted,
delayed and expired messages in two channels. It is loaded (format 2,
eagerly), written again by today's writer (format 3), and that payload is
loaded both ways.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from backchannel.core.channel import ChannelState
from backchannel.core.events import ChannelPaused, MessageClaimed, MessagePosted, to_wire
from backchannel.core.packed import MESSAGE_ATTRIBUTES
from backchannel.core.records import Archived, Message
from backchannel.core.world import World
from backchannel.storage.state import (
    FORMAT,
    load_snapshot_payload,
    pack_channel,
    pack_registry,
    pack_snapshot,
    replay,
)

FIXTURE = Path(__file__).parent / "data" / "snapshot-main-c03f069.msgpack"
SECOND = 1_000_000
T0 = 1_800_000_000 * SECOND


def format3_payload() -> bytes:
    world, clock = load_snapshot_payload(FIXTURE.read_bytes())
    parts = [pack_channel(state) for state in world.channels.values()]
    return pack_snapshot(clock, pack_registry(world), parts)


def both_ways(payload: bytes) -> tuple[World, World]:
    lazy, _clock = load_snapshot_payload(payload)
    eager, _clock = load_snapshot_payload(payload, lazy=False)
    return lazy, eager


def assert_same_message(one: Message, other: Message) -> None:
    for field in fields(Message):
        assert getattr(one, field.name) == getattr(other, field.name), field.name


def assert_same_archive(one: list[Archived], other: list[Archived]) -> None:
    assert len(one) == len(other)
    for a, b in zip(one, other, strict=True):
        assert (a.archived_at, a.reason) == (b.archived_at, b.reason)
        assert_same_message(a.message, b.message)


def assert_same_channel(one: ChannelState, other: ChannelState) -> None:
    """Every message field for field, and every index built over them."""
    assert list(one.live) == list(other.live)
    for message_id, message in one.live.items():
        assert_same_message(message, other.live[message_id])
    assert [m.id for m in one._order[one._head :]] == [m.id for m in other._order[other._head :]]
    assert_same_archive(one.history, other.history)
    assert all(entry.message.removed for entry in one.history)
    assert not any(message.removed for message in one.live.values())
    assert list(one.archived) == list(other.archived)
    assert list(one.delayed) == list(other.delayed)
    for message_id, message in one.delayed.items():
        assert_same_message(message, other.delayed[message_id])
    assert [m.id for m in one._unclaimed] == [m.id for m in other._unclaimed]
    assert sorted(one._leases) == sorted(other._leases)
    assert sorted(one._due) == sorted(other._due)
    assert one._oldest_archived_at == other._oldest_archived_at
    assert (one.last_seq, one.applied_seq) == (other.last_seq, other.applied_seq)
    assert one.next_deadline() == other.next_deadline()
    assert one.config == other.config


def test_a_snapshot_is_written_in_format_3_and_loads_its_channels_packed() -> None:
    payload = format3_payload()
    assert FORMAT == 3
    lazy, eager = both_ways(payload)
    for channel_id, state in lazy.channels.items():
        assert state.packed is not None
        assert eager.channels[channel_id].packed is None
        for name in MESSAGE_ATTRIBUTES:  # nothing decoded yet: the slots are empty
            with pytest.raises(AttributeError):
                object.__getattribute__(state, name)


def test_a_packed_channel_answers_ids_leases_counts_and_deadlines_without_unpacking() -> None:
    lazy, eager = both_ways(format3_payload())
    for channel_id, state in lazy.channels.items():
        other = eager.channels[channel_id]
        packed = state.packed
        assert packed is not None
        assert sorted(packed.ids) == sorted([*other.live, *other.archived, *other.delayed])
        assert dict(packed.leases) == {
            m.lease_token: m.id for m in other.live.values() if m.lease_token is not None
        }
        assert state.live_count == len(other.live)
        claimed = {"jobs": 3, "short": 0}[other.config.name]  # leased, acked, claimed
        assert state.claimed_count == other.claimed_count == claimed
        assert state.deadlines() == other.deadlines()
        assert state.next_deadline() == other.next_deadline() is not None
        assert state.packed is packed  # none of that unpacked it


def test_a_channel_unpacked_on_first_read_equals_one_loaded_eagerly() -> None:
    lazy, eager = both_ways(format3_payload())
    for channel_id, state in lazy.channels.items():
        assert len(state.live) == len(eager.channels[channel_id].live)  # the first read
        assert state.packed is None
        assert_same_channel(state, eager.channels[channel_id])
        for message in state.live.values():  # ids shared with the column the hub indexes
            assert message.id in eager.channels[channel_id].live


def test_a_channel_never_unpacked_is_written_back_byte_for_byte() -> None:
    lazy, eager = both_ways(format3_payload())
    for channel_id, state in lazy.channels.items():
        assert pack_channel(state) == pack_channel(eager.channels[channel_id])
        assert state.packed is not None  # written from its chunks


def test_a_log_record_replayed_onto_a_packed_channel_lands_as_on_an_eager_one() -> None:
    lazy, eager = both_ways(format3_payload())
    jobs_id, short_id = list(eager.channels)
    jobs = eager.channels[jobs_id]
    plain = next(m for m in jobs.live.values() if m.content == "plain")
    seq = max(c.applied_seq for c in eager.channels.values())
    records = [
        (
            seq + 1,
            to_wire(MessageClaimed(jobs_id, plain.id, "a1", "w", "k1", T0 + 500, "tok", T0 + 900)),
        ),
        (seq + 2, to_wire(ChannelPaused(short_id, True, T0 + 501))),
        (
            seq + 3,
            to_wire(
                MessagePosted(
                    jobs_id, "m-new", "new", {}, T0 + 502, T0 + 9_000, "k1", None, None, None, []
                )
            ),
        ),
    ]
    assert replay(lazy, records) == replay(eager, records) == (3, T0 + 502)
    assert lazy.channels[jobs_id].packed is None  # its messages changed: unpacked
    short = lazy.channels[short_id]
    assert short.packed is not None  # a config change needs no message
    assert short.config.paused
    for channel_id, state in lazy.channels.items():
        assert pack_channel(state) == pack_channel(eager.channels[channel_id])
        assert_same_channel(state, eager.channels[channel_id])
    assert lazy.channels[jobs_id].live["m-new"].seq == jobs.last_seq


@pytest.mark.parametrize(
    ("name", "first"),
    [("jobs", 1), ("short", 0)],  # a row with a mention and one claimed; a plain row
)
def test_an_id_column_that_disagrees_with_the_rows_raises_on_unpacking(
    name: str, first: int
) -> None:
    lazy, _eager = both_ways(format3_payload())
    state = next(s for s in lazy.channels.values() if s.config.name == name)
    packed = state.packed
    assert packed is not None
    ids = list(packed.ids)
    ids[first], ids[first + 1] = ids[first + 1], ids[first]  # damage, or a writer's bug
    packed.ids = ids
    with pytest.raises(ValueError, match="id column"):
        state.unpack()
