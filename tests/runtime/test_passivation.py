"""Passive channels on virtual time: idle actors stop, come back, and keep every promise.

The real runtime (hub, actors, in-memory journal) under ``autojump_clock``;
the idle window is the default 60 s. Each body runs under
``trio.fail_after`` on that clock. A "restart" packs a snapshot in memory
(the storage codec, no files, so no worker threads confuse autojump) and
starts a second Hub on the loaded world: every channel starts passive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing

from backchannel.core.errors import ApiError
from backchannel.core.records import KeyRecord, Message
from backchannel.runtime import access
from backchannel.runtime.actor import ChannelActor
from backchannel.runtime.claimers import claim_next
from backchannel.runtime.clock import WallClock
from backchannel.runtime.hub import Hub
from backchannel.runtime.journal import MemoryJournal
from backchannel.storage.state import (
    load_snapshot_payload,
    pack_channel,
    pack_registry,
    pack_snapshot,
)
from tests.runtime.test_actor import (
    SECOND,
    claim,
    long_poll,
    open_channel,
    post,
    records,
    runtime,
)

WINDOW = 60.0


def actor_tasks() -> int:
    """Channel actor loops running now, counted in trio's task tree."""
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None
    pending = [root]
    while pending:
        task = pending.pop()
        count += task.name.endswith("ChannelActor.run")
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


async def idle(hub: Hub, actor: ChannelActor) -> None:
    """Let ``actor``'s idle window pass; it is passive afterwards."""
    await trio.sleep_until(actor.last_used + WINDOW)
    await trio.testing.wait_all_tasks_blocked()
    assert actor.passive


@asynccontextmanager
async def restarted(old: Hub) -> AsyncIterator[Hub]:
    """A new Hub on ``old``'s state as a snapshot holds it (packed and loaded)."""
    world = old.world
    payload = pack_snapshot(
        old.clock.now(),
        pack_registry(world),
        [pack_channel(state) for state in world.channels.values()],
    )
    loaded, clock_us = load_snapshot_payload(payload)
    journal = MemoryJournal(next_seq=old.journal.last_seq + 1)
    hub = Hub(old.settings, loaded, journal, WallClock(clock_us + 1))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        try:
            yield hub
        finally:
            hub.close()


async def test_an_idle_channel_goes_passive_at_the_end_of_its_window_and_a_post_brings_it_back(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(600):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("owner")
            actor = await open_channel(hub, key, mode="broadcast")
            assert actor.passive  # created idle: no task until it is used
            await post(actor, key, "one")
            used = actor.last_used
            assert (actor.passive, actor_tasks()) == (False, 1)
            await trio.sleep_until(used + WINDOW - 0.001)
            assert not actor.passive
            await trio.sleep_until(used + WINDOW)
            await trio.testing.wait_all_tasks_blocked()
            assert (actor.passive, actor_tasks(), actor.streams, actor.claimers) == (
                True,
                0,
                None,
                None,
            )
            stats = hub.statistics()
            assert (stats.channels, stats.active_actors, stats.passive_channels) == (1, 0, 1)
            assert actor.statistics().inbox_depth == 0
            # a read with nothing due is served from the state: it stays passive
            read = actor.read_page(0, 10, None, None)
            assert read is not None
            assert [m.content for m in read[0]] == ["one"]
            assert actor.passive
            second = await post(actor, key, "two")
            assert (second.seq, actor.passive, actor_tasks()) == (2, False, 1)
            assert [m.content for m in actor.state.live.values()] == ["one", "two"]
            assert hub.message_actor(second.id) is actor


async def test_a_delayed_message_on_a_passive_channel_becomes_visible_on_time(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(7200):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("owner")
            actor = await open_channel(hub, key)
            message, _cursor = await actor.call(
                actor.cmd_post_later, 3600 * SECOND, key, "later", {}, None, None, None
            )
            posted = trio.current_time()
            await idle(hub, actor)
            activations = hub.passivation.activations
            await trio.sleep_until(posted + 3600 - 0.000_001)
            assert (message.id in actor.state.delayed, actor.passive) == (True, True)
            await trio.sleep_until(posted + 3600)
            await trio.testing.wait_all_tasks_blocked()
            assert message.id in actor.state.live
            assert len(records(hub, "msg.visible")) == 1
            assert hub.passivation.activations == activations + 1
            assert actor.passive  # applied what came due, still idle: passive at once


async def test_a_message_ttl_on_a_passive_channel_expires_on_time(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(90_000):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("owner")
            actor = await open_channel(hub, key, mode="broadcast")
            message = await post(actor, key)
            posted = trio.current_time()
            await idle(hub, actor)
            await trio.sleep_until(posted + 86_400 - 0.000_001)
            assert message.id in actor.state.live
            await trio.sleep_until(posted + 86_400)
            await trio.testing.wait_all_tasks_blocked()
            assert message.id not in actor.state.live
            assert len(records(hub, "msg.expired")) == 1
            assert actor.passive


async def test_a_lease_survives_a_restart_and_lapses_on_time_on_a_passive_channel(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(3600):
        async with runtime(tmp_path) as first:
            _raw, owner = await first.mint_key("owner")
            _raw, worker = await first.mint_key("worker")
            jobs = await open_channel(first, owner)
            news = await open_channel(first, owner, mode="broadcast", name="news")
            leased = await post(jobs, owner, "leased")
            await post(news, owner, "quiet")
            await idle(first, news)  # snapshotted while passive
            result = await claim(jobs, worker, leased, 600 * SECOND)
            claimed_at = trio.current_time()
            assert not jobs.passive  # a lease keeps the actor
            await trio.sleep(WINDOW * 2)
            assert not jobs.passive
            async with restarted(first) as hub:
                assert hub.statistics().passive_channels == 2  # every channel starts passive
                assert hub.passivation.running == set()  # (the first hub's jobs still runs)
                states = hub.world.channels
                assert [m.content for m in states[news.channel_id].live.values()] == ["quiet"]
                again = hub.actors[jobs.channel_id]
                assert hub.lease_actor(result.lease_token or "") == (again, leased.id)
                await trio.sleep_until(claimed_at + 600 - 0.000_001)
                assert states[jobs.channel_id].live[leased.id].lease_token is not None
                await trio.sleep_until(claimed_at + 600)
                await trio.testing.wait_all_tasks_blocked()
                assert states[jobs.channel_id].live[leased.id].lease_token is None
                assert hub.lease_index == {}
                assert len(records(hub, "lease.expired")) == 1
                assert again.passive
                assert hub.actors[news.channel_id].passive


async def test_a_long_poll_on_a_passive_channel_is_woken_by_the_post(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(600):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("owner")
            actor = await open_channel(hub, key, mode="broadcast")
            await post(actor, key, "old")
            await idle(hub, actor)
            answers: list[tuple[float, list[str]]] = []

            async def poll() -> None:
                page = await long_poll(hub, actor, 1, 10, 30)
                answers.append((trio.current_time(), [m.content for m in page]))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await trio.testing.wait_all_tasks_blocked()
                assert (actor.passive, actor.parked, actor_tasks()) == (False, 1, 1)
                await trio.sleep(WINDOW * 0.2)
                posted_at = trio.current_time()
                await post(actor, key, "new")
            assert answers == [(posted_at, ["new"])]


async def test_a_parked_waiter_keeps_its_channel_running(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(600):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("owner")
            actor = await open_channel(hub, key, mode="broadcast")
            await post(actor, key)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(actor.park)
                await trio.sleep(WINDOW * 3)
                assert (actor.passive, actor.parked) == (False, 1)
                await post(actor, key)  # wakes the park
            await trio.sleep(WINDOW)
            await trio.testing.wait_all_tasks_blocked()
            assert actor.passive


async def test_a_hundred_commands_at_once_on_a_passive_channel_start_one_actor(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(600):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("owner")
            actor = await open_channel(hub, key, mode="broadcast")
            await post(actor, key, "first")
            await idle(hub, actor)
            activations = hub.passivation.activations
            seen_tasks: list[int] = []
            posted: list[Message] = []

            async def one(n: int) -> None:
                posted.append(await post(actor, key, f"m{n}"))
                seen_tasks.append(actor_tasks())

            async with trio.open_nursery() as nursery:
                for n in range(100):
                    nursery.start_soon(one, n)
            assert hub.passivation.activations == activations + 1
            assert max(seen_tasks) == 1
            assert sorted(m.seq for m in posted) == list(range(2, 102))
            assert len(records(hub, "msg.posted")) == 101


async def test_a_command_racing_the_deactivation_runs_exactly_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The command lands in the very tick the actor's idle window ends.

    Trio runs the tasks woken in one tick in either order, so over forty
    races the command comes both just before the actor's idle check (the
    actor stays) and just after it has gone passive (a new task runs it).
    """
    with trio.fail_after(36_000):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("owner")
            stayed = came_back = 0
            for race in range(40):
                actor = await open_channel(hub, key, mode="broadcast", name=f"race-{race}")
                await post(actor, key, "before")
                deadline = actor.last_used + WINDOW
                activations = hub.passivation.activations
                await trio.sleep_until(deadline)
                answer = await post(actor, key, "racing")
                assert trio.current_time() == deadline
                assert [m.content for m in actor.state.live.values()] == ["before", "racing"]
                assert answer.seq == 2
                assert actor_tasks() <= 1
                if hub.passivation.activations == activations:
                    stayed += 1
                else:
                    came_back += 1
                await idle(hub, actor)
            assert stayed > 0
            assert came_back > 0
            assert len(records(hub, "msg.posted")) == 80


async def test_shutdown_with_passive_channels_answers_the_running_ones_and_refuses_later(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(600):
        answers: list[list[Message]] = []
        async with trio.open_nursery() as nursery:
            async with runtime(tmp_path) as hub:
                _raw, key = await hub.mint_key("owner")
                quiet = [
                    await open_channel(hub, key, mode="broadcast", name=f"q{n}") for n in range(5)
                ]
                for actor in quiet:
                    await post(actor, key)
                await trio.sleep(WINDOW)
                busy = await open_channel(hub, key, mode="broadcast", name="busy")

                async def poll() -> None:
                    answers.append(await long_poll(hub, busy, 0, 10, 30))

                nursery.start_soon(poll)
                await trio.testing.wait_all_tasks_blocked()
                assert hub.statistics().passive_channels == 5
                closing_at = trio.current_time()
        assert trio.current_time() == closing_at
        assert answers == [[]]
        assert actor_tasks() == 0
        with pytest.raises(ApiError) as refused:
            await post(quiet[0], key)
        assert refused.value.status == 503


async def test_a_passive_channel_deleted_refuses_commands_and_its_timer_is_dropped(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(90_000):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("owner")
            actor = await open_channel(hub, key, mode="broadcast")
            await post(actor, key)
            await idle(hub, actor)
            assert actor.wake_at is not None  # armed for the TTL
            await hub.delete_channel(key, actor.channel_id)
            assert actor.wake_at is None
            with pytest.raises(ApiError) as gone:
                await post(actor, key)
            assert gone.value.code == "channel_not_found"
            await trio.sleep(86_400)
            assert (actor.passive, actor_tasks()) == (True, 0)


async def test_a_dead_letter_move_into_a_passive_channel_brings_it_back(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(3600):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            _raw, worker = await hub.mint_key("worker")
            dlq = await open_channel(hub, owner, name="dlq")
            jobs = await open_channel(hub, owner)
            await jobs.call(_set_dead_letters, jobs, owner, dlq.channel_id)
            message = await post(jobs, owner)
            await claim(jobs, worker, message, 30 * SECOND)
            assert dlq.passive
            activations = hub.passivation.activations
            await trio.sleep(30)
            await trio.testing.wait_all_tasks_blocked()
            [copy] = dlq.state.live.values()
            assert copy.content == message.content
            assert hub.message_actor(copy.id) is dlq
            assert hub.passivation.activations == activations + 1  # brought back, once
            # and a claimer that comes later finds it there
            assert (await claim_next_waiting(hub, dlq, worker)).id == copy.id


def _set_dead_letters(actor: ChannelActor, key: KeyRecord, dlq_id: str) -> tuple[None, int]:
    _config, seq = access.update(
        actor, key, {"max_deliveries": 1, "dead_letter_channel": dlq_id}, None
    )
    return None, seq


async def claim_next_waiting(hub: Hub, actor: ChannelActor, key: KeyRecord) -> Message:
    """Wait on a passive channel for the next message (claim-next with wait)."""
    result = await claim_next(hub, actor, key, None, None, 60, strict=True)
    assert result is not None
    return result.message
