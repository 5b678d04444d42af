"""Access and multi-party state in the pure core: scopes, minting, actor aliases and
webhooks, sessions, the security audit, pause, and the ring buffer's history.

Every test decides with ``decide_*``, changes only through ``apply``, and
checks that replaying the journal and loading a snapshot give back exactly
the live state.
"""

from __future__ import annotations

from typing import Any

import pytest

from backchannel.core.errors import ApiError
from backchannel.core.events import Event, MessagePosted, from_wire, to_wire
from backchannel.core.records import KeyRecord
from backchannel.core.scopes import decide_set_scopes, require_scope
from backchannel.core.sessions import SESSION_LIFE_US
from backchannel.core.webhooks import checked_url, owned_actor
from backchannel.core.world import World
from backchannel.storage.state import (
    load_snapshot_payload,
    pack_channel,
    pack_registry,
    pack_snapshot,
    replay,
)

T0 = 1_800_000_000_000_000
SECOND = 1_000_000


class Journal:
    """A world changed only by applying events, with the log it would have written."""

    def __init__(self) -> None:
        self.world = World()
        self.records: list[tuple[int, Any]] = []

    def apply(self, *events: Event | None) -> None:
        for event in events:
            if event is None:
                continue
            wire = to_wire(event)
            assert from_wire(wire) == event
            self.records.append((len(self.records) + 1, wire))
            self.world.apply(event, len(self.records))

    def mint(self, label: str, now: int = T0) -> KeyRecord:
        _raw, event = self.world.decide_mint(label, now)
        self.apply(event)
        return self.world.keys[event.key_id]

    def channel(self, key: KeyRecord, **config: Any) -> str:
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
            **config,
        }
        created = self.world.decide_create_channel(key, spec, [], T0)
        self.apply(created)
        return created.channel_id

    def assert_replay_and_snapshot_match(self) -> None:
        live = packed(self.world)
        replayed = World()
        replay(replayed, self.records)
        assert packed(replayed) == live
        registry = pack_registry(self.world)
        channels = [pack_channel(c) for c in self.world.channels.values()]
        loaded, _clock = load_snapshot_payload(pack_snapshot(T0, registry, channels))
        assert packed(loaded) == live


def packed(world: World) -> tuple[Any, ...]:
    """The world's packed form plus its access state read directly (not through packing)."""
    return (
        pack_registry(world),
        [pack_channel(c) for c in world.channels.values()],
        world.public_minting,
        {k.key_id: k.scopes for k in world.keys.values()},
        world.actor_aliases,
        list(world.sessions.sessions.values()),
        list(world.webhooks.hooks.values()),
        world.audit.events,
        {a: world.audit.for_key(a, 500) for a in world.keys},
        [c.config.paused for c in world.channels.values()],
    )


def refused(fn: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fn()
    return caught.value


# -- scopes --------------------------------------------------------------------------


def test_scopes_narrow_but_never_widen() -> None:
    j = Journal()
    key = j.mint("alice")
    require_scope(key, "messages:write")  # unrestricted
    j.apply(decide_set_scopes(key, ["messages:write", "messages:read", "messages:read"], T0))
    assert key.scopes == ["messages:read", "messages:read", "messages:write"]
    require_scope(key, "messages:read")
    error = refused(lambda: require_scope(key, "messages:claim"))
    assert (error.status, error.code) == (403, "insufficient_scope")
    assert error.details == {
        "required_scope": "messages:claim",
        "granted_scopes": ["messages:read", "messages:read", "messages:write"],
    }
    wider = refused(lambda: decide_set_scopes(key, ["messages:read", "channels:write"], T0))
    assert (wider.code, wider.details["required_scope"]) == ("insufficient_scope", "channels:write")
    assert refused(lambda: decide_set_scopes(key, "messages:read", T0)).code == "invalid_scopes"
    assert refused(lambda: decide_set_scopes(key, ["nope"], T0)).code == "invalid_scope"
    j.apply(decide_set_scopes(key, [], T0 + 1))
    assert refused(lambda: require_scope(key, "messages:read")).code == "insufficient_scope"
    j.assert_replay_and_snapshot_match()


# -- minting, keys and the audit -------------------------------------------------------


def test_minting_choice_and_audit_survive_replay_and_snapshots() -> None:
    j = Journal()
    assert j.world.public_minting is None
    key = j.mint("alice")
    audit = j.world.audit
    j.apply(
        audit.decide(
            "key.issue",
            actor_key_id=None,
            subject_key_id=key.key_id,
            remote_addr="10.0.0.1",
            detail={"agent_label": "alice"},
            now=T0,
        ),
        j.world.decide_minting(False, T0 + 1),
        audit.decide(
            "minting.toggle",
            actor_key_id=None,
            subject_key_id=None,
            remote_addr=None,
            detail={"public_minting_enabled": False},
            now=T0 + 1,
        ),
        j.world.decide_revoke(key, T0 + 2),
        audit.decide(
            "key.revoke",
            actor_key_id=key.key_id,
            subject_key_id=key.key_id,
            remote_addr=None,
            detail={"self_revoked": True},
            now=T0 + 2,
        ),
    )
    assert j.world.public_minting is False
    mine = audit.for_key(key.key_id, 100)
    assert [e.event_type for e in mine] == ["key.revoke", "key.issue"]  # newest first; once each
    assert audit.for_key(key.key_id, 1) == mine[:1]
    assert len(audit.events) == 3
    j.assert_replay_and_snapshot_match()


# -- actors ----------------------------------------------------------------------------


def test_actor_aliases_are_the_owners_and_global() -> None:
    j = Journal()
    alice, bob = j.mint("alice"), j.mint("bob")
    actor = j.world.actors[next(iter(j.world.actors_by_name[("alice", "alice")]))]
    assert refused(lambda: j.world.decide_alias_actor(bob, actor.id, "x", T0)).code == (
        "actor_forbidden"
    )
    j.apply(j.world.decide_alias_actor(alice, actor.id, "x", T0))
    assert actor.aliases == ["x"]
    assert j.world.find_actor("x") is actor
    bobs = j.world.actors_by_name[("bob", "bob")][0]
    conflict = refused(lambda: j.world.decide_alias_actor(bob, bobs, "x", T0))
    assert (conflict.status, conflict.code) == (409, "alias_conflict")
    assert refused(lambda: j.world.decide_alias_actor(alice, "nope", "y", T0)).code == (
        "actor_not_found"
    )
    j.apply(j.world.decide_alias_actor(alice, "x", "y", T0))  # by alias
    assert actor.aliases == ["x", "y"]
    j.assert_replay_and_snapshot_match()


def test_webhooks_upsert_and_delete() -> None:
    j = Journal()
    alice, bob = j.mint("alice"), j.mint("bob")
    actor_id = j.world.actors_by_name[("alice", "alice")][0]
    book = j.world.webhooks
    actor = owned_actor(j.world.actors, alice, actor_id)
    assert refused(lambda: owned_actor(j.world.actors, bob, actor_id)).code == "actor_forbidden"
    assert refused(lambda: book.get(actor)).code == "webhook_not_found"
    assert book.decide_delete(actor, T0) is None
    j.apply(book.decide_set(actor, "https://a.example", "s", T0))
    j.apply(book.decide_set(actor, "https://b.example", None, T0 + 1))
    hook = book.get(actor)
    assert (hook.url, hook.secret, hook.updated_at) == ("https://b.example", None, T0 + 1)
    j.assert_replay_and_snapshot_match()
    j.apply(book.decide_delete(actor, T0 + 2))
    assert book.hooks == {}
    j.assert_replay_and_snapshot_match()


@pytest.mark.parametrize(
    "url", ["http://a", "HTTPS://a.example:8443/p?q=1#f", "  https://a.example  "]
)
def test_checked_url_accepts_http_urls(url: str) -> None:
    assert checked_url(url) == url.strip()


@pytest.mark.parametrize(
    "url", [None, "", "a.example", "ftp://a", "https://", "https://a b", "http://[::1", 1]
)
def test_checked_url_refuses_the_rest(url: Any) -> None:
    assert refused(lambda: checked_url(url)).code == "invalid_webhook_url"


# -- sessions --------------------------------------------------------------------------


def test_sessions_are_per_key_and_expire_from_the_list() -> None:
    j = Journal()
    alice, bob = j.mint("alice"), j.mint("bob")
    book = j.world.sessions
    first = book.decide_create(alice.key_id, "a", {"x": 1, "n": {"a": 1}}, T0)
    second = book.decide_create(alice.key_id, "b", {}, T0 + SECOND)
    j.apply(first, second, book.decide_create(bob.key_id, "c", {}, T0))
    assert first.expires_at == T0 + SESSION_LIFE_US
    assert [s.name for s in book.listing(alice.key_id, T0 + SECOND)] == ["b", "a"]
    assert refused(lambda: book.get(bob.key_id, first.session_id)).code == "session_not_found"
    j.apply(book.decide_patch(alice.key_id, first.session_id, {"n": {"b": 2}}, T0 + 5))
    session = book.get(alice.key_id, first.session_id)
    assert session.state == {"x": 1, "n": {"b": 2}}
    assert (session.updated_at, session.expires_at) == (T0 + 5, T0 + SESSION_LIFE_US)
    assert [s.name for s in book.listing(alice.key_id, T0 + SESSION_LIFE_US)] == ["b"]
    assert book.listing(alice.key_id, T0 + SECOND + SESSION_LIFE_US) == []
    j.assert_replay_and_snapshot_match()
    j.apply(book.decide_delete(alice.key_id, second.session_id, T0 + 6))
    assert refused(lambda: book.decide_delete(alice.key_id, second.session_id, T0)).code == (
        "session_not_found"
    )
    assert second.session_id not in book.sessions
    assert [s.name for s in book.listing(alice.key_id, T0 + 6)] == ["a"]
    j.assert_replay_and_snapshot_match()


# -- channels: pause and the ring buffer -----------------------------------------------


def test_pause_refuses_posts_until_resumed() -> None:
    j = Journal()
    alice = j.mint("alice")
    channel = j.world.channels[j.channel(alice)]

    def post(now: int) -> MessagePosted:
        return channel.decide_post(
            content="x",
            metadata={},
            key_id=alice.key_id,
            now=now,
            actor=None,
            actor_label=None,
            mentions=[],
        )

    j.apply(post(T0 + 1))
    j.apply(channel.decide_pause(True, T0 + 2))
    assert (channel.config.paused, channel.config.updated_at) == (True, T0 + 2)
    error = refused(lambda: post(T0 + 3))
    assert (error.status, error.code, error.details) == (503, "channel_paused", {"retry_after": 30})
    j.assert_replay_and_snapshot_match()
    j.apply(channel.decide_pause(False, T0 + 4))
    j.apply(post(T0 + 5))
    assert len(channel.live) == 2
    j.assert_replay_and_snapshot_match()


def test_the_ring_buffer_sends_the_oldest_to_history_on_replay_too() -> None:
    j = Journal()
    alice = j.mint("alice")
    channel = j.world.channels[j.channel(alice, max_messages=2, max_writes_per_minute=10)]
    for n in range(5):
        event = channel.decide_post(
            content=f"m{n}",
            metadata={},
            key_id=alice.key_id,
            now=T0 + n,
            actor=None,
            actor_label=None,
            mentions=[],
        )
        j.apply(event)
    assert [m.content for m in channel.live.values()] == ["m3", "m4"]
    assert [(e.message.content, e.reason, e.archived_at) for e in channel.history] == [
        ("m0", "trimmed", T0 + 2),
        ("m1", "trimmed", T0 + 3),
        ("m2", "trimmed", T0 + 4),
    ]
    j.assert_replay_and_snapshot_match()
