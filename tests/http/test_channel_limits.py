"""Per-channel ``max_messages`` and ``max_writes_per_minute`` beyond one process's life
(contract §2.4, §3.9, §3.19; §6 C16 and P7 fixed)."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.conftest import Server, assert_error, serving


async def test_the_write_window_survives_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("c", "broadcast", max_writes_per_minute=2))["id"]
        await alice.send(channel, "one")
        await alice.send(channel, "two")
    async with serving(nursery, tmp_path) as server:
        refused = await server.http.post(
            f"/v1/channels/{channel}/messages",
            json={"content": "three"},
            headers={"X-API-Key": alice.key},
        )
        body = assert_error(refused, 429, "channel_write_rate_exceeded")
        assert body["retry_after"] == 60


async def test_trimmed_messages_stay_in_history_across_a_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("ring", "claimable", max_messages=2))["id"]
        for index in range(4):
            await alice.send(channel, f"m{index}")
    async with serving(nursery, tmp_path) as server:
        headers = {"X-API-Key": alice.key}
        live = await server.http.get(f"/v1/channels/{channel}/messages", headers=headers)
        assert [m["content"] for m in live.json()["data"]] == ["m2", "m3"]
        history = await server.http.get(f"/v1/channels/{channel}/history", headers=headers)
        assert [m["content"] for m in history.json()["data"]] == ["m1", "m0"]
        got = await server.http.get(f"/v1/channels/{channel}", headers=headers)
        assert got.json()["max_messages"] == 2


async def test_a_trimmed_lease_stops_working(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("ring", "claimable", max_messages=1))["id"]
    first = (await alice.send(channel, "first"))["id"]
    leased = await bob.post(f"/v1/messages/{first}/claim-with-lease", {"actor": "w"})
    token = leased.json()["lease_token"]
    assert (await bob.post(f"/v1/leases/{token}/heartbeat", {})).status_code == 200
    await alice.send(channel, "second")
    assert_error(await bob.post(f"/v1/leases/{token}/heartbeat", {}), 410, "lease_expired")
    assert_error(
        await bob.post(f"/v1/messages/{first}/ack", {"actor": "w"}), 404, "message_not_found"
    )
    history = (await alice.get(f"/v1/channels/{channel}/history")).json()["data"]
    assert [(m["id"], m["claimed_by"]["name"]) for m in history] == [(first, "w")]
