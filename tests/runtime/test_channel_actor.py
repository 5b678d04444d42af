"""Channel actors on virtual time: deadlines, waiters, and claim races.

Every test runs the real runtime (hub, actors, in-memory journal) on
``trio.testing.MockClock(autojump_threshold=0)``, so a 24 h TTL takes
milliseconds and elapsed virtual time is asserted exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from backchannel.core.errors import ApiError
from backchannel.core.records import KeyRecord
from backchannel.runtime.actor import ChannelActor
from backchannel.runtime.hub import Hub
from backchannel.runtime.service import open_runtime
from tests.conftest import test_settings

SECOND = 1_000_000


@asynccontextmanager
async def runtime(tmp_path: Path) -> AsyncIterator[Hub]:
    settings = test_settings(tmp_path, sandbox_enabled=False)
    async with open_runtime(settings, in_memory=True) as hub:
        yield hub


async def channel(hub: Hub, key: KeyRecord, mode: str = "claimable", **spec: Any) -> ChannelActor:
    fields = hub.channel_defaults("open")
    fields.update(name="jobs", mode=mode, **spec)
    state = await hub.create_channel(key, fields, [])
    return hub.actors[state.config.id]


async def post(actor: ChannelActor, key: KeyRecord, content: str = "work") -> str:
    message = await actor.call(actor.cmd_post, key, content, {}, None, None, None)
    return message.id


def holder(actor: ChannelActor, message_id: str) -> str | None:
    return actor.state.live[message_id].claimed_by_name


async def test_a_lapsed_lease_returns_the_message_at_the_exact_deadline(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with runtime(tmp_path) as hub:
        _raw, key = await hub.mint_key("worker")
        actor = await channel(hub, key)
        message_id = await post(actor, key)
        started = trio.current_time()
        claim = await actor.call(actor.cmd_claim, key, message_id, "w", 30 * SECOND)
        assert claim.status == "claimed"
        assert holder(actor, message_id) == "w"

        await trio.sleep_until(started + 30 - 0.001)
        page, _changed, _version = await actor.call(actor.cmd_page, 0, 10, "unclaimed", None)
        assert page == []  # still held a millisecond before the deadline

        await trio.sleep_until(started + 30)
        await trio.testing.wait_all_tasks_blocked()
        assert holder(actor, message_id) is None
        assert claim.lease_token not in hub.lease_index
        page, _changed, _version = await actor.call(actor.cmd_page, 0, 10, "unclaimed", None)
        assert [m.id for m in page] == [message_id]
        with pytest.raises(ApiError) as gone:
            await actor.call(actor.cmd_heartbeat, key, claim.lease_token, message_id, 30 * SECOND)
        assert gone.value.code == "lease_expired"


async def test_a_heartbeat_moves_the_deadline(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with runtime(tmp_path) as hub:
        _raw, key = await hub.mint_key("worker")
        actor = await channel(hub, key)
        message_id = await post(actor, key)
        started = trio.current_time()
        claim = await actor.call(actor.cmd_claim, key, message_id, "w", 30 * SECOND)
        await trio.sleep(20)
        await actor.call(actor.cmd_heartbeat, key, claim.lease_token, message_id, 30 * SECOND)
        await trio.sleep_until(started + 49.999)
        assert holder(actor, message_id) == "w"
        await trio.sleep_until(started + 50)
        await trio.testing.wait_all_tasks_blocked()
        assert holder(actor, message_id) is None


async def test_a_ttl_moves_the_message_to_history_at_exactly_24_hours(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with runtime(tmp_path) as hub:
        _raw, key = await hub.mint_key("producer")
        actor = await channel(hub, key, mode="broadcast")
        started = trio.current_time()
        message_id = await post(actor, key)
        await trio.sleep_until(started + 86_400 - 0.001)
        assert message_id in actor.state.live
        await trio.sleep_until(started + 86_400)
        await trio.testing.wait_all_tasks_blocked()
        assert message_id not in actor.state.live
        history = await actor.call(actor.cmd_history, None, None, 10)
        assert [(e.message.id, e.reason) for e in history] == [(message_id, "expired")]
        with pytest.raises(ApiError) as expired:
            await actor.call(actor.cmd_ack, key, message_id, None)
        assert (expired.value.status, expired.value.code) == (410, "message_expired")
        # history itself is purged after the retention window (7 days by default)
        await trio.sleep_until(started + 86_400 + 7 * 86_400)
        await trio.testing.wait_all_tasks_blocked()
        assert await actor.call(actor.cmd_history, None, None, 10) == []
        assert message_id not in hub.message_index


async def test_a_parked_waiter_wakes_on_append_and_a_cancelled_one_leaves_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with runtime(tmp_path) as hub:
        _raw, key = await hub.mint_key("reader")
        actor = await channel(hub, key, mode="broadcast")
        woke_at: list[float] = []

        async def wait_for_news(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                await actor.park()
                woke_at.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            staying = await nursery.start(wait_for_news)
            leaving = await nursery.start(wait_for_news)
            await trio.testing.wait_all_tasks_blocked()
            assert len(actor._lot) == 2
            leaving.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert len(actor._lot) == 1  # the cancelled waiter left the lot
            await trio.sleep(5)
            posted_at = trio.current_time()
            await post(actor, key)
        assert woke_at == [posted_at]
        assert len(actor._lot) == 0
        assert staying.cancelled_caught is False


async def test_two_hundred_concurrent_claimers_make_exactly_one_winner(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with runtime(tmp_path) as hub:
        _raw, owner = await hub.mint_key("owner")
        actor = await channel(hub, owner)
        message_id = await post(actor, owner)
        keys = [(await hub.mint_key(f"claimer-{n}"))[1] for n in range(200)]
        go = trio.Event()
        outcomes: list[str] = []

        async def claim(key: KeyRecord) -> None:
            await go.wait()
            try:
                result = await actor.call(actor.cmd_claim, key, message_id, None, None)
                outcomes.append(result.status)
            except ApiError as exc:
                outcomes.append(exc.code)

        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(claim, key)
            await trio.testing.wait_all_tasks_blocked()
            go.set()  # all 200 are parked; release them in one step
        assert outcomes.count("claimed") == 1
        assert outcomes.count("already_claimed") == 199
        winner = actor.state.live[message_id]
        assert winner.claimed_by_key_id in {k.key_id for k in keys}


async def test_a_claim_whose_caller_is_cancelled_still_applies_exactly_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with runtime(tmp_path) as hub:
        _raw, key = await hub.mint_key("worker")
        actor = await channel(hub, key)
        message_id = await post(actor, key)
        before = len(hub.journal.records)  # type: ignore[attr-defined]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(actor.call, actor.cmd_claim, key, message_id, "w", None)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert holder(actor, message_id) == "w"
        records = hub.journal.records[before:]  # type: ignore[attr-defined]
        claimed = [body for _seq, body in records if body[0] == "msg.claimed"]
        assert len(claimed) == 1
        again = await actor.call(actor.cmd_claim, key, message_id, "w", None)
        assert again.status == "already_claimed"
