"""A Hypothesis model of dead letters, redrive and delayed posts across two channels.

The machine drives a :class:`World` as two channel actors would: ``jobs``
(``max_deliveries`` 2, dead-lettering into ``dlq``) and ``dlq``. Before each
command it applies due events, turning a lapsed lease at the limit into the
dead-letter move as ``ChannelActor._claim_end`` does; releases likewise.

Invariants:

- each job (a unique content) is live in exactly one channel, or waiting
  delayed, or in history (never in two places, never nowhere);
- ``deliveries`` of every live message equals the claims of it that began;
- a delayed message is neither listed nor claimable before ``visible_at``;
- a reader paging ``jobs`` with a cursor sees each message once, in seq
  order, and has seen every live message at or before its cursor;
- replaying the log into a fresh world, and a random snapshot plus the log
  (through msgpack), both equal the live world.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgpack
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from backchannel.core import delivery
from backchannel.core.channel import ChannelState
from backchannel.core.events import (
    Event,
    LeaseExpired,
    MessageClaimed,
    MessageReleased,
    from_wire,
    to_wire,
)
from backchannel.core.world import World
from backchannel.storage.state import (
    load_snapshot_payload,
    pack_channel,
    pack_registry,
    pack_snapshot,
    replay,
)

SECOND = 1_000_000
T0 = 1_800_000_000 * SECOND
TTL = 300 * SECOND


def _spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "mode": "claimable",
        "access": "open",
        "discoverable": True,
        "description": "",
        "metadata_schema": {},
        "pinned_message": None,
        "ttl_seconds": TTL // SECOND,
        "retention_days": 1,
        "max_messages": None,
        "max_writes_per_minute": None,
        "webhook_url": None,
        "webhook_secret": None,
    }


def _roundtrip(event: Event) -> list[Any]:
    body: list[Any] = msgpack.unpackb(msgpack.packb(to_wire(event), use_bin_type=True), raw=False)
    return body


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.log: list[tuple[int, Event]] = []
        self.seq = 0
        self.now = T0
        _raw, minted = self.world.decide_mint("owner", self.now)
        self.commit(minted)
        self.key = self.world.keys[minted.key_id]
        self.actor, created = self.world.resolve_acting_actor(self.key, None, self.now)
        assert created is None
        dlq = self.world.decide_create_channel(self.key, _spec("dlq"), [], self.now)
        self.commit(dlq)
        jobs_spec = {**_spec("jobs"), "max_deliveries": 2, "dead_letter_channel": dlq.channel_id}
        jobs = self.world.decide_create_channel(self.key, jobs_spec, [], self.now)
        self.commit(jobs)
        self.jobs = self.world.channels[jobs.channel_id]
        self.dlq = self.world.channels[dlq.channel_id]
        self.contents: list[str] = []
        self.begun: Counter[str] = Counter()  # claims that began, per message id
        self.cursor = 0
        self.seen: list[str] = []
        self.snapshot: bytes | None = None

    def commit(self, event: Event) -> None:
        self.seq += 1
        assert from_wire(_roundtrip(event)) == event
        if isinstance(event, MessageClaimed):
            held = self.world.channels[event.channel_id].live[event.message_id]
            if held.claimed_by_id is None:
                self.begun[event.message_id] += 1
        self.world.apply(event, self.seq)
        self.log.append((self.seq, event))

    def end_claim(self, state: ChannelState, event: LeaseExpired | MessageReleased) -> Event:
        message = state.live[event.message_id]
        if delivery.dead_letter_due(state, message):
            target = self.world.channels[state.config.dead_letter_channel or ""]
            reason = delivery.LEASE_EXPIRED if isinstance(event, LeaseExpired) else "released"
            return delivery.decide_dead_letter(state, message, reason, target, event.at)
        return event

    def expire(self) -> None:
        for state in (self.jobs, self.dlq):
            for event in state.due_events(self.now):
                if isinstance(event, LeaseExpired):
                    self.commit(self.end_claim(state, event))
                else:
                    self.commit(event)

    # -- rules ----------------------------------------------------------------

    @rule(dt=st.sampled_from([0, 1, SECOND, 10 * SECOND, 61 * SECOND, TTL]))
    def advance(self, dt: int) -> None:
        self.now += dt
        self.expire()

    @rule(delay=st.sampled_from([0, 0, 5 * SECOND, 60 * SECOND]))
    def post(self, delay: int) -> None:
        self.expire()
        content = f"job {len(self.contents)}"
        self.contents.append(content)
        event = self.jobs.decide_post(
            content=content,
            metadata={},
            key_id=self.key.key_id,
            now=self.now,
            actor=None,
            actor_label=None,
            mentions=[],
            delay_us=delay,
        )
        self.commit(event)
        if delay:
            assert event.message_id not in self.jobs.live

    @rule(dlq=st.booleans(), lease=st.sampled_from([None, 10 * SECOND]))
    def claim_next(self, dlq: bool, lease: int | None) -> None:
        self.expire()
        state = self.dlq if dlq else self.jobs
        pool = state.page(0, 1, "unclaimed")
        if not pool:
            return
        message = pool[0]
        assert message.id not in state.delayed
        _status, event = state.decide_claim(message, self.actor, self.key.key_id, self.now, lease)
        assert isinstance(event, MessageClaimed)
        self.commit(event)

    @rule(index=st.integers(0, 100), ack=st.booleans())
    def release_or_ack(self, index: int, ack: bool) -> None:
        self.expire()
        held = [m for m in self.jobs.live.values() if m.claimed_by_id is not None]
        if not held:
            return
        message = held[index % len(held)]
        if ack:
            acked = self.jobs.decide_ack(message, self.actor, self.now)
            if acked is not None:
                self.commit(acked)
            return
        released = self.jobs.decide_release(message, self.actor[0], self.key.key_id, self.now)
        self.commit(self.end_claim(self.jobs, released))

    @rule(limit=st.integers(1, 3))
    def redrive(self, limit: int) -> None:
        self.expire()
        for message, source in delivery.redrivable(self.dlq, limit):
            target = self.world.channels[source]
            self.commit(delivery.decide_redrive(self.dlq, message, target, self.now))

    @rule(limit=st.integers(1, 3))
    def read(self, limit: int) -> None:
        self.expire()
        page = self.jobs.page(self.cursor, limit)
        for message in page:
            assert message.seq > self.cursor
            self.cursor = message.seq
            self.seen.append(message.id)

    @rule()
    def take_snapshot(self) -> None:
        self.expire()
        self.snapshot = pack_snapshot(
            self.now,
            pack_registry(self.world),
            [pack_channel(self.dlq), pack_channel(self.jobs)],
        )

    # -- invariants -------------------------------------------------------------

    @invariant()
    def each_job_is_in_exactly_one_place(self) -> None:
        places: Counter[str] = Counter()
        for state in (self.jobs, self.dlq):
            for message in [*state.live.values(), *state.delayed.values()]:
                places[message.content] += 1
        archived = {e.message.content for s in (self.jobs, self.dlq) for e in s.history}
        for content in self.contents:
            assert places[content] <= 1, content
            if places[content] == 0:
                assert content in archived, content

    @invariant()
    def deliveries_count_the_claims_that_began(self) -> None:
        for state in (self.jobs, self.dlq):
            for message in state.live.values():
                assert message.deliveries == self.begun[message.id]
                # past the limit only in the dlq, or after an ack ended a claim
                assert message.deliveries <= 2 or state is self.dlq or message.acks

    @invariant()
    def delayed_messages_are_hidden_until_due(self) -> None:
        for message in self.jobs.delayed.values():
            assert message.seq == 0
            assert message.visible_at is not None
            assert message.id not in self.jobs.live
            assert all(m.id != message.id for m in self.jobs.page(0, 1000))

    @invariant()
    def the_reader_sees_each_message_once_and_misses_none(self) -> None:
        assert len(self.seen) == len(set(self.seen))
        seen = set(self.seen)
        for message in self.jobs.iter_live():
            if message.seq <= self.cursor:
                assert message.id in seen

    @invariant()
    def replay_equals_live(self) -> None:
        rebuilt = World()
        for seq, event in self.log:
            rebuilt.apply(event, seq)
        self.assert_same(rebuilt)
        if self.snapshot is not None:
            loaded, _clock = load_snapshot_payload(self.snapshot)
            replay(loaded, [(seq, _roundtrip(event)) for seq, event in self.log])
            self.assert_same(loaded)

    def assert_same(self, other: World) -> None:
        for state in (self.jobs, self.dlq):
            twin = other.channels[state.config.id]
            assert pack_channel(twin) == pack_channel(state)
            assert twin.next_deadline() == state.next_deadline()
            assert [m.id for m in twin.page(0, 1000, "unclaimed")] == [
                m.id for m in state.page(0, 1000, "unclaimed")
            ]


DeliveryMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None, report_multiple_bugs=False
)
TestDeliveryMachine = DeliveryMachine.TestCase
