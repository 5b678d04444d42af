"""A Hypothesis model of one claimable channel: random commands, strong invariants.

The machine drives a :class:`World` and its :class:`ChannelState` the way a
channel actor does: before each command it applies ``due_events(now)``;
each command decides (``check_*`` / ``decide_*``, possibly creating the acting
actor) and then applies every resulting event with the next global seq. Every
applied event is also appended to ``log``.

Invariants (style.md practice 11):

- a refused command changes nothing (registry and channel bytes are equal);
- at most one holder per message: a claim succeeds only on a free message
  or for its current holder, and a 409 ``already_claimed`` only when some
  actor holds it;
- after due events, every lease still on a message ends in the future;
- paging with small limits (all, ``unclaimed``, ``claimed``) walks strictly
  increasing seqs and shows each matching message exactly once;
- each actor acks a message at most once;
- replaying ``log`` through ``World.apply`` into a fresh ``World`` equals
  the live world, byte for byte in the snapshot encoding, and in the
  derived indexes (unclaimed pool, next deadline);
- a snapshot taken at a random point, loaded and replayed with the whole
  log (through msgpack, as recovery reads it), equals the live world too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from backchannel.core.channel import ChannelState
from backchannel.core.errors import ApiError
from backchannel.core.events import (
    Event,
    GlobalEvent,
    LeaseExpired,
    MessageClaimed,
    channel_of,
    from_wire,
    to_wire,
)
from backchannel.core.records import KeyRecord
from backchannel.core.world import World
from backchannel.storage.state import (
    load_snapshot_payload,
    pack_channel,
    pack_registry,
    pack_snapshot,
    replay,
)

SECOND = 1_000_000
DAY = 86_400 * SECOND
T0 = 1_800_000_000 * SECOND

LEASES = st.sampled_from([5 * SECOND, 30 * SECOND])
ACTING = st.sampled_from([None, "a", "b"])
PICK = st.integers(min_value=0, max_value=1_000)
KEY = st.integers(min_value=0, max_value=2)


def wire_roundtrip(event: Event) -> list[Any]:
    """The record as recovery reads it back from the log."""
    body: list[Any] = msgpack.unpackb(msgpack.packb(to_wire(event), use_bin_type=True), raw=False)
    return body


def walk(state: ChannelState, limit: int, status: str | None) -> list[int]:
    """Every seq a client sees paging with ``limit``; asserts page shape."""
    seen: list[int] = []
    after = 0
    while page := state.page(after, limit, status):
        assert len(page) <= limit
        seqs = [m.seq for m in page]
        assert seqs == sorted(set(seqs)), f"page not strictly increasing: {seqs}"
        assert seqs[0] > after
        seen.extend(seqs)
        after = seqs[-1]
    return seen


class ChannelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.log: list[tuple[int, Event]] = []
        self.seq = 0
        self.now = T0
        self.keys: list[KeyRecord] = []
        for label in ("owner", "worker", "bystander"):
            _raw, minted = self.world.decide_mint(label, self.now)
            self.commit(minted)
            self.keys.append(self.world.keys[minted.key_id])
        spec: dict[str, Any] = {
            "name": "jobs",
            "mode": "claimable",
            "access": "open",
            "discoverable": True,
            "description": "",
            "metadata_schema": {},
            "pinned_message": None,
            "ttl_seconds": 120,
            "retention_days": 1,
            "max_messages": 8,
            "max_writes_per_minute": None,
            "webhook_url": None,
            "webhook_secret": None,
        }
        created = self.world.decide_create_channel(self.keys[0], spec, [], self.now)
        self.commit(created)
        self.state = self.world.channels[created.channel_id]
        self.ids: list[str] = []  # every message ever posted
        self.tokens: list[tuple[str, str]] = []  # every lease token ever issued
        self.holders: dict[str, str] = {}  # model: live message id -> holding actor id
        self.snapshot: bytes | None = None

    # -- plumbing -----------------------------------------------------------------

    def commit(self, event: Event) -> None:
        self.seq += 1
        self.log.append((self.seq, event))
        assert from_wire(wire_roundtrip(event)) == event
        if channel_of(event) is None:
            global_event: GlobalEvent = event  # type: ignore[assignment]
            self.world.apply_global(global_event, self.seq)
            return
        if isinstance(event, LeaseExpired):
            # a lapse returns a message its lease still holds, exactly once
            held = self.state.live[event.message_id]
            assert held.lease_token == event.lease_token, "lease lapsed twice"
            assert held.lease_expires_at is not None
            assert held.lease_expires_at <= event.at
        self.state.apply(event, self.seq)  # type: ignore[arg-type]
        if isinstance(event, MessageClaimed):
            self.holders[event.message_id] = event.actor_id
            if event.lease_token is not None:
                self.tokens.append((event.lease_token, event.message_id))
        for message_id in list(self.holders):
            message = self.state.live.get(message_id)
            if message is None or message.claimed_by_id is None:
                del self.holders[message_id]

    def packed(self) -> tuple[bytes, bytes]:
        return pack_registry(self.world), pack_channel(self.state)

    def expire(self) -> None:
        for event in self.state.due_events(self.now):
            self.commit(event)

    def attempt(self, decide: Callable[[], list[Event | None]]) -> ApiError | None:
        """Run one command as the actor does; a refusal must change nothing."""
        self.expire()
        before = self.packed()
        try:
            events = decide()
        except ApiError as exc:
            refusal = exc
        else:
            for event in events:
                if event is not None:
                    self.commit(event)
            return None
        assert self.packed() == before, refusal
        return refusal

    def pick(self, index: int) -> str:
        """Mostly a live message; every fifth pick any message ever posted."""
        live = list(self.state.live)
        pool = live if live and index % 5 else self.ids
        return pool[index % len(pool)]

    def held(self, index: int) -> tuple[KeyRecord, str, str] | None:
        """A held message, its holder's key and the holder's actor name."""
        held = [m for m in self.state.live.values() if m.claimed_by_key_id is not None]
        if not held:
            return None
        message = held[index % len(held)]
        key = self.world.keys[message.claimed_by_key_id]  # type: ignore[index]
        assert message.claimed_by_name is not None
        return key, message.id, message.claimed_by_name

    # -- rules --------------------------------------------------------------------

    @rule(dt=st.one_of(st.integers(0, 90 * SECOND), st.sampled_from([0, 1, SECOND, DAY])))
    def advance(self, dt: int) -> None:
        self.now += dt
        self.expire()

    @rule(early=st.booleans())
    def advance_to_next_deadline(self, early: bool) -> None:
        deadline = self.state.next_deadline()
        if deadline is None or deadline <= self.now:
            return
        if early:
            self.now = deadline - 1
            assert self.state.due_events(self.now) == []
        else:
            self.now = deadline
            assert self.state.due_events(self.now) != []
        self.expire()

    @rule(k=KEY)
    def post(self, k: int) -> None:
        key = self.keys[k]

        def decide() -> list[Event | None]:
            event = self.state.decide_post(
                content=f"job {len(self.ids)}",
                metadata={"n": len(self.ids)},
                key_id=key.key_id,
                now=self.now,
                actor=None,
                actor_label=None,
                mentions=[],
            )
            self.ids.append(event.message_id)
            return [event]

        assert self.attempt(decide) is None

    @precondition(lambda self: self.ids)
    @rule(
        k=KEY,
        acting=ACTING,
        index=PICK,
        lease=st.sampled_from([None, 5 * SECOND, 5 * SECOND, 30 * SECOND]),
    )
    def claim(self, k: int, acting: str | None, index: int, lease: int | None) -> None:
        key, message_id = self.keys[k], self.pick(index)
        prior = self.holders.get(message_id)

        def decide() -> list[Event | None]:
            message = self.state.check_message(message_id, key.key_id, "claimed", claim=True)
            actor, created = self.world.resolve_acting_actor(key, acting, self.now)
            status, event = self.state.decide_claim(message, actor, key.key_id, self.now, lease)
            if status == "claimed":
                assert prior in (None, actor[0])  # never a second holder
            else:
                assert prior == actor[0]
            return [created, event]

        error = self.attempt(decide)
        if error is not None and error.code == "already_claimed":
            assert prior is not None

    @precondition(lambda self: self.tokens)
    @rule(k=KEY, index=PICK, lease=LEASES)
    def heartbeat(self, k: int, index: int, lease: int) -> None:
        key = self.keys[k]
        token, message_id = self.tokens[index % len(self.tokens)]

        def decide() -> list[Event | None]:
            return [self.state.decide_heartbeat(token, message_id, key.key_id, self.now, lease)]

        if self.attempt(decide) is None:
            message = self.state.live[message_id]
            assert (message.lease_token, message.lease_expires_at) == (token, self.now + lease)

    @precondition(lambda self: self.ids)
    @rule(k=KEY, acting=ACTING, index=PICK)
    def release(self, k: int, acting: str | None, index: int) -> None:
        key, message_id = self.keys[k], self.pick(index)

        def decide() -> list[Event | None]:
            message = self.state.check_message(message_id, key.key_id, "released", claim=True)
            if message.claimed_by_id is None:
                raise ApiError(409, "not_claimed", "Message is not claimed")
            actor, created = self.world.resolve_acting_actor(key, acting, self.now)
            event = self.state.decide_release(message, actor[0], key.key_id, self.now)
            return [created, event]

        if self.attempt(decide) is None:
            assert self.state.live[message_id].claimed_by_id is None

    @rule(index=PICK, lease=st.one_of(LEASES, st.none()))
    def holder_heartbeats(self, index: int, lease: int | None) -> None:
        """The holder renews: for a fixed time, or (None) keeping its current deadline."""
        self.expire()
        leased = [m for m in self.state.live.values() if m.lease_token is not None]
        if not leased:
            return
        message = leased[index % len(leased)]
        key = self.world.keys[message.claimed_by_key_id]  # type: ignore[index]
        token = message.lease_token
        assert token is not None
        if lease is None:
            assert message.lease_expires_at is not None
            lease = message.lease_expires_at - self.now

        def decide() -> list[Event | None]:
            return [self.state.decide_heartbeat(token, message.id, key.key_id, self.now, lease)]

        assert self.attempt(decide) is None
        assert message.lease_expires_at == self.now + lease

    @rule(index=PICK, finish=st.booleans())
    def holder_releases_or_acks(self, index: int, finish: bool) -> None:
        found = self.held(index)
        if found is None:
            return
        key, message_id, name = found
        message = self.state.live[message_id]

        def decide() -> list[Event | None]:
            actor, created = self.world.resolve_acting_actor(key, name, self.now)
            assert created is None
            assert actor[0] == message.claimed_by_id
            if finish:
                return [self.state.decide_ack(message, actor, self.now)]
            return [self.state.decide_release(message, actor[0], key.key_id, self.now)]

        assert self.attempt(decide) is None
        if not finish:
            assert message.claimed_by_id is None
        else:
            assert message.lease_token is None  # an ack by the holder ends its lease
            assert message.claimed_by_key_id == key.key_id

    @precondition(lambda self: self.ids)
    @rule(k=KEY, acting=ACTING, index=PICK)
    def ack(self, k: int, acting: str | None, index: int) -> None:
        key, message_id = self.keys[k], self.pick(index)

        def decide() -> list[Event | None]:
            message = self.state.check_message(message_id, key.key_id, "acknowledged", claim=False)
            actor, created = self.world.resolve_acting_actor(key, acting, self.now)
            return [created, self.state.decide_ack(message, actor, self.now)]

        self.attempt(decide)

    @precondition(lambda self: self.ids)
    @rule(k=KEY, index=PICK)
    def retract(self, k: int, index: int) -> None:
        key, message_id = self.keys[k], self.pick(index)

        def decide() -> list[Event | None]:
            message = self.state.check_message(message_id, key.key_id, "retract", claim=False)
            return [self.state.decide_retract(message, key.key_id, self.now)]

        if self.attempt(decide) is None:
            assert message_id not in self.state.live
            assert self.state.archived[message_id].reason == "retracted"

    @rule()
    def take_snapshot(self) -> None:
        self.expire()
        self.snapshot = pack_snapshot(
            self.now, pack_registry(self.world), [pack_channel(self.state)]
        )

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def one_holder_per_message_and_consistent_claims(self) -> None:
        for message in self.state.live.values():
            assert message.claimed_by_id == self.holders.get(message.id)
            held = message.claimed_by_id is not None
            assert (message.claimed_by_key_id is not None) == held
            assert (message.claimed_at is not None) == held
            assert (message.lease_token is None) == (message.lease_expires_at is None)
            if message.lease_token is not None:
                assert held

    @invariant()
    def leases_still_on_messages_end_in_the_future(self) -> None:
        assert self.state.due_events(self.now) == []
        for message in self.state.live.values():
            if message.lease_expires_at is not None:
                assert message.lease_expires_at > self.now
            assert message.expires_at > self.now

    @invariant()
    def paging_shows_each_message_once_in_order(self) -> None:
        live = sorted(self.state.live.values(), key=lambda m: m.seq)
        expected = {
            None: [m.seq for m in live],
            "unclaimed": [m.seq for m in live if m.claimed_by_id is None],
            "claimed": [m.seq for m in live if m.claimed_by_id is not None],
        }
        for status, seqs in expected.items():
            for limit in (1, 2, 3):
                assert walk(self.state, limit, status) == seqs, (status, limit)

    @invariant()
    def each_actor_acks_a_message_at_most_once(self) -> None:
        for message in self.state.live.values():
            actors = [entry[0] for entry in message.acks]
            assert len(actors) == len(set(actors))

    @invariant()
    def replaying_the_log_equals_the_live_world(self) -> None:
        rebuilt = World()
        for seq, event in self.log:
            rebuilt.apply(event, seq)
        self.assert_same(rebuilt)

    @invariant()
    def snapshot_then_replay_equals_the_live_world(self) -> None:
        if self.snapshot is None:
            return
        loaded, clock = load_snapshot_payload(self.snapshot)
        assert clock <= self.now
        records = [(seq, wire_roundtrip(event)) for seq, event in self.log]
        replay(loaded, records)
        self.assert_same(loaded)

    def assert_same(self, other: World) -> None:
        assert pack_registry(other) == pack_registry(self.world)
        assert other.active_labels == self.world.active_labels
        assert other.actors_by_name == self.world.actors_by_name
        assert other.channels_by_name == self.world.channels_by_name
        state = other.channels[self.state.config.id]
        assert pack_channel(state) == pack_channel(self.state)
        assert state.next_deadline() == self.state.next_deadline()
        for status in (None, "unclaimed", "claimed"):
            assert [m.id for m in state.page(0, 100, status)] == [
                m.id for m in self.state.page(0, 100, status)
            ]
        assert [e.message.id for e in state.history_page(None, 100)] == [
            e.message.id for e in self.state.history_page(None, 100)
        ]
        deadline = self.state.next_deadline()
        if deadline is not None:
            assert state.due_events(deadline) == self.state.due_events(deadline)


ChannelMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, report_multiple_bugs=False
)
TestChannelMachine = ChannelMachine.TestCase
