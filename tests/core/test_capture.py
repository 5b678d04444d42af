"""Copy-on-write captures read a channel as it was at one instant."""

from __future__ import annotations

from typing import Any

from backchannel.core.channel import ChannelState
from backchannel.core.records import KeyRecord
from backchannel.core.world import World
from backchannel.storage.state import (
    PartColumns,
    history_rows,
    load_snapshot_payload,
    pack_channel,
    pack_channel_part,
    pack_registry,
    pack_rows,
    pack_snapshot,
)

SECOND = 1_000_000
T0 = 1_800_000_000 * SECOND


def _world(max_messages: int | None = None) -> tuple[World, KeyRecord, ChannelState]:
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
        "ttl_seconds": 600,
        "retention_days": 1,
        "max_messages": max_messages,
        "max_writes_per_minute": None,
        "webhook_url": None,
        "webhook_secret": None,
    }
    created = world.decide_create_channel(key, spec, [], T0)
    world.apply_global(created, 2)
    return world, key, world.channels[created.channel_id]


def _post(state: ChannelState, key: KeyRecord, n: int, at: int) -> list[str]:
    ids = []
    for i in range(n):
        event = state.decide_post(
            content=f"m{i}",
            metadata={},
            key_id=key.key_id,
            now=at + i,
            actor=None,
            actor_label=None,
            mentions=[],
        )
        state.apply(event)
        ids.append(event.message_id)
    return ids


def _pack_capture(state: ChannelState, capture: Any) -> bytes:
    columns = PartColumns()
    rows = capture.rows(0, len(capture.messages))
    columns.add_live(rows)
    archived = history_rows(capture, 0, len(capture.history))
    columns.add_history(archived)
    live = [pack_rows(rows)] if rows else []  # as pack_channel: no chunk for no rows
    history = [pack_rows(archived)] if archived else []
    return pack_channel_part(capture, live, history, columns)


def test_capture_ignores_every_change_made_while_it_is_open() -> None:
    _w, key, state = _world()
    ids = _post(state, key, 6, T0)
    state.apply(state.decide_retract(state.live[ids[0]], key.key_id, T0 + 10))
    before = pack_channel(state)

    capture = state.begin_capture()
    now = T0 + 20
    _status, claim = state.decide_claim(state.live[ids[1]], ("a1", "w"), key.key_id, now, None)
    assert claim is not None
    state.apply(claim)
    ack = state.decide_ack(state.live[ids[2]], ("a2", "x"), now)
    assert ack is not None
    state.apply(ack)
    state.apply(state.decide_retract(state.live[ids[3]], key.key_id, now))
    _post(state, key, 3, now)
    for event in state.due_events(T0 + 600 * SECOND + 2):  # the first messages expire
        state.apply(event)
    during = _pack_capture(state, capture)
    state.end_capture()

    assert during == before
    assert pack_channel(state) != before


def test_trimmed_messages_stay_in_an_open_capture() -> None:
    _w, key, state = _world(max_messages=3)
    _post(state, key, 3, T0)
    before = pack_channel(state)
    capture = state.begin_capture()
    _post(state, key, 5, T0 + 100)  # trims every message the capture holds
    assert len(state.live) == 3
    during = _pack_capture(state, capture)
    state.end_capture()
    assert during == before


def test_a_capture_round_trips_through_a_snapshot() -> None:
    world, key, state = _world()
    ids = _post(state, key, 4, T0)
    event = state.decide_ack(state.live[ids[0]], ("a1", "w"), T0 + 5)
    assert event is not None
    state.apply(event, 7)
    payload = pack_snapshot(T0, pack_registry(world), [pack_channel(state)])
    loaded, clock = load_snapshot_payload(payload)
    again = loaded.channels[state.config.id]
    assert clock == T0
    assert pack_channel(again) == pack_channel(state)
    assert [m.id for m in again.iter_live()] == ids
    assert again.applied_seq == 7
