"""A Hypothesis model of one claimable channel: random commands, strong invariants.

The machine drives a :class:`World` and its :class:`ChannelState` the way a
channel actor does: before each command it applies ``due_events(now)``;
each command decides (``check_*`` / ``decide_*``, possibly creating the acting
actor) and then applies every resulting event with the next global seq. Every
applied event is also appended to ``log``.

The machine keeps its own model of the channel (``Model``): which messages
are live, who holds each, when each lease ends, who acked. The model changes
only from what the rules asked for and what each command answered (success
or refusal, the claim's status, the acting actor's id) and from the passage
of time by the contract's rules (TTL 120 s, leases, at most 8 live
messages); it never reads the implementation's state to update itself.

Invariants (style.md practice 11):

- the implementation's live messages, holders, lease deadlines and acks
  equal the model's;
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
  log (through msgpack, as recovery reads it), equals the live world too;
- that snapshot loaded packed answers ids, leases, counts and deadline as
  the eagerly loaded one, and once unpacked equals it field for field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
from tests.storage.test_packed import assert_same_channel

SECOND = 1_000_000
DAY = 86_400 * SECOND
T0 = 1_800_000_000 * SECOND

LEASES = st.sampled_from([5 * SECOND, 30 * SECOND])
ACTING = st.sampled_from([None, "a", "b"])
PICK = st.integers(min_value=0, max_value=1_000)
KEY = st.integers(min_value=0, max_value=2)


TTL = 120 * SECOND
MAX_LIVE = 8


@dataclass
class Held:
    """The model of one live message."""

    expires_at: int
    holder: str | None = None  # acting actor id
    holder_name: str | None = None
    holder_key: str | None = None
    token: str | None = None  # the last lease token a claim answered with
    lease_end: int | None = None
    acks: set[str] = field(default_factory=set)


class Model:
    """What the channel must look like, from commands and their answers alone."""

    def __init__(self) -> None:
        self.live: dict[str, Held] = {}  # in post order

    def posted(self, message_id: str, now: int) -> None:
        self.live[message_id] = Held(now + TTL)
        while len(self.live) > MAX_LIVE:
            del self.live[next(iter(self.live))]

    def advance(self, now: int) -> None:
        for message_id, held in list(self.live.items()):
            if held.expires_at <= now:
                del self.live[message_id]
            elif held.lease_end is not None and held.lease_end <= now:
                self.released(message_id)  # the lease lapsed: back to the pool

    def claimed(
        self, message_id: str, actor: str, name: str, key_id: str, token: str | None
    ) -> None:
        held = self.live[message_id]
        held.holder, held.holder_name, held.holder_key, held.token = actor, name, key_id, token

    def released(self, message_id: str) -> None:
        held = self.live[message_id]
        held.holder = held.holder_name = held.holder_key = held.lease_end = None

    def acked(self, message_id: str, actor: str) -> None:
        held = self.live[message_id]
        held.acks.add(actor)
        if held.holder == actor:
            held.lease_end = None

    def holder(self, message_id: str) -> str | None:
        held = self.live.get(message_id)
        return held.holder if held is not None else None


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
            "ttl_seconds": TTL // SECOND,
            "retention_days": 1,
            "max_messages": MAX_LIVE,
            "max_writes_per_minute": None,
            "webhook_url": None,
            "webhook_secret": None,
        }
        created = self.world.decide_create_channel(self.keys[0], spec, [], self.now)
        self.commit(created)
        self.state = self.world.channels[created.channel_id]
        self.ids: list[str] = []  # every message ever posted
        self.tokens: list[tuple[str, str]] = []  # every lease token ever issued
        self.model = Model()
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
        if isinstance(event, MessageClaimed) and event.lease_token is not None:
            self.tokens.append((event.lease_token, event.message_id))

    def packed(self) -> tuple[bytes, bytes]:
        return pack_registry(self.world), pack_channel(self.state)

    def expire(self) -> None:
        for event in self.state.due_events(self.now):
            self.commit(event)
        self.model.advance(self.now)

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
        """A message the model says is held: its holder's key, id and actor name."""
        held = [(i, h) for i, h in self.model.live.items() if h.holder is not None]
        if not held:
            return None
        message_id, entry = held[index % len(held)]
        assert entry.holder_key is not None
        assert entry.holder_name is not None
        return self.world.keys[entry.holder_key], message_id, entry.holder_name

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

    @rule(k=KEY, count=st.integers(1, 4))
    def post(self, k: int, count: int) -> None:
        for _ in range(count):
            self.post_one(self.keys[k])

    def post_one(self, key: KeyRecord) -> None:
        posted: list[str] = []

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
            posted.append(event.message_id)
            return [event]

        assert self.attempt(decide) is None
        self.ids.extend(posted)
        self.model.posted(posted[0], self.now)

    @precondition(lambda self: self.ids)
    @rule(
        k=KEY,
        acting=ACTING,
        index=PICK,
        lease=st.sampled_from([None, 5 * SECOND, 5 * SECOND, 30 * SECOND]),
    )
    def claim(self, k: int, acting: str | None, index: int, lease: int | None) -> None:
        key, message_id = self.keys[k], self.pick(index)
        self.expire()
        prior = self.model.holder(message_id)
        answer: dict[str, Any] = {}

        def decide() -> list[Event | None]:
            message = self.state.check_message(message_id, key.key_id, "claimed", claim=True)
            actor, created = self.world.resolve_acting_actor(key, acting, self.now)
            status, event = self.state.decide_claim(message, actor, key.key_id, self.now, lease)
            answer.update(actor=actor, status=status, event=event)
            return [created, event]

        error = self.attempt(decide)
        if error is not None:
            if error.code == "already_claimed":
                assert prior is not None
            else:
                assert error.code in ("message_not_found", "message_expired"), error.code
                assert message_id not in self.model.live
            return
        assert message_id in self.model.live
        actor_id, actor_name = answer["actor"]
        if answer["status"] != "claimed":  # the holder asked again without a lease
            assert prior == actor_id
            assert answer["event"] is None
            return
        assert prior in (None, actor_id)  # never a second holder
        event = answer["event"]
        held = self.model.live[message_id]
        if isinstance(event, MessageClaimed):
            self.model.claimed(message_id, actor_id, actor_name, key.key_id, event.lease_token)
        held.lease_end = self.now + lease if lease is not None else None

    @precondition(lambda self: self.tokens)
    @rule(k=KEY, index=PICK, lease=LEASES)
    def heartbeat(self, k: int, index: int, lease: int) -> None:
        key = self.keys[k]
        token, message_id = self.tokens[index % len(self.tokens)]
        self.expire()
        held = self.model.live.get(message_id)
        current = held is not None and held.token == token and held.lease_end is not None

        def decide() -> list[Event | None]:
            return [self.state.decide_heartbeat(token, message_id, key.key_id, self.now, lease)]

        error = self.attempt(decide)
        if error is None:
            assert held is not None
            assert current
            assert held.holder_key == key.key_id
            held.lease_end = self.now + lease
        elif error.code == "lease_not_held":
            assert current
        else:
            assert error.code == "lease_expired"
            assert not current

    @precondition(lambda self: self.ids)
    @rule(k=KEY, acting=ACTING, index=PICK)
    def release(self, k: int, acting: str | None, index: int) -> None:
        key, message_id = self.keys[k], self.pick(index)
        self.expire()
        prior = self.model.holder(message_id)

        def decide() -> list[Event | None]:
            message = self.state.check_message(message_id, key.key_id, "released", claim=True)
            if message.claimed_by_id is None:
                raise ApiError(409, "not_claimed", "Message is not claimed")
            actor, created = self.world.resolve_acting_actor(key, acting, self.now)
            event = self.state.decide_release(message, actor[0], key.key_id, self.now)
            return [created, event]

        error = self.attempt(decide)
        if error is None:
            assert prior is not None
            self.model.released(message_id)
        elif error.code == "not_claimed":
            assert prior is None

    @rule(index=PICK, lease=st.one_of(LEASES, st.none()))
    def holder_heartbeats(self, index: int, lease: int | None) -> None:
        """The holder renews: for a fixed time, or (None) keeping its current deadline."""
        self.expire()
        leased = [(i, h) for i, h in self.model.live.items() if h.lease_end is not None]
        if not leased:
            return
        message_id, held = leased[index % len(leased)]
        assert held.holder_key is not None
        assert held.token is not None
        assert held.lease_end is not None
        key = self.world.keys[held.holder_key]
        token = held.token
        if lease is None:
            lease = held.lease_end - self.now

        def decide() -> list[Event | None]:
            return [self.state.decide_heartbeat(token, message_id, key.key_id, self.now, lease)]

        assert self.attempt(decide) is None
        held.lease_end = self.now + lease

    @rule(index=PICK, finish=st.booleans())
    def holder_releases_or_acks(self, index: int, finish: bool) -> None:
        self.expire()
        found = self.held(index)
        if found is None:
            return
        key, message_id, name = found
        message = self.state.live[message_id]
        resolved: list[str] = []

        def decide() -> list[Event | None]:
            actor, created = self.world.resolve_acting_actor(key, name, self.now)
            assert created is None
            resolved.append(actor[0])
            if finish:
                return [self.state.decide_ack(message, actor, self.now)]
            return [self.state.decide_release(message, actor[0], key.key_id, self.now)]

        assert self.attempt(decide) is None
        assert resolved == [self.model.holder(message_id)]
        if finish:
            self.model.acked(message_id, resolved[0])
        else:
            self.model.released(message_id)

    @precondition(lambda self: self.ids)
    @rule(k=KEY, acting=ACTING, index=PICK)
    def ack(self, k: int, acting: str | None, index: int) -> None:
        key, message_id = self.keys[k], self.pick(index)
        self.expire()
        resolved: list[str] = []

        def decide() -> list[Event | None]:
            message = self.state.check_message(message_id, key.key_id, "acknowledged", claim=False)
            actor, created = self.world.resolve_acting_actor(key, acting, self.now)
            resolved.append(actor[0])
            return [created, self.state.decide_ack(message, actor, self.now)]

        if self.attempt(decide) is None:
            self.model.acked(message_id, resolved[0])
        else:
            assert message_id not in self.model.live

    @precondition(lambda self: self.ids)
    @rule(k=KEY, index=PICK)
    def retract(self, k: int, index: int) -> None:
        key, message_id = self.keys[k], self.pick(index)
        self.expire()
        prior = self.model.holder(message_id)

        def decide() -> list[Event | None]:
            message = self.state.check_message(message_id, key.key_id, "retract", claim=False)
            return [self.state.decide_retract(message, key.key_id, self.now)]

        error = self.attempt(decide)
        if error is None:
            assert prior is None
            del self.model.live[message_id]
            assert self.state.archived[message_id].reason == "retracted"
        elif error.code == "message_claimed":
            assert prior is not None

    @rule()
    def take_snapshot(self) -> None:
        self.expire()
        self.snapshot = pack_snapshot(
            self.now, pack_registry(self.world), [pack_channel(self.state)]
        )

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def the_channel_matches_the_model(self) -> None:
        assert list(self.state.live) == list(self.model.live)
        for message_id, held in self.model.live.items():
            message = self.state.live[message_id]
            assert message.claimed_by_id == held.holder, message_id
            assert message.claimed_by_key_id == held.holder_key
            assert message.lease_expires_at == held.lease_end
            assert {entry[0] for entry in message.acks} == held.acks
            assert message.expires_at == held.expires_at
            if held.lease_end is not None:
                assert message.lease_token == held.token

    @invariant()
    def claims_are_consistent(self) -> None:
        for message in self.state.live.values():
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

    @invariant()
    def a_snapshot_loads_the_same_packed_and_eagerly(self) -> None:
        if self.snapshot is None:
            return
        lazy, _clock = load_snapshot_payload(self.snapshot)
        eager, _clock = load_snapshot_payload(self.snapshot, lazy=False)
        one = lazy.channels[self.state.config.id]
        other = eager.channels[self.state.config.id]
        packed = one.packed
        assert packed is not None
        assert sorted(packed.ids) == sorted([*other.live, *other.archived, *other.delayed])
        assert dict(packed.leases) == {
            m.lease_token: m.id for m in other.live.values() if m.lease_token is not None
        }
        assert (one.live_count, one.claimed_count) == (len(other.live), other.claimed_count)
        assert one.next_deadline() == other.next_deadline()
        assert one.packed is packed
        assert_same_channel(one, other)

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
