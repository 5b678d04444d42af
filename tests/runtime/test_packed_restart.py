"""A restart restores channels passive and packed (core.packed): nothing is lost by it.

Virtual time (``autojump_clock``) and the in-memory journal, as in
``test_passivation``, whose ``restarted`` packs a snapshot in memory and
starts a second Hub on it. Each test checks that the channel it relies on
was still packed when it needed to be: the promise is kept *without*
decoding the messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from backchannel.core.records import KeyRecord
from backchannel.runtime import snapshotter
from backchannel.runtime.actor import ChannelActor
from backchannel.runtime.hub import Hub
from backchannel.storage.snapshot import load_snapshot
from backchannel.storage.state import load_snapshot_payload
from tests.runtime.test_actor import SECOND, claim, open_channel, post, records, runtime
from tests.runtime.test_passivation import idle, restarted
from tests.storage.test_packed import assert_same_channel

Setup = Callable[[Hub, KeyRecord], Awaitable[tuple[ChannelActor, float]]]


async def leased(hub: Hub, key: KeyRecord) -> tuple[ChannelActor, float]:
    actor = await open_channel(hub, key)
    await claim(actor, key, await post(actor, key), 600 * SECOND)
    return actor, 600


async def ttl(hub: Hub, key: KeyRecord) -> tuple[ChannelActor, float]:
    actor = await open_channel(hub, key, mode="broadcast")
    await post(actor, key)
    return actor, 86_400


async def delayed(hub: Hub, key: KeyRecord) -> tuple[ChannelActor, float]:
    actor = await open_channel(hub, key)
    await actor.call(actor.cmd_post_later, 3600 * SECOND, key, "later", {}, None, None, None)
    return actor, 3600


async def purged(hub: Hub, key: KeyRecord) -> tuple[ChannelActor, float]:
    actor = await open_channel(hub, key)
    message = await post(actor, key)
    await actor.call(actor.cmd_retract, key, message.id)
    return actor, 7 * 86_400


@pytest.mark.parametrize(
    ("setup", "kind"),
    [
        (leased, "lease.expired"),
        (ttl, "msg.expired"),
        (delayed, "msg.visible"),
        (purged, "history.purged"),
    ],
)
async def test_a_packed_channel_meets_its_deadline_on_time(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, setup: Setup, kind: str
) -> None:
    with trio.fail_after(8 * 86_400):
        async with runtime(tmp_path) as first:
            _raw, key = await first.mint_key("owner")
            actor, due_in = await setup(first, key)
            due_us = actor.state.next_deadline()
            assert due_us is not None
            assert abs(due_us - first.clock.now() - due_in * SECOND) < SECOND
            async with restarted(first) as hub:
                again = hub.actors[actor.channel_id]
                due = hub.clock.trio_time(due_us)
                await trio.sleep_until(due - 0.000_001)
                await trio.testing.wait_all_tasks_blocked()
                assert again.state.packed is not None  # nothing has read it yet
                assert (records(hub, kind), again.passive) == ([], True)
                await trio.sleep_until(due)
                await trio.testing.wait_all_tasks_blocked()
                assert len(records(hub, kind)) == 1
                assert again.state.packed is None  # the actor read it to apply what came due
                assert again.passive


async def test_a_packed_channel_is_indexed_counted_and_deleted_without_unpacking(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(3600):
        async with runtime(tmp_path) as first:
            _raw, key = await first.mint_key("owner")
            actor = await open_channel(first, key)
            plain, held, gone = [await post(actor, key, text) for text in ("a", "b", "c")]
            result = await claim(actor, key, held, 600 * SECOND)
            await actor.call(actor.cmd_retract, key, gone.id)
            later, _cursor = await actor.call(
                actor.cmd_post_later, 3600 * SECOND, key, "later", {}, None, None, None
            )
            async with restarted(first) as hub:
                again = hub.actors[actor.channel_id]
                for message in (plain, held, gone, later):
                    assert hub.message_actor(message.id) is again
                assert hub.lease_actor(result.lease_token or "") == (again, held.id)
                stats = hub.statistics()
                assert (stats.live_messages, stats.indexed_messages, stats.open_leases) == (2, 4, 1)
                assert again.state.claimed_count == 1
                assert again.state.packed is not None
                await hub.delete_channel(key, actor.channel_id)
                assert (hub.message_index, hub.lease_index) == ({}, {})
                assert again.state.packed is not None  # what is thrown away is not decoded


async def test_a_snapshot_writes_a_packed_channel_back_as_it_was_loaded(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with runtime(tmp_path) as first:
            _raw, key = await first.mint_key("owner")
            quiet = await open_channel(first, key, name="quiet")
            busy = await open_channel(first, key, name="busy")
            for n in range(5):
                await post(quiet, key, f"q{n}")
                await post(busy, key, f"b{n}")
            async with restarted(first) as hub:
                await post(hub.actors[busy.channel_id], key, "after the restart")
                report = await snapshotter.take_snapshot(hub, tmp_path / "snaps")
                assert report.messages == 11
                packed = hub.world.channels[quiet.channel_id].packed
                assert packed is not None
                _seq, payload = load_snapshot(report.path)
                loaded, _clock = load_snapshot_payload(payload)
                written = loaded.channels[quiet.channel_id].packed
                assert written is not None
                assert (written.live, written.ids) == (packed.live, packed.ids)  # as they were
                for channel_id, state in hub.world.channels.items():
                    assert_same_channel(loaded.channels[channel_id], state)
                assert [m.content for m in loaded.channels[busy.channel_id].live.values()] == [
                    *(f"b{n}" for n in range(5)),
                    "after the restart",
                ]


async def test_a_channel_going_passive_after_use_keeps_working(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(3600):
        async with runtime(tmp_path) as first:
            _raw, key = await first.mint_key("owner")
            actor = await open_channel(first, key)
            message = await post(actor, key)
            async with restarted(first) as hub:
                again = hub.actors[actor.channel_id]
                result = await claim(again, key, message)
                assert result.status == "claimed"
                assert again.state.packed is None
                await idle(hub, again)
                assert again.state.live[message.id].claimed_by_key_id == key.key_id
