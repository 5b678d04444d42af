"""Runtime side of access: pause through the actor, ring-buffer trims and the indexes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from backchannel.core.errors import ApiError
from backchannel.core.records import Message
from backchannel.core.world import World
from backchannel.runtime.hub import SESSION_PURGE_SECONDS, Hub
from backchannel.runtime.journal import MemoryJournal
from backchannel.runtime.service import open_runtime
from backchannel.storage.state import replay
from tests.conftest import test_settings

SECOND = 1_000_000


@asynccontextmanager
async def runtime(tmp_path: Path, **changes: Any) -> AsyncIterator[Hub]:
    settings = test_settings(tmp_path, sandbox_enabled=False, **changes)
    async with open_runtime(settings, in_memory=True) as hub:
        yield hub


async def test_a_trimmed_message_leaves_the_lease_index_but_not_the_message_index(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            spec = hub.channel_defaults("open")
            spec.update(name="ring", mode="claimable", max_messages=1)
            actor = hub.actors[(await hub.create_channel(owner, spec, [])).config.id]
            first: Message = await actor.call(actor.cmd_post, owner, "a", {}, None, None, None)
            leased = await actor.call(actor.cmd_claim, owner, first.id, None, 60 * SECOND)
            assert hub.lease_index == {leased.lease_token: first.id}
            await actor.call(actor.cmd_post, owner, "b", {}, None, None, None)
            assert hub.lease_index == {}
            assert hub.message_actor(first.id) is actor  # archived: still found, as history
            assert [e.reason for e in actor.state.history] == ["trimmed"]


async def test_pause_goes_through_the_actor_with_its_audit_event(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            spec = hub.channel_defaults("open")
            spec.update(name="c", mode="broadcast")
            actor = hub.actors[(await hub.create_channel(owner, spec, [])).config.id]
            journal = hub.journal
            assert isinstance(journal, MemoryJournal)
            state = await actor.call(actor.cmd_pause, True, "10.1.2.3")
            assert state.config.paused is True
            events = hub.world.audit.for_key(owner.key_id, 10)
            assert (events[0].event_type, events[0].remote_addr) == ("channel.pause", "10.1.2.3")
            assert [body[0] for _seq, body in journal.records[-2:]] == [
                "channel.paused",
                "security.recorded",
            ]
            with pytest.raises(ApiError) as refused:
                await actor.call(actor.cmd_post, owner, "x", {}, None, None, None)
            assert refused.value.code == "channel_paused"
            await actor.call(actor.cmd_pause, False, None)
            assert hub.world.audit.for_key(owner.key_id, 1)[0].event_type == "channel.resume"
            await actor.call(actor.cmd_post, owner, "x", {}, None, None, None)


async def test_expired_sessions_are_purged_by_an_event(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(7 * 86_400):
        async with runtime(tmp_path) as hub:
            journal = hub.journal
            assert isinstance(journal, MemoryJournal)
            book = hub.world.sessions
            _raw, key = await hub.mint_key("owner")
            old = book.decide_create(key.key_id, "old", {}, hub.clock.now())
            await hub.commit(old)
            await trio.sleep(12 * 3600)
            young = book.decide_create(key.key_id, "young", {}, hub.clock.now())
            await hub.commit(young)
            await trio.sleep(12 * 3600 + SESSION_PURGE_SECONDS / 2)
            assert len(book.sessions) == 2  # expired, kept for at least one purge interval
            await trio.sleep(SESSION_PURGE_SECONDS * 2)
            assert list(book.sessions) == [young.session_id]
            purges = [body for _seq, body in journal.records if body[0] == "session.purged"]
            assert len(purges) == 1
            await trio.sleep(12 * 3600)
            assert book.sessions == {}
            # replaying the journal gives the same (empty) book
            replayed = World()
            replay(replayed, journal.records)
            assert replayed.sessions.sessions == {}
            assert replayed.sessions.listing(key.key_id, 0) == []


async def test_idempotent_replies_are_purged_after_their_ttl_by_an_event(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Stored replies would otherwise grow forever (the soak saw RSS creep)."""
    with trio.fail_after(7 * 86_400):
        async with runtime(tmp_path) as hub:
            journal = hub.journal
            assert isinstance(journal, MemoryJournal)
            _raw, key = await hub.mint_key("owner")
            hub.record_idempotent(key.key_id, "first", "POST", "/v1/actors", 201, b"{}")
            await trio.sleep(12 * 3600)
            hub.record_idempotent(key.key_id, "second", "POST", "/v1/actors", 201, b"{}")
            # purges run every SESSION_PURGE_SECONDS; check half an interval off the ticks
            await trio.sleep(12 * 3600 + SESSION_PURGE_SECONDS * 1.5)
            assert set(hub.world.idempotency) == {(key.key_id, "second")}
            await trio.sleep(12 * 3600)
            assert hub.world.idempotency == {}
            purges = [body for _seq, body in journal.records if body[0] == "idem.purged"]
            assert len(purges) == 2
            replayed = World()
            replay(replayed, list(journal.records))
            assert replayed.idempotency == {}


async def test_the_purge_interval_and_the_replay_window_are_settings(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A short window and interval bound the stored replies to minutes of traffic (the soak)."""
    with trio.fail_after(3600):
        async with runtime(tmp_path, idempotency_ttl_seconds=120, purge_interval_seconds=30) as hub:
            _raw, key = await hub.mint_key("owner")
            hub.record_idempotent(key.key_id, "early", "POST", "/v1/actors", 201, b"{}")
            await trio.sleep(100)
            assert set(hub.world.idempotency) == {(key.key_id, "early")}  # still in its window
            hub.record_idempotent(key.key_id, "late", "POST", "/v1/actors", 201, b"{}")
            await trio.sleep(20 + 30 + 1)  # the window ends at 120 s; the next purge within 30 s
            assert set(hub.world.idempotency) == {(key.key_id, "late")}
            await trio.sleep(120)
            assert hub.world.idempotency == {}
