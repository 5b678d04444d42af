"""Access changes in the actor, on virtual time: removal, deletion, leases, long-polls.

The real runtime (hub, actors, in-memory journal) under ``autojump_clock``;
every test body runs under ``trio.fail_after`` on that clock.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from backchannel.core.errors import ApiError
from backchannel.core.membership import decide_delete
from backchannel.core.records import KeyRecord
from backchannel.runtime import access, snapshotter
from backchannel.runtime.actor import ChannelActor
from backchannel.runtime.hub import Hub
from backchannel.runtime.service import load_state, open_runtime
from backchannel.storage.state import channel_pieces
from tests.conftest import test_settings

SECOND = 1_000_000


@asynccontextmanager
async def runtime(tmp_path: Path) -> AsyncIterator[Hub]:
    settings = test_settings(tmp_path, sandbox_enabled=False)
    async with open_runtime(settings, in_memory=True) as hub:
        yield hub


async def restricted(hub: Hub, owner: KeyRecord, *members: KeyRecord) -> ChannelActor:
    spec = hub.channel_defaults("restricted")
    spec.update(name="lane", mode="claimable")
    state = await hub.create_channel(owner, spec, [])
    actor = hub.actors[state.config.id]
    for member in members:
        await actor.call(access.add_member, actor, owner, member.key_id)
    return actor


async def refused(code: str, fn: Any, *args: Any) -> None:
    with pytest.raises(ApiError) as caught:
        await fn(*args)
    assert caught.value.code == code


async def test_a_removed_members_lease_keeps_its_expiry(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(600):
        async with runtime(tmp_path) as hub:
            _r, owner = await hub.mint_key("owner")
            _r, worker = await hub.mint_key("worker")
            actor = await restricted(hub, owner, worker)
            message = await actor.call(actor.cmd_post, owner, "job", {}, None, None, None)
            result = await actor.call(actor.cmd_claim, worker, message.id, None, 60 * SECOND)
            token = result.lease_token
            started = trio.current_time()
            await trio.sleep(10)
            await actor.call(access.remove_member, actor, owner, worker.key_id)
            await refused(
                "channel_access_denied",
                actor.call,
                actor.cmd_heartbeat,
                worker,
                token,
                message.id,
                3_600 * SECOND,
            )
            await trio.sleep_until(started + 60 - 0.000_001)
            assert message.claimed_by_key_id == worker.key_id  # not cut short
            await trio.sleep_until(started + 60)
            await trio.lowlevel.checkpoint()
            page, _version = await actor.call(actor.cmd_page, 0, 10, "unclaimed", None)
            assert [m.id for m in page] == [message.id]  # nor extended


async def test_removal_ends_the_members_park_at_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(600):
        async with runtime(tmp_path) as hub:
            _r, owner = await hub.mint_key("owner")
            _r, member = await hub.mint_key("member")
            _r, stayer = await hub.mint_key("stayer")
            actor = await restricted(hub, owner, member, stayer)
            outcomes: dict[str, tuple[float, str]] = {}

            async def reader(key: KeyRecord) -> None:
                started = trio.current_time()
                while True:
                    page, version = await actor.call(actor.cmd_page, 0, 10, None, None)
                    if page:
                        outcomes[key.label] = (trio.current_time() - started, "page")
                        return
                    if actor.state.version == version:
                        await actor.park(trio.current_time() + 30)
                    try:
                        actor.admit(key)
                    except ApiError as exc:
                        outcomes[key.label] = (trio.current_time() - started, exc.code)
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader, member)
                nursery.start_soon(reader, stayer)
                await trio.sleep(5)
                await actor.call(access.remove_member, actor, owner, member.key_id)
                await trio.sleep(0.001)
                assert outcomes == {"member": (5, "channel_access_denied")}
                await actor.call(actor.cmd_post, owner, "after", {}, None, None, None)
            assert outcomes["stayer"][1] == "page"
            await refused(
                "channel_access_denied",
                actor.call,
                actor.cmd_post,
                member,
                "x",
                {},
                None,
                None,
                None,
            )


async def test_deletion_refuses_what_was_queued_and_frees_the_indexes(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(600):
        async with runtime(tmp_path) as hub:
            _r, owner = await hub.mint_key("owner")
            actor = await restricted(hub, owner)
            message = await actor.call(actor.cmd_post, owner, "job", {}, None, None, None)
            leased = await actor.call(actor.cmd_claim, owner, message.id, None, 60 * SECOND)
            assert leased.lease_token in hub.lease_index
            await actor.call(access.add_alias, actor, owner, "lane.alias")
            await actor.call(access.invite, actor, owner)
            answers: list[str] = []

            async def queued_post() -> None:
                try:
                    await actor.call(actor.cmd_post, owner, "late", {}, None, None, None)
                except ApiError as exc:
                    answers.append(exc.code)

            async with trio.open_nursery() as nursery:
                # a post sent in the step of the deletion: refused, never applied
                nursery.start_soon(queued_post)
                await hub.delete_channel(owner, "lane.alias")
            assert answers == ["channel_not_found"]
            assert actor.deleted
            assert actor.channel_id not in hub.actors
            assert actor.channel_id not in hub.world.channels
            assert hub.message_index == {}
            assert hub.lease_index == {}
            assert hub.world.channel_aliases == {}
            assert hub.world.invitations == {}
            assert hub.world.channels_by_name == {}
            await refused("channel_not_found", actor.call, actor.cmd_page, 0, 10, None, None)
            await trio.sleep(120)  # the lease deadline passes: nothing is journaled for it
            assert [m.content for m in actor.state.live.values()] == ["job"]


async def test_a_channel_deleted_during_a_snapshot_stays_out_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its alias, taken over meanwhile by another channel, must survive recovery."""
    data = tmp_path / "data"
    settings = test_settings(data, sandbox_enabled=False, snapshot_interval_seconds=0)
    async with open_runtime(settings) as hub:
        _r, owner = await hub.mint_key("owner")
        channels = []
        for name in ("trigger", "taker", "doomed"):
            spec = hub.channel_defaults("open")
            spec.update(name=name, mode="broadcast")
            channels.append(hub.actors[(await hub.create_channel(owner, spec, [])).config.id])
        _trigger, taker, doomed = channels
        await doomed.call(access.add_alias, doomed, owner, "shared")
        seqs: list[int] = []
        real_pieces = channel_pieces

        def pieces_then_change(capture: Any, live: Any, history: Any, columns: Any) -> Any:
            # after the first part: delete "doomed" and give its alias to "taker",
            # both of which are captured later in this same snapshot
            if not seqs:
                seqs.append(hub.commit_global(decide_delete(doomed.state.config, owner, 0)))
                doomed.deleted = True
                seqs.append(access.add_alias(taker, owner, "shared")[1])
            return real_pieces(capture, live, history, columns)

        monkeypatch.setattr(snapshotter, "channel_pieces", pieces_then_change)
        report = await snapshotter.take_snapshot(hub, data)
        await hub.journal.wait_durable(max(seqs))
        assert report.channels == 2
        copy = tmp_path / "at-crash"
        shutil.copytree(data, copy)  # as if killed now: this snapshot plus the log
    world, _next, _newest, _report = load_state(copy, allow_truncate=False)
    assert doomed.channel_id not in world.channels
    assert world.channel_aliases == {"shared": taker.channel_id}
    assert world.channels[taker.channel_id].config.aliases == ["shared"]
