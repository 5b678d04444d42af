"""ChannelState and World, driven synchronously with explicit microsecond times.

Each test builds a :class:`World`, mints keys and creates a channel through
the same ``decide_*`` + ``apply_global`` pair the runtime uses, then drives
the channel's ``decide_*`` / ``apply`` / ``due_events`` directly and asserts
the whole relevant state after every step (style.md practice 1). Deadlines
are probed at ``deadline - 1`` and at ``deadline`` exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from backchannel.core.channel import ChannelState
from backchannel.core.errors import ApiError
from backchannel.core.events import (
    ChannelEvent,
    HistoryPurged,
    LeaseExpired,
    LeaseExtended,
    MessageAcked,
    MessageClaimed,
    MessageReleased,
    MessagesExpired,
)
from backchannel.core.records import KeyRecord, Message
from backchannel.core.world import World
from backchannel.storage.state import pack_channel, pack_registry

SECOND = 1_000_000
DAY = 86_400 * SECOND
T0 = 1_800_000_000 * SECOND


# -- building a world -----------------------------------------------------------


@dataclass
class Setup:
    world: World
    owner: KeyRecord
    other: KeyRecord
    third: KeyRecord
    state: ChannelState
    seq: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def apply(self, event: ChannelEvent) -> None:
        self.state.apply(event, self.next_seq())

    def actor(self, key: KeyRecord, value: str | None = None) -> tuple[str, str]:
        """The acting actor of ``key`` (applying its creation if it is new)."""
        actor, created = self.world.resolve_acting_actor(key, value, T0)
        if created is not None:
            self.world.apply_global(created, self.next_seq())
        return actor


def mint(world: World, label: str, seq: int) -> KeyRecord:
    _raw, event = world.decide_mint(label, T0)
    world.apply_global(event, seq)
    return world.keys[event.key_id]


def make(mode: str = "claimable", **config: Any) -> Setup:
    world = World()
    owner = mint(world, "owner", 1)
    other = mint(world, "other", 2)
    third = mint(world, "third", 3)
    spec: dict[str, Any] = {
        "name": "jobs",
        "mode": mode,
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
    spec.update(config)
    created = world.decide_create_channel(owner, spec, [], T0)
    world.apply_global(created, 4)
    return Setup(world, owner, other, third, world.channels[created.channel_id], seq=4)


def post(
    setup: Setup,
    key: KeyRecord,
    now: int,
    content: str = "work",
    metadata: dict[str, Any] | None = None,
) -> Message:
    event = setup.state.decide_post(
        content=content,
        metadata=metadata or {},
        key_id=key.key_id,
        now=now,
        actor=None,
        actor_label=None,
        mentions=[],
    )
    setup.apply(event)
    return setup.state.live[event.message_id]


def claim(
    setup: Setup, key: KeyRecord, message: Message, now: int, lease_us: int | None = None
) -> str:
    """Claim as ``key``'s default actor; returns the status, applies the event."""
    checked = setup.state.check_message(message.id, key.key_id, "claimed", claim=True)
    status, event = setup.state.decide_claim(checked, setup.actor(key), key.key_id, now, lease_us)
    if event is not None:
        setup.apply(event)
    return status


def ack(setup: Setup, key: KeyRecord, message: Message, now: int) -> ChannelEvent | None:
    checked = setup.state.check_message(message.id, key.key_id, "acknowledged", claim=False)
    event = setup.state.decide_ack(checked, setup.actor(key), now)
    if event is not None:
        setup.apply(event)
    return event


def expire(setup: Setup, now: int) -> list[ChannelEvent]:
    events = setup.state.due_events(now)
    for event in events:
        setup.apply(event)
    return events


def refused(fn: Callable[[], object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fn()
    return caught.value


def summary(state: ChannelState) -> dict[str, Any]:
    """Everything a reader can see about the channel, in a comparable form."""
    return {
        "live": [
            (m.seq, m.claimed_by_name, m.lease_expires_at, [a[1] for a in m.acks])
            for m in state.iter_live()
        ],
        "unclaimed": [m.seq for m in state.page(0, 100, "unclaimed")],
        "claimed": [m.seq for m in state.page(0, 100, "claimed")],
        "history": [(e.message.seq, e.reason, e.archived_at) for e in state.history],
        "last_seq": state.last_seq,
        "next_deadline": state.next_deadline(),
    }


def recent_posts(state: ChannelState) -> list[int]:
    """The throttle window as a snapshot stores it."""
    window: list[int] = msgpack.unpackb(pack_channel(state))[0]["recent_posts"]
    return window


def packed(setup: Setup) -> tuple[bytes, bytes]:
    return pack_registry(setup.world), pack_channel(setup.state)


# -- post, page, cursors --------------------------------------------------------


def test_posts_take_consecutive_seqs_and_pages_walk_them_in_order() -> None:
    s = make(ttl_seconds=100)
    messages = [post(s, s.owner, T0 + n * SECOND, f"m{n}") for n in range(5)]
    assert [m.seq for m in messages] == [1, 2, 3, 4, 5]
    first = messages[0]
    assert (first.content, first.created_at, first.expires_at) == ("m0", T0, T0 + 100 * SECOND)
    assert first.author_key_id == s.owner.key_id
    assert summary(s.state) == {
        "live": [(n, None, None, []) for n in range(1, 6)],
        "unclaimed": [1, 2, 3, 4, 5],
        "claimed": [],
        "history": [],
        "last_seq": 5,
        "next_deadline": T0 + 100 * SECOND,
    }

    seen: list[int] = []
    after = 0
    while page := s.state.page(after, 2):
        assert len(page) <= 2
        seen.extend(m.seq for m in page)
        after = page[-1].seq
    assert seen == [1, 2, 3, 4, 5]
    assert s.state.page(5, 2) == []
    assert [m.content for m in s.state.page(2, 2)] == ["m2", "m3"]
    # expiring_before keeps messages with expires_at strictly earlier
    expiring = s.state.page(0, 10, expiring_before=T0 + 102 * SECOND)
    assert [m.seq for m in expiring] == [1, 2]
    # a time cursor means "created strictly after that instant"
    assert s.state.first_seq_after_time(T0 + SECOND) == 2
    assert s.state.first_seq_after_time(T0 - 1) == 0


def test_a_cursor_survives_retraction_of_the_message_it_points_at() -> None:
    s = make()
    m1, m2, m3 = (post(s, s.owner, T0 + n) for n in range(3))
    s.apply(s.state.decide_retract(m2, s.owner.key_id, T0 + 10))
    assert [m.seq for m in s.state.page(m2.seq, 10)] == [3]
    assert [m.id for m in s.state.page(0, 10)] == [m1.id, m3.id]


# -- claims ---------------------------------------------------------------------


def test_claim_then_same_actor_already_claimed_and_another_actor_409() -> None:
    s = make()
    m = post(s, s.owner, T0)
    assert claim(s, s.other, m, T0 + 1) == "claimed"
    assert (m.claimed_by_name, m.claimed_by_key_id, m.claimed_at) == (
        "other",
        s.other.key_id,
        T0 + 1,
    )
    assert (m.lease_token, m.lease_expires_at) == (None, None)
    assert summary(s.state)["unclaimed"] == []
    assert summary(s.state)["claimed"] == [1]

    before = packed(s)
    assert claim(s, s.other, m, T0 + 2) == "already_claimed"
    assert packed(s) == before
    error = refused(lambda: claim(s, s.third, m, T0 + 3))
    assert (error.status, error.code, error.details) == (409, "already_claimed", {})
    assert packed(s) == before
    # a plain claim never expires
    assert s.state.next_deadline() == T0 + 3_600 * SECOND
    assert s.state.due_events(T0 + 3_600 * SECOND - 1) == []

    # any ack turns the holder's repeat into already_acknowledged
    assert ack(s, s.third, m, T0 + 4) is not None
    assert claim(s, s.other, m, T0 + 5) == "already_acknowledged"
    assert m.claimed_by_name == "other"


def test_claim_in_a_broadcast_channel_is_refused() -> None:
    s = make(mode="broadcast")
    m = post(s, s.owner, T0)
    error = refused(lambda: claim(s, s.other, m, T0 + 1))
    assert (error.status, error.code) == (409, "channel_not_claimable")
    assert m.claimed_by_id is None


def test_lease_claim_sets_a_token_and_repeating_it_extends_the_same_lease() -> None:
    s = make()
    m = post(s, s.owner, T0)
    assert claim(s, s.other, m, T0 + 10, 30 * SECOND) == "claimed"
    token = m.lease_token
    assert token is not None
    assert m.lease_expires_at == T0 + 10 + 30 * SECOND
    assert s.state.next_deadline() == T0 + 10 + 30 * SECOND
    assert summary(s.state)["live"] == [(1, "other", T0 + 10 + 30 * SECOND, [])]

    checked = s.state.check_message(m.id, s.other.key_id, "claimed", claim=True)
    status, event = s.state.decide_claim(checked, s.actor(s.other), s.other.key_id, T0 + 20, 60)
    assert (status, event) == ("claimed", LeaseExtended(s.state.config.id, m.id, token, T0 + 80))
    assert event is not None
    s.apply(event)
    assert (m.lease_token, m.lease_expires_at) == (token, T0 + 80)
    # a bystander's lease claim is still refused
    error = refused(lambda: claim(s, s.third, m, T0 + 21, 30 * SECOND))
    assert error.code == "already_claimed"


def test_a_lease_lapses_at_exactly_its_deadline() -> None:
    s = make()
    m = post(s, s.owner, T0)
    claim(s, s.other, m, T0, 30 * SECOND)
    token = m.lease_token
    assert token is not None
    deadline = T0 + 30 * SECOND
    assert s.state.next_deadline() == deadline
    assert s.state.due_events(deadline - 1) == []
    assert summary(s.state)["claimed"] == [1]

    events = s.state.due_events(deadline)
    assert events == [LeaseExpired(s.state.config.id, m.id, token, deadline)]
    expire(s, deadline)
    assert summary(s.state) == {
        "live": [(1, None, None, [])],
        "unclaimed": [1],
        "claimed": [],
        "history": [],
        "last_seq": 1,
        "next_deadline": T0 + 3_600 * SECOND,
    }
    assert (m.claimed_by_id, m.claimed_by_key_id, m.claimed_at) == (None, None, None)
    error = refused(
        lambda: s.state.decide_heartbeat(token, m.id, s.other.key_id, deadline, 30 * SECOND)
    )
    assert (error.status, error.code) == (410, "lease_expired")
    # anyone may claim it now
    assert claim(s, s.third, m, deadline + 1) == "claimed"


def test_a_heartbeat_moves_the_deadline_to_now_plus_the_lease() -> None:
    s = make()
    m = post(s, s.owner, T0)
    claim(s, s.other, m, T0, 30 * SECOND)
    token = m.lease_token
    assert token is not None
    event = s.state.decide_heartbeat(token, m.id, s.other.key_id, T0 + 20 * SECOND, 30 * SECOND)
    assert event == LeaseExtended(s.state.config.id, m.id, token, T0 + 50 * SECOND)
    s.apply(event)
    assert m.lease_expires_at == T0 + 50 * SECOND
    assert s.state.next_deadline() == T0 + 50 * SECOND
    # the old deadline passes without effect
    assert s.state.due_events(T0 + 30 * SECOND) == []
    assert s.state.due_events(T0 + 50 * SECOND - 1) == []
    assert m.claimed_by_name == "other"

    wrong_key = refused(
        lambda: s.state.decide_heartbeat(token, m.id, s.third.key_id, T0 + 21, 30 * SECOND)
    )
    assert (wrong_key.status, wrong_key.code) == (409, "lease_not_held")
    unknown = refused(
        lambda: s.state.decide_heartbeat("nope", m.id, s.other.key_id, T0 + 21, 30 * SECOND)
    )
    assert (unknown.status, unknown.code) == (410, "lease_expired")
    # a heartbeat at the deadline (expiry not yet applied) is too late
    late = refused(
        lambda: s.state.decide_heartbeat(token, m.id, s.other.key_id, T0 + 50 * SECOND, SECOND)
    )
    assert (late.status, late.code) == (410, "lease_expired")

    expire(s, T0 + 50 * SECOND)
    assert summary(s.state)["unclaimed"] == [1]


def test_lease_expiry_after_heartbeats_to_the_same_deadline_returns_the_message_once() -> None:
    """Two lease entries with one deadline must still lapse as one event.

    Claim at t=0 for 300 s, heartbeat at t=100 s for 300 s and at t=200 s for
    200 s: both heartbeats name the deadline t=400 s.
    """
    s = make()
    m = post(s, s.owner, T0)
    claim(s, s.other, m, T0, 300 * SECOND)
    token = m.lease_token
    assert token is not None
    for at, lease in ((100, 300), (200, 200)):
        s.apply(
            s.state.decide_heartbeat(token, m.id, s.other.key_id, T0 + at * SECOND, lease * SECOND)
        )
    deadline = T0 + 400 * SECOND
    assert m.lease_expires_at == deadline
    assert s.state.due_events(deadline - 1) == []
    events = expire(s, deadline)
    # the message is back in the pool once (a reader must not see it twice)
    assert [x.id for x in s.state.page(0, 10, "unclaimed")] == [m.id]
    assert events == [LeaseExpired(s.state.config.id, m.id, token, deadline)]


def test_a_heartbeat_in_the_same_microsecond_as_the_claim_lapses_once() -> None:
    s = make()
    m = post(s, s.owner, T0)
    claim(s, s.other, m, T0, 30 * SECOND)
    token = m.lease_token
    assert token is not None
    s.apply(s.state.decide_heartbeat(token, m.id, s.other.key_id, T0, 30 * SECOND))
    events = expire(s, T0 + 30 * SECOND)
    assert summary(s.state)["unclaimed"] == [1]
    assert events == [LeaseExpired(s.state.config.id, m.id, token, T0 + 30 * SECOND)]


# -- release ----------------------------------------------------------------------


def test_release_returns_the_message_and_invalidates_the_token() -> None:
    s = make()
    m1, m2, m3 = (post(s, s.owner, T0 + n) for n in range(3))
    claim(s, s.other, m2, T0 + 10, 30 * SECOND)
    claim(s, s.other, m1, T0 + 10)
    token = m2.lease_token
    assert token is not None
    assert summary(s.state)["unclaimed"] == [3]

    not_holder = refused(
        lambda: s.state.decide_release(m2, s.actor(s.third)[0], s.third.key_id, T0 + 11)
    )
    assert (not_holder.status, not_holder.code) == (403, "forbidden")
    not_claimed = refused(
        lambda: s.state.decide_release(m3, s.actor(s.other)[0], s.other.key_id, T0 + 11)
    )
    assert (not_claimed.status, not_claimed.code) == (409, "not_claimed")

    event = s.state.decide_release(m2, s.actor(s.other)[0], s.other.key_id, T0 + 12)
    assert event == MessageReleased(s.state.config.id, m2.id, T0 + 12)
    s.apply(event)
    assert summary(s.state) == {
        "live": [(1, "other", None, []), (2, None, None, []), (3, None, None, [])],
        "unclaimed": [2, 3],
        "claimed": [1],
        "history": [],
        "last_seq": 3,
        "next_deadline": T0 + 3_600 * SECOND,
    }
    assert (m2.lease_token, m2.claimed_by_key_id) == (None, None)
    gone = refused(
        lambda: s.state.decide_heartbeat(token, m2.id, s.other.key_id, T0 + 13, 30 * SECOND)
    )
    assert gone.code == "lease_expired"
    # the lapsed deadline of the released lease does nothing
    assert s.state.due_events(T0 + 10 + 30 * SECOND) == []


def test_release_by_the_same_actor_through_another_key_is_lease_not_held() -> None:
    s = make()
    m = post(s, s.owner, T0)
    claim(s, s.other, m, T0, 30 * SECOND)
    # revoke and re-mint the label: same owner, same actor, different key
    s.world.apply_global(s.world.decide_revoke(s.other, T0 + 1), s.next_seq())
    again = mint(s.world, "other", s.next_seq())
    assert again.owner_id == s.other.owner_id
    actor = s.actor(again)
    assert actor == s.actor(s.other)
    error = refused(lambda: s.state.decide_release(m, actor[0], again.key_id, T0 + 2))
    assert (error.status, error.code) == (409, "lease_not_held")
    token = m.lease_token
    assert token is not None
    error = refused(
        lambda: s.state.decide_heartbeat(token, m.id, again.key_id, T0 + 2, 30 * SECOND)
    )
    assert (error.status, error.code) == (409, "lease_not_held")


# -- acks -------------------------------------------------------------------------


def test_an_ack_by_the_holder_ends_the_lease() -> None:
    s = make()
    m = post(s, s.owner, T0)
    claim(s, s.other, m, T0, 30 * SECOND)
    token = m.lease_token
    assert token is not None
    event = ack(s, s.other, m, T0 + SECOND)
    assert event == MessageAcked(s.state.config.id, m.id, *s.actor(s.other), T0 + SECOND, True)
    assert summary(s.state) == {
        "live": [(1, "other", None, ["other"])],
        "unclaimed": [],
        "claimed": [1],
        "history": [],
        "last_seq": 1,
        "next_deadline": T0 + 3_600 * SECOND,
    }
    assert m.lease_token is None
    assert s.state.due_events(T0 + 30 * SECOND) == []
    error = refused(
        lambda: s.state.decide_heartbeat(token, m.id, s.other.key_id, T0 + 2, 30 * SECOND)
    )
    assert error.code == "lease_expired"
    # one ack per actor
    assert ack(s, s.other, m, T0 + 2 * SECOND) is None
    assert [a[1] for a in m.acks] == ["other"]


def test_a_holder_that_acked_before_claiming_still_ends_its_lease_by_acking() -> None:
    """Contract §0.3: an ack by the holder ends the lease.

    The holder's ack answers ``already_acknowledged`` here (one ack per
    actor), but the lease must end all the same: otherwise the message goes
    back to the pool at the deadline and another worker does the job again.
    """
    s = make()
    m = post(s, s.owner, T0)
    assert ack(s, s.other, m, T0 + 1) is not None
    assert claim(s, s.other, m, T0 + 2, 30 * SECOND) == "claimed"
    ack(s, s.other, m, T0 + 3)  # the holder is done
    assert (m.claimed_by_name, m.lease_token) == ("other", None)
    expire(s, T0 + 2 + 30 * SECOND)
    assert summary(s.state)["claimed"] == [1]


def test_an_ack_by_a_bystander_does_not_freeze_the_lease() -> None:
    s = make()
    m = post(s, s.owner, T0)
    claim(s, s.other, m, T0, 30 * SECOND)
    token = m.lease_token
    event = ack(s, s.third, m, T0 + SECOND)
    assert isinstance(event, MessageAcked)
    assert event.ends_lease is False
    assert (m.lease_token, m.lease_expires_at) == (token, T0 + 30 * SECOND)
    assert s.state.due_events(T0 + 30 * SECOND - 1) == []
    expire(s, T0 + 30 * SECOND)
    assert summary(s.state) == {
        "live": [(1, None, None, ["third"])],
        "unclaimed": [1],
        "claimed": [],
        "history": [],
        "last_seq": 1,
        "next_deadline": T0 + 3_600 * SECOND,
    }
    assert ack(s, s.third, m, T0 + 31 * SECOND) is None


def test_an_ack_works_on_unclaimed_and_broadcast_messages() -> None:
    s = make(mode="broadcast")
    m = post(s, s.owner, T0)
    assert ack(s, s.other, m, T0 + 1) is not None
    assert ack(s, s.third, m, T0 + 2) is not None
    assert m.acks == ([*s.actor(s.other), T0 + 1], [*s.actor(s.third), T0 + 2])
    assert m.claimed_by_id is None


# -- TTL expiry, history, retention -----------------------------------------------


def test_ttl_expiry_moves_a_prefix_to_history_at_exactly_expires_at() -> None:
    s = make(ttl_seconds=60)
    m1, m2, m3 = (post(s, s.owner, T0 + n * SECOND) for n in range(3))
    claim(s, s.other, m1, T0 + 10 * SECOND, 3_000 * SECOND)  # lease outlives the TTL
    cid = s.state.config.id
    assert s.state.next_deadline() == T0 + 60 * SECOND
    assert s.state.due_events(T0 + 60 * SECOND - 1) == []

    assert s.state.due_events(T0 + 60 * SECOND) == [MessagesExpired(cid, 1, T0 + 60 * SECOND)]
    expire(s, T0 + 60 * SECOND)
    assert summary(s.state) == {
        "live": [(2, None, None, []), (3, None, None, [])],
        "unclaimed": [2, 3],
        "claimed": [],
        "history": [(1, "expired", T0 + 60 * SECOND)],
        "last_seq": 3,
        "next_deadline": T0 + 61 * SECOND,
    }
    # a late sweep takes everything due, in one event
    assert s.state.due_events(T0 + 70 * SECOND) == [MessagesExpired(cid, 3, T0 + 70 * SECOND)]
    expire(s, T0 + 70 * SECOND)
    assert summary(s.state)["live"] == []
    assert [(e.message.id, e.archived_at) for e in s.state.history] == [
        (m1.id, T0 + 60 * SECOND),
        (m2.id, T0 + 70 * SECOND),
        (m3.id, T0 + 70 * SECOND),
    ]
    for verb, is_claim in (("claimed", True), ("acknowledged", False), ("released", True)):
        with pytest.raises(ApiError) as caught:
            s.state.check_message(m2.id, s.other.key_id, verb, claim=is_claim)
        assert (caught.value.status, caught.value.code) == (410, "message_expired")
    error = refused(lambda: s.state.check_message(m2.id, s.owner.key_id, "retract", claim=False))
    assert (error.status, error.code) == (404, "message_not_found")


def test_a_lease_due_with_its_message_ttl_lapses_only_by_expiry() -> None:
    s = make(ttl_seconds=60)
    m = post(s, s.owner, T0)
    claim(s, s.other, m, T0 + 30 * SECOND, 30 * SECOND)
    events = s.state.due_events(T0 + 60 * SECOND)
    assert events == [MessagesExpired(s.state.config.id, 1, T0 + 60 * SECOND)]


def test_history_pages_newest_first() -> None:
    s = make(ttl_seconds=60)
    messages = [post(s, s.owner, T0 + n) for n in range(5)]
    s.apply(s.state.decide_retract(messages[3], s.owner.key_id, T0 + 10))
    expire(s, T0 + 60 * SECOND + 2)  # seq 1..3 expire; 5 stays
    assert [(e.message.seq, e.reason) for e in s.state.history_page(None, 10)] == [
        (4, "retracted"),
        (3, "expired"),
        (2, "expired"),
        (1, "expired"),
    ]
    first = s.state.history_page(None, 2)
    assert [e.message.seq for e in first] == [4, 3]
    second = s.state.history_page(first[-1].message.seq, 2)
    assert [e.message.seq for e in second] == [2, 1]
    assert s.state.history_page(second[-1].message.seq, 2) == []
    # a time cursor: created strictly before
    assert [e.message.seq for e in s.state.history_page(None, 10, T0 + 2)] == [2, 1]


def test_history_is_purged_at_exactly_archived_at_plus_retention() -> None:
    s = make(ttl_seconds=60, retention_days=1)
    m1 = post(s, s.owner, T0)
    m2 = post(s, s.owner, T0 + 10 * SECOND)
    expire(s, T0 + 60 * SECOND)
    s.apply(s.state.decide_retract(m2, s.owner.key_id, T0 + 65 * SECOND))
    assert summary(s.state)["history"] == [
        (1, "expired", T0 + 60 * SECOND),
        (2, "retracted", T0 + 65 * SECOND),
    ]
    first_purge = T0 + 60 * SECOND + DAY
    assert s.state.next_deadline() == first_purge
    assert s.state.due_events(first_purge - 1) == []
    assert s.state.due_events(first_purge) == [
        HistoryPurged(s.state.config.id, T0 + 60 * SECOND + 1)
    ]
    expire(s, first_purge)
    assert summary(s.state)["history"] == [(2, "retracted", T0 + 65 * SECOND)]
    assert m1.id not in s.state.archived
    error = refused(lambda: s.state.check_message(m1.id, s.other.key_id, "claimed", claim=True))
    assert (error.status, error.code) == (404, "message_not_found")
    assert s.state.next_deadline() == T0 + 65 * SECOND + DAY
    expire(s, T0 + 65 * SECOND + DAY)
    assert summary(s.state)["history"] == []
    assert s.state.archived == {}
    assert s.state.next_deadline() is None


# -- retract ------------------------------------------------------------------------


def test_retract_by_author_or_owner_only_and_never_while_claimed() -> None:
    s = make()
    by_other = post(s, s.other, T0)
    by_other_too = post(s, s.other, T0 + 1)
    held = post(s, s.other, T0 + 2)
    claim(s, s.third, held, T0 + 3)

    bystander = refused(lambda: s.state.decide_retract(by_other, s.third.key_id, T0 + 4))
    assert (bystander.status, bystander.code) == (403, "forbidden")
    claimed = refused(lambda: s.state.decide_retract(held, s.other.key_id, T0 + 4))
    assert (claimed.status, claimed.code) == (409, "message_claimed")

    s.apply(s.state.decide_retract(by_other, s.other.key_id, T0 + 5))  # author
    s.apply(s.state.decide_retract(by_other_too, s.owner.key_id, T0 + 6))  # channel owner
    assert summary(s.state) == {
        "live": [(3, "third", None, [])],
        "unclaimed": [],
        "claimed": [3],
        "history": [(1, "retracted", T0 + 5), (2, "retracted", T0 + 6)],
        "last_seq": 3,
        "next_deadline": T0 + 2 + 3_600 * SECOND,
    }
    gone = refused(
        lambda: s.state.check_message(by_other.id, s.third.key_id, "claimed", claim=True)
    )
    assert (gone.status, gone.code) == (404, "message_not_found")


# -- max_messages and the write throttle --------------------------------------------


def test_max_messages_moves_the_oldest_to_history() -> None:
    s = make(max_messages=3)
    messages = [post(s, s.owner, T0 + n) for n in range(3)]
    claim(s, s.other, messages[0], T0 + 5, 30 * SECOND)
    assert s.state.history == []
    newer = [post(s, s.owner, T0 + 10 + n) for n in range(2)]
    assert summary(s.state) == {
        "live": [(3, None, None, []), (4, None, None, []), (5, None, None, [])],
        "unclaimed": [3, 4, 5],
        "claimed": [],
        "history": [(1, "trimmed", T0 + 10), (2, "trimmed", T0 + 11)],
        "last_seq": 5,
        "next_deadline": T0 + 2 + 3_600 * SECOND,  # the trimmed lease no longer counts
    }
    assert s.state.due_events(T0 + 5 + 30 * SECOND) == []
    error = refused(
        lambda: s.state.check_message(messages[0].id, s.other.key_id, "claimed", claim=True)
    )
    assert error.code == "message_not_found"
    assert [m.id for m in s.state.page(0, 10)] == [messages[2].id, *(m.id for m in newer)]


def test_the_write_throttle_counts_posts_in_the_last_sixty_seconds() -> None:
    s = make(max_writes_per_minute=2)
    post(s, s.owner, T0)
    post(s, s.other, T0 + 30 * SECOND)
    before = packed(s)
    error = refused(lambda: post(s, s.third, T0 + 60 * SECOND - 1))
    assert (error.status, error.code, error.details) == (
        429,
        "channel_write_rate_exceeded",
        {"retry_after": 60},
    )
    assert packed(s) == before
    post(s, s.third, T0 + 60 * SECOND)  # the first post has left the window
    error = refused(lambda: post(s, s.owner, T0 + 90 * SECOND - 1))
    assert error.code == "channel_write_rate_exceeded"
    post(s, s.owner, T0 + 90 * SECOND)
    assert s.state.last_seq == 4


# -- a failed command changes nothing ------------------------------------------------


def test_every_refused_command_leaves_the_bytes_unchanged() -> None:
    s = make(ttl_seconds=60, metadata_schema={"required": ["kind"]}, max_writes_per_minute=10)
    held = post(s, s.owner, T0, metadata={"kind": "a"})
    free = post(s, s.owner, T0 + 1, metadata={"kind": "a"})
    expired = post(s, s.owner, T0 + 2, metadata={"kind": "a"})
    claim(s, s.other, held, T0 + 3, 30 * SECOND)
    token = held.lease_token
    assert token is not None
    # ``expired`` is retracted: a claim on it must say 404 and change nothing
    s.apply(s.state.decide_retract(expired, s.owner.key_id, T0 + 4))
    now = T0 + 5
    state = s.state
    commands: dict[str, Callable[[], object]] = {
        "schema": lambda: post(s, s.owner, now, metadata={}),
        "claim held": lambda: claim(s, s.third, held, now),
        "lease claim held": lambda: claim(s, s.third, held, now, SECOND),
        "claim retracted": lambda: claim(s, s.third, expired, now),
        "heartbeat other key": lambda: state.decide_heartbeat(
            token, held.id, s.third.key_id, now, SECOND
        ),
        "heartbeat unknown": lambda: state.decide_heartbeat("x", held.id, s.other.key_id, now, 1),
        "release free": lambda: state.decide_release(
            free, s.actor(s.other)[0], s.other.key_id, now
        ),
        "release other actor": lambda: state.decide_release(
            held, s.actor(s.third)[0], s.third.key_id, now
        ),
        "retract held": lambda: state.decide_retract(held, s.owner.key_id, now),
        "retract bystander": lambda: state.decide_retract(free, s.third.key_id, now),
        "unknown message": lambda: state.check_message(
            "nope", s.other.key_id, "claimed", claim=True
        ),
        "label in use": lambda: s.world.decide_mint("other", now),
        "foreign actor": lambda: s.world.resolve_acting_actor(s.third, s.actor(s.other)[0], now),
    }
    for name, command in commands.items():
        before = packed(s)
        summary_before = summary(state)
        with pytest.raises(ApiError):
            command()
        assert packed(s) == before, name
        assert summary(state) == summary_before, name
    state.config.paused = True
    before = packed(s)
    assert refused(lambda: post(s, s.owner, now, metadata={"kind": "a"})).code == "channel_paused"
    assert packed(s) == before


def test_a_post_refused_by_the_schema_after_the_window_moved_changes_nothing() -> None:
    """The throttle check runs before the schema check; a refusal must not prune its window."""
    s = make(metadata_schema={"required": ["kind"]}, max_writes_per_minute=5)
    post(s, s.owner, T0, metadata={"kind": "a"})
    before = packed(s)
    error = refused(lambda: post(s, s.owner, T0 + 61 * SECOND, metadata={}))
    assert error.code == "metadata_validation_failed"
    assert recent_posts(s.state) == [T0]
    assert packed(s) == before


def test_deciding_never_applies_actor_creation() -> None:
    s = make()
    m = post(s, s.owner, T0)
    registry = pack_registry(s.world)
    actor, created = s.world.resolve_acting_actor(s.other, "fresh-name", T0 + 1)
    assert created is not None
    assert actor == (created.actor_id, "fresh-name")
    assert pack_registry(s.world) == registry
    # the runtime applies the creation only when the command succeeds
    status, event = s.state.decide_claim(m, actor, s.other.key_id, T0 + 1, None)
    assert status == "claimed"
    assert isinstance(event, MessageClaimed)
    assert pack_registry(s.world) == registry
