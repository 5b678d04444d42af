"""Access state survives a restart, from a snapshot and from the log alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from backchannel.core.events import ChannelDeleted, MessagePosted, to_wire
from backchannel.core.world import World
from backchannel.storage.state import replay
from tests.conftest import Agent, Server, assert_error, start_server, test_settings


async def observe(alice: Agent, bob: Agent, cid: str) -> dict[str, Any]:
    """Everything the access routes show about one channel."""
    channel = (await alice.get(f"/v1/channels/{cid}")).json()
    channel.pop("updated_at")
    return {
        "channel": channel,
        "members": (await alice.get(f"/v1/channels/{cid}/members")).json(),
        "events": (await alice.get(f"/v1/channels/{cid}/events")).json(),
        "requests": (await alice.get(f"/v1/channels/{cid}/access-requests")).json(),
        "bob_reads": (await bob.get(f"/v1/channels/{cid}/messages")).status_code,
    }


@pytest.mark.parametrize("from_log_only", [False, True])
async def test_access_state_survives_restart(
    nursery: trio.Nursery, tmp_path: Path, from_log_only: bool
) -> None:
    settings = test_settings(tmp_path / "data")
    running = await start_server(nursery, settings)
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        server = Server(running.url, http, settings)
        alice, bob, carol = (
            await server.agent("alice"),
            await server.agent("bob"),
            await server.agent("carol"),
        )
        doomed = await alice.channel("doomed")
        channel = await alice.channel("secret", access="restricted")
        cid = channel["id"]
        await alice.patch(f"/v1/channels/{cid}", {"description": "patched", "name": "renamed"})
        await alice.post(f"/v1/channels/{cid}/aliases", {"alias": "secret.alias"})
        await alice.post(f"/v1/channels/{cid}/members", {"key_id": bob.key_id})
        await alice.post(f"/v1/channels/{cid}/members", {"key_id": "bck_gone"})
        await alice.delete(f"/v1/channels/{cid}/members/bck_gone")
        invitation = (await alice.post(f"/v1/channels/{cid}/invitations")).json()
        revoked = (await alice.post(f"/v1/channels/{cid}/invitations")).json()
        await alice.delete(f"/v1/channel-invitations/{revoked['id']}")
        await carol.get(f"/v1/channel-invitations/{invitation['id']}")
        dave = await server.agent("dave")
        pending = (await dave.post(f"/v1/channels/{cid}/access-requests")).json()
        await alice.send(doomed["id"], "bye")
        assert (await alice.delete(f"/v1/channels/{doomed['id']}")).status_code == 204
        before = await observe(alice, bob, cid)
    await running.stopped()
    if from_log_only:
        for path in (tmp_path / "data").glob("snapshot-*"):
            path.unlink()

    running = await start_server(nursery, settings)
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        for agent in (alice, bob, carol, dave):
            agent.http = http
        assert await observe(alice, bob, cid) == before
        assert before["bob_reads"] == 200
        assert (await alice.get("/v1/channels/secret.alias")).json()["id"] == cid
        assert (await alice.get("/v1/channels/renamed")).json()["id"] == cid
        assert_error(await alice.get(f"/v1/channels/{doomed['id']}"), 404, "channel_not_found")
        assert_error(
            await dave.get(f"/v1/channel-invitations/{revoked['id']}"), 410, "invitation_revoked"
        )
        assert (await dave.get(f"/v1/channel-invitations/{invitation['id']}")).status_code == 200
        approve = f"/v1/channels/{cid}/access-requests/{pending['request_id']}/approve"
        assert (await alice.post(approve)).json()["status"] == "approved"
        assert (await dave.get(f"/v1/channels/{cid}/messages")).status_code == 200
        assert_error(await alice.post(approve), 409, "access_request_resolved")
    await running.stopped()


def test_replay_skips_records_of_a_channel_deleted_after_the_snapshot() -> None:
    """A channel deleted while a snapshot was taken is not in it; its records are skipped."""
    world = World()
    gone = "0b7a4b8e-0000-4000-8000-000000000000"
    post = MessagePosted(gone, "m1", "x", {}, 1, 2, "bck_k", None, None, None, [])
    records = [(5, to_wire(post)), (6, to_wire(ChannelDeleted(gone, "bck_k", 3)))]
    assert replay(world, records) == (1, 3)
    assert gone not in world.channels
    with pytest.raises(ValueError, match="unknown channel"):
        replay(World(), records[:1])
