"""The compact message (issue 15) behaves exactly like the plain one did.

A message shares its empties (metadata, mentions, acks), holds its claim
in one optional :class:`Claim`, and is written as a row trimmed of
trailing defaults. These tests pin what that must not change: rows
round-trip every shape of message, a capture still reads the channel as
it was (acks and lease changes replace or are saved, never leak), and
the per-message memory stays within issue 15's budget.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from backchannel.core.channel import ChannelState
from backchannel.core.events import ChannelEvent
from backchannel.core.records import (
    EMPTY_METADATA,
    MESSAGE_FIELDS,
    Claim,
    KeyRecord,
    Message,
    message_from_row,
    message_row,
)
from backchannel.core.world import World
from backchannel.storage.state import pack_channel

SECOND = 1_000_000
T0 = 1_800_000_000 * SECOND


def _channel() -> tuple[World, KeyRecord, ChannelState]:
    world = World()
    _raw, minted = world.decide_mint("owner", T0)
    world.apply_global(minted, 1)
    key = world.keys[minted.key_id]
    spec: dict[str, Any] = {
        "name": "jobs",
        "mode": "claimable",
        "access": "open",
        "discoverable": True,
        "description": "",
        "metadata_schema": {},
        "pinned_message": None,
        "ttl_seconds": 3_600,
        "retention_days": 7,
        "max_messages": None,
        "max_writes_per_minute": None,
        "webhook_url": None,
        "webhook_secret": None,
    }
    created = world.decide_create_channel(key, spec, [], T0)
    world.apply_global(created, 2)
    return world, key, world.channels[created.channel_id]


def _post(state: ChannelState, key: KeyRecord, at: int, **fields: Any) -> Message:
    values: dict[str, Any] = {
        "content": "work",
        "metadata": {},
        "actor": None,
        "actor_label": None,
        "mentions": [],
    }
    values.update(fields)
    event = state.decide_post(key_id=key.key_id, now=at, **values)
    state.apply(event)
    return state.live.get(event.message_id) or state.delayed[event.message_id]


def _apply(state: ChannelState, event: ChannelEvent | None) -> None:
    assert event is not None
    state.apply(event)


def _fields(message: Message) -> dict[str, Any]:
    return {name: getattr(message, name) for name in (*MESSAGE_FIELDS, "removed")}


def test_a_plain_post_shares_its_empties_and_holds_no_claim() -> None:
    _w, key, state = _channel()
    first = _post(state, key, T0)
    second = _post(state, key, T0 + 1)
    assert first.metadata is EMPTY_METADATA
    assert second.metadata is EMPTY_METADATA
    assert first.mentions == ()
    assert first.acks == ()
    assert first.claim is None
    assert (first.claimed_by_id, first.claimed_at, first.lease_token) == (None, None, None)
    assert EMPTY_METADATA == {}  # nobody wrote into the shared dict
    tagged = _post(state, key, T0 + 2, metadata={"k": 1})
    assert tagged.metadata == {"k": 1}


def test_acks_are_replaced_never_changed_in_place() -> None:
    _w, key, state = _channel()
    message = _post(state, key, T0)
    _apply(state, state.decide_ack(message, ("a1", "one"), T0 + 1))
    row = message_row(message)
    _apply(state, state.decide_ack(message, ("a2", "two"), T0 + 2))
    assert row[MESSAGE_FIELDS.index("acks")] == (["a1", "one", T0 + 1],)
    assert message.acks == (["a1", "one", T0 + 1], ["a2", "two", T0 + 2])
    assert message.acked_by("a2")
    assert not message.acked_by("a3")


def test_a_claim_is_one_record_that_leases_and_acks_change() -> None:
    _w, key, state = _channel()
    message = _post(state, key, T0)
    _status, event = state.decide_claim(message, ("a1", "w"), key.key_id, T0 + 1, 60 * SECOND)
    _apply(state, event)
    claim = message.claim
    assert claim is not None
    assert claim.lease_token is not None
    assert claim == Claim("a1", "w", key.key_id, T0 + 1, claim.lease_token, T0 + 1 + 60 * SECOND)
    assert (message.claimed_by_id, message.claimed_by_name) == ("a1", "w")
    assert (message.claimed_by_key_id, message.claimed_at) == (key.key_id, T0 + 1)
    token = claim.lease_token
    _apply(state, state.decide_heartbeat(token, message.id, key.key_id, T0 + 2, 90 * SECOND))
    assert message.lease_expires_at == T0 + 2 + 90 * SECOND
    _apply(state, state.decide_ack(message, ("a1", "w"), T0 + 3))  # the holder's ack ends it
    assert message.claim is not None
    assert message.claimed_by_id == "a1"
    assert message.lease_token is None
    assert message.lease_expires_at is None
    assert state.next_deadline() == message.expires_at  # no lease left to expire


def test_rows_round_trip_every_shape_of_message() -> None:
    world, key, state = _channel()
    _raw, minted = world.decide_mint("other", T0)
    world.apply_global(minted, 3)
    plain = _post(state, key, T0)
    rich = _post(
        state,
        key,
        T0 + 1,
        metadata={"k": [1, 2]},
        actor=("a9", "bot"),
        actor_label="label",
        mentions=[["a2", "two"]],
    )
    leased = _post(state, key, T0 + 2)
    _status, event = state.decide_claim(leased, ("a1", "w"), key.key_id, T0 + 3, 60 * SECOND)
    _apply(state, event)
    acked = _post(state, key, T0 + 4)
    _apply(state, state.decide_ack(acked, ("a2", "two"), T0 + 5))
    held = _post(state, key, T0 + 6)
    _status, event = state.decide_claim(held, ("a1", "w"), key.key_id, T0 + 7, None)
    _apply(state, event)
    delayed = _post(state, key, T0 + 8, delay_us=60 * SECOND)
    for message in (plain, rich, leased, acked, held, delayed):
        row = message_row(message)
        again = message_from_row(list(row))
        assert _fields(again) == _fields(message)
        assert again.claim == message.claim
    assert len(message_row(plain)) == 10  # trailing defaults left out
    assert len(message_row(acked)) == len(MESSAGE_FIELDS)
    assert message_from_row(list(message_row(plain))).metadata is EMPTY_METADATA
    strings: dict[str, str] = {}
    one = message_from_row([*message_row(rich)], strings)
    two = message_from_row([*message_row(rich)], strings)
    assert one.author_key_id is two.author_key_id
    assert one.actor_name is two.actor_name


def test_a_capture_still_reads_leases_and_acks_as_they_were() -> None:
    _w, key, state = _channel()
    message = _post(state, key, T0)
    other = _post(state, key, T0 + 1)
    _apply(state, state.decide_ack(other, ("a2", "two"), T0 + 2))
    _status, event = state.decide_claim(message, ("a1", "w"), key.key_id, T0 + 3, 60 * SECOND)
    _apply(state, event)
    before = pack_channel(state)
    capture = state.begin_capture()
    assert message.lease_token is not None
    _apply(
        state,
        state.decide_heartbeat(message.lease_token, message.id, key.key_id, T0 + 4, 90 * SECOND),
    )
    _apply(state, state.decide_ack(message, ("a1", "w"), T0 + 5))
    _apply(state, state.decide_ack(other, ("a3", "three"), T0 + 6))
    during = capture.rows(0, len(capture.messages))
    state.end_capture()
    assert pack_channel(state) != before
    saved = {row[0]: row for row in during}
    acks = MESSAGE_FIELDS.index("acks")
    lease = MESSAGE_FIELDS.index("lease_expires_at")
    assert saved[other.id][acks] == (["a2", "two", T0 + 2],)
    assert saved[message.id][acks] == ()
    assert saved[message.id][lease] == T0 + 3 + 60 * SECOND


def test_a_live_message_costs_at_most_its_budget_in_the_core() -> None:
    """Issue 15: at most 500 bytes beyond content and metadata, runtime included.

    The core's share, measured here, is the message object, its id and
    times, and its entries in the live dict and the seq-ordered lists; the
    hub's id index adds one dict entry (about 40 bytes) on top.
    """
    _w, key, state = _channel()
    count = 4_096
    contents = [f"{i:012d}".ljust(300, "x") for i in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i, content in enumerate(contents):
            state.apply(
                state.decide_post(
                    content=content,
                    metadata={},
                    key_id=key.key_id,
                    now=T0 + 1_000 + i,
                    actor=None,
                    actor_label=None,
                    mentions=[],
                )
            )
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_message = held / count
    assert len(state.live) == count
    assert per_message <= BUDGET_IN_CORE, f"{per_message:.0f} bytes per message"


BUDGET_IN_CORE = 420  # measured 389 on CPython 3.11; a list of acks per message adds 56
