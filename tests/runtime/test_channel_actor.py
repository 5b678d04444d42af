"""History retention on virtual time (the rest of the actor's deadlines: test_actor.py).

Runs the real runtime (hub, actors, in-memory journal) on
``trio.testing.MockClock(autojump_threshold=0)``, so days take milliseconds.
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


async def test_history_keeps_an_expired_message_for_its_retention_window_then_forgets_it(
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
