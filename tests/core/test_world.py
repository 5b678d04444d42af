"""The registries and the event plumbing: what mutation testing found unheld.

Each test pins a fact that a surviving mutant changed: the fields an
``ActorCreated`` carries into the actor record, which actor a key may act
as, the wire code of a refusal, that ``World.apply`` routes a channel event
to its channel, the exact instant the retention purge takes an entry.
"""

from __future__ import annotations

from typing import Any

import pytest

from backchannel.core.errors import ApiError
from backchannel.core.events import ChannelCreated, from_wire, to_wire
from backchannel.core.records import KeyRecord
from backchannel.core.world import World

SECOND = 1_000_000
DAY = 86_400 * SECOND
T0 = 1_800_000_000 * SECOND


def spec(name: str, mode: str = "claimable", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "mode": mode,
        "access": "open",
        "discoverable": True,
        "description": "",
        "metadata_schema": {},
        "pinned_message": None,
        "ttl_seconds": 60,
        "retention_days": 1,
        "max_messages": None,
        "max_writes_per_minute": None,
        "webhook_url": None,
        "webhook_secret": None,
    }
    base.update(changes)
    return base


def mint(world: World, label: str) -> KeyRecord:
    _raw, event = world.decide_mint(label, T0)
    world.apply(event, len(world.keys) + 1)
    return world.keys[event.key_id]


def test_a_created_actor_keeps_what_it_was_created_with() -> None:
    world = World()
    key = mint(world, "alice")
    event = world.decide_create_actor(key, "builder", "builds things", {"team": "a"}, T0 + 5)
    world.apply(event, 10)
    actor = world.actors[event.actor_id]
    assert (actor.owner_id, actor.created_by_key_id) == (key.owner_id, key.key_id)
    assert (actor.name, actor.description, actor.metadata) == (
        "builder",
        "builds things",
        {"team": "a"},
    )
    assert from_wire(to_wire(event)) == event


def test_a_key_may_not_act_as_another_owners_actor() -> None:
    world = World()
    alice, bob = mint(world, "alice"), mint(world, "bob")
    event = world.decide_create_actor(alice, "builder", "", {}, T0)
    world.apply(event, 10)
    assert world.resolve_acting_actor(alice, event.actor_id, T0) == (
        (event.actor_id, "builder"),
        None,
    )
    with pytest.raises(ApiError) as refused:
        world.resolve_acting_actor(bob, event.actor_id, T0)
    assert (refused.value.status, refused.value.code) == (403, "actor_forbidden")
    assert refused.value.message
    # bob's own actor of the same name is another actor
    (bobs_id, name), created = world.resolve_acting_actor(bob, "builder", T0)
    assert created is not None
    assert (bobs_id, name) == (created.actor_id, "builder")
    assert bobs_id != event.actor_id


def test_a_broadcast_message_cannot_be_claimed() -> None:
    world = World()
    alice = mint(world, "alice")
    created = world.decide_create_channel(alice, spec("news", "broadcast"), [], T0)
    world.apply(created, 10)
    state = world.channels[created.channel_id]
    posted = state.decide_post(
        content="x", metadata={}, key_id=alice.key_id, now=T0, actor=None,
        actor_label=None, mentions=[],
    )  # fmt: skip
    world.apply(posted, 11)  # World.apply routes it to the channel
    assert list(state.live) == [posted.message_id]
    with pytest.raises(ApiError) as refused:
        state.check_message(posted.message_id, alice.key_id, "claimed", claim=True)
    assert (refused.value.status, refused.value.code) == (409, "channel_not_claimable")
    assert refused.value.message
    # an ack needs no claimable channel
    assert state.check_message(posted.message_id, alice.key_id, "acknowledged", claim=False)


def test_an_unknown_event_kind_names_itself() -> None:
    with pytest.raises(ValueError, match=r"unknown event kind 'no\.such'"):
        from_wire(["no.such", 1, 2])


def test_the_retention_purge_takes_entries_archived_strictly_before_its_bound() -> None:
    world = World()
    alice = mint(world, "alice")
    created = world.decide_create_channel(alice, spec("jobs"), [], T0)
    world.apply(created, 10)
    state = world.channels[created.channel_id]
    ids = []
    for offset in (0, 1):  # two posts one microsecond apart
        posted = state.decide_post(
            content="x", metadata={}, key_id=alice.key_id, now=T0 + offset, actor=None,
            actor_label=None, mentions=[],
        )  # fmt: skip
        state.apply(posted, 11 + offset)
        ids.append(posted.message_id)
    first_archived = T0 + 60 * SECOND
    for at in (first_archived, first_archived + 1):
        [expiry] = state.due_events(at)
        state.apply(expiry, 20)
    assert [e.archived_at for e in state.history] == [first_archived, first_archived + 1]
    purge_at = first_archived + DAY
    assert state.next_deadline() == purge_at
    assert state.due_events(purge_at - 1) == []
    [purge] = state.due_events(purge_at)
    assert purge.before == first_archived + 1  # type: ignore[union-attr]
    state.apply(purge, 30)
    assert [e.message.id for e in state.history] == [ids[1]]  # archived at the bound: kept
    assert set(state.archived) == {ids[1]}
    assert state.next_deadline() == purge_at + 1


def test_authentication_refuses_each_bad_key_with_its_reason() -> None:
    world = World()
    raw, event = world.decide_mint("alice", T0)
    world.apply(event, 1)
    assert world.authenticate(raw) is world.keys[event.key_id]
    key_id, _, secret = raw.partition(".")
    cases = [
        (None, "Missing X-API-Key header"),
        ("", "Missing X-API-Key header"),
        (key_id, "Malformed API key"),
        (f".{secret}", "Malformed API key"),
        (f"{key_id}.", "Malformed API key"),
        (f"{key_id}.{secret}x", "Invalid API key"),
        (f"bck_nobody.{secret}", "Invalid API key"),
    ]
    for value, reason in cases:
        with pytest.raises(ApiError) as refused:
            world.authenticate(value)
        assert (refused.value.status, refused.value.code, refused.value.message) == (
            401,
            "unauthorized",
            reason,
        ), value
    world.apply(world.decide_revoke(world.keys[event.key_id], T0 + 1), 2)
    with pytest.raises(ApiError) as refused:
        world.authenticate(raw)
    assert (refused.value.status, refused.value.message) == (401, "Inactive API key")
    assert "alice" not in world.active_labels


def test_a_channel_resolves_by_id_alias_or_the_callers_newest_of_that_name() -> None:
    world = World()
    alice, bob = mint(world, "alice"), mint(world, "bob")
    older = world.decide_create_channel(alice, spec("jobs"), [], T0)
    world.apply(older, 10)
    newer = world.decide_create_channel(alice, spec("jobs"), [], T0 + 1)
    world.apply(newer, 11)
    private = world.decide_create_channel(bob, spec("secret", access="private"), [], T0)
    world.apply(private, 12)
    assert world.resolve_channel(older.channel_id, alice).config.id == older.channel_id
    assert world.resolve_channel(older.channel_id, None).config.id == older.channel_id
    assert world.resolve_channel("jobs", alice).config.id == newer.channel_id
    for who in (bob, None):  # a name is the caller's own
        with pytest.raises(ApiError) as refused:
            world.resolve_channel("jobs", who)
        assert (refused.value.status, refused.value.code) == (404, "channel_not_found")
        assert "'jobs'" in refused.value.message
    with pytest.raises(ApiError) as refused:
        world.resolve_channel(private.channel_id, alice)
    assert (refused.value.status, refused.value.code) == (403, "channel_access_denied")
    assert world.resolve_channel(private.channel_id, bob).config.id == private.channel_id
    assert world.resolve_channel(private.channel_id, None).config.id == private.channel_id
    made = world.decide_create_channel(bob, spec("public"), [], T0)
    world.apply(ChannelCreated(made.channel_id, made.config, ["lobby"], T0), 13)
    for who in (alice, None):
        assert world.resolve_channel("lobby", who).config.id == made.channel_id
