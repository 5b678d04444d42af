"""The pure core of issue 12: delayed visibility, deliveries, dead-letter moves, redrive;
and that snapshots plus replay rebuild them exactly, even when a snapshot
holds one channel after a move and the other before it."""

from __future__ import annotations

from typing import Any

from backchannel.core import delivery
from backchannel.core.channel import ChannelState
from backchannel.core.delivery_events import MessageDeadLettered, MessagesVisible
from backchannel.core.events import Event, MessageReleased, to_wire
from backchannel.core.world import World
from backchannel.storage.state import (
    load_snapshot_payload,
    pack_channel,
    pack_registry,
    pack_snapshot,
    replay,
)
from tests.core.test_channel_state import SECOND, T0, Setup, claim, make, post, summary


def second_channel(s: Setup, name: str = "dlq") -> ChannelState:
    spec = {**_spec(s.state), "name": name}
    created = s.world.decide_create_channel(s.owner, spec, [], T0)
    s.world.apply_global(created, s.next_seq())
    return s.world.channels[created.channel_id]


def _spec(state: ChannelState) -> dict[str, Any]:
    config = state.config
    names = (
        "mode access discoverable description metadata_schema pinned_message ttl_seconds "
        "retention_days max_messages max_writes_per_minute webhook_url webhook_secret"
    ).split()
    return {name: getattr(config, name) for name in names}


class Log:
    """Every event applied, with its seq, through ``World.apply`` (as replay does)."""

    def __init__(self, s: Setup) -> None:
        self.s = s
        self.records: list[tuple[int, list[Any]]] = []

    def apply(self, event: Event) -> int:
        seq = self.s.next_seq()
        self.s.world.apply(event, seq)
        self.records.append((seq, to_wire(event)))
        return seq


def delayed_post(s: Setup, now: int, delay: int, content: str = "later") -> str:
    event = s.state.decide_post(
        content=content,
        metadata={},
        key_id=s.owner.key_id,
        now=now,
        actor=None,
        actor_label=None,
        mentions=[],
        delay_us=delay,
    )
    s.apply(event)
    return event.message_id


def test_a_delayed_message_takes_its_seq_when_visible_and_its_ttl_from_then() -> None:
    s = make(ttl_seconds=100)
    hidden = delayed_post(s, T0, 30 * SECOND)
    assert s.state.live == {}
    assert s.state.next_deadline() == T0 + 30 * SECOND
    first = post(s, s.owner, T0 + SECOND)
    assert s.state.due_events(T0 + 30 * SECOND - 1) == []
    late = T0 + 31 * SECOND  # the actor ran a second late
    events = s.state.due_events(late)
    assert events == [MessagesVisible(s.state.config.id, [hidden], late)]
    s.apply(events[0])
    message = s.state.live[hidden]
    assert (first.seq, message.seq) == (1, 2)
    assert message.visible_at == late
    assert message.expires_at == late + 100 * SECOND
    assert [m.id for m in s.state.iter_live(1)] == [hidden]
    assert s.state.first_seq_after_time(late - 1) == 1


def test_deliveries_count_claims_that_began() -> None:
    s = make()
    message = post(s, s.owner, T0)
    claim(s, s.owner, message, T0)
    claim(s, s.owner, message, T0)  # the same actor again: no new claim
    assert message.deliveries == 1
    s.apply(MessageReleased(s.state.config.id, message.id, T0))
    claim(s, s.other, message, T0)
    assert message.deliveries == 2


def test_a_dead_letter_move_and_its_replay_from_any_snapshot_mix() -> None:
    s = make()
    dlq = second_channel(s)
    s.state.config.max_deliveries = 1
    s.state.config.dead_letter_channel = dlq.config.id
    message = post(s, s.owner, T0, metadata={"k": 1})
    claim(s, s.owner, message, T0)
    assert delivery.dead_letter_due(s.state, message)
    # both channels as they were before the move
    registry = pack_registry(s.world)
    source_before, target_before = pack_channel(s.state), pack_channel(dlq)
    log = Log(s)
    event = delivery.decide_dead_letter(s.state, message, "released", dlq, T0 + SECOND)
    assert isinstance(event, MessageDeadLettered)
    log.apply(event)
    assert s.state.live == {}
    assert s.state.archived[message.id].reason == "dead_lettered"
    [copy] = dlq.live.values()
    assert copy.metadata["dead_letter"]["reason"] == "released"
    assert copy.metadata["k"] == 1
    live = (summary(s.state), summary(dlq))
    source_after, target_after = pack_channel(s.state), pack_channel(dlq)
    for parts in (
        (source_before, target_before),
        (source_after, target_before),
        (source_before, target_after),
        (source_after, target_after),
    ):
        world, _clock = load_snapshot_payload(pack_snapshot(T0, registry, list(parts)))
        replay(world, log.records)
        replay(world, log.records)  # twice: idempotent
        rebuilt = (
            summary(world.channels[s.state.config.id]),
            summary(world.channels[dlq.config.id]),
        )
        assert rebuilt == live
        assert len(world.channels[dlq.config.id].live) == 1


def test_redrive_returns_the_message_without_its_note() -> None:
    s = make()
    dlq = second_channel(s)
    s.state.config.max_deliveries = 1
    s.state.config.dead_letter_channel = dlq.config.id
    message = post(s, s.owner, T0)
    claim(s, s.owner, message, T0)
    log = Log(s)
    log.apply(delivery.decide_dead_letter(s.state, message, "released", dlq, T0))
    [(copy, source)] = delivery.redrivable(dlq, 10)
    assert source == s.state.config.id
    log.apply(delivery.decide_redrive(dlq, copy, s.state, T0 + SECOND))
    assert dlq.live == {}
    [back] = s.state.live.values()
    assert back.metadata == {}
    assert back.deliveries == 0
    assert delivery.redrivable(dlq, 10) == []


def test_snapshots_keep_delayed_messages() -> None:
    s = make()
    hidden = delayed_post(s, T0, 60 * SECOND)
    registry = pack_registry(s.world)
    world: World
    world, _ = load_snapshot_payload(pack_snapshot(T0, registry, [pack_channel(s.state)]))
    state = world.channels[s.state.config.id]
    assert list(state.delayed) == [hidden]
    assert state.next_deadline() == T0 + 60 * SECOND
    assert state.due_events(T0 + 60 * SECOND) == [
        MessagesVisible(state.config.id, [hidden], T0 + 60 * SECOND)
    ]
