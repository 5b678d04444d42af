"""Passive channels over real HTTP: a channel's actor stops when idle and comes back.

A short idle window (``passive_after_seconds``) on a real server on a
loopback port: the channel goes passive, ``/status`` and ``/metrics`` count
it, and reads, long-polls and posts on it are answered as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from tests.conftest import Server, serving
from tests.http.test_observability import sample

WINDOW = 0.2


async def status(server: Server) -> dict[str, Any]:
    body: dict[str, Any] = (await server.http.get("/status")).json()
    return body


async def wait_passive(server: Server, count: int) -> None:
    """Until ``count`` channels are passive (the idle window has passed)."""
    with trio.fail_after(10):
        for _ in range(1000):
            if (await status(server))["passive_channels"] == count:
                return
            await trio.sleep(WINDOW / 4)


async def test_a_channel_passivates_and_comes_back_transparently(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, passive_after_seconds=WINDOW) as server:
        agent = await server.agent()
        channel = (await agent.channel("quiet", "broadcast"))["id"]
        first = await agent.send(channel, "one")
        await wait_passive(server, 2)  # ours and the sandbox
        body = await status(server)
        assert (body["channels"], body["active_channels"], body["passive_channels"]) == (2, 0, 2)
        metrics = (await server.http.get("/metrics")).text
        assert sample(metrics, "backchannel_passive_channels") == 2
        assert sample(metrics, "backchannel_channel_actors") == 0

        page = (await agent.get(f"/v1/channels/{channel}/messages")).json()
        assert [m["id"] for m in page["data"]] == [first["id"]]
        cursor = page["next_cursor"]

        answered: list[dict[str, Any]] = []

        async def long_poll() -> None:
            response = await agent.get(
                f"/v1/channels/{channel}/messages", params={"cursor": cursor, "wait": "10"}
            )
            answered.append(response.json())

        with trio.fail_after(10):
            async with trio.open_nursery() as polls:
                polls.start_soon(long_poll)
                for _ in range(1000):  # until the poll is parked: that brought the actor back
                    if (await status(server))["parked_waiters"] == 1:
                        break
                    await trio.sleep(0.01)
                assert (await status(server))["active_channels"] == 1
                second = await agent.send(channel, "two")
        assert [m["id"] for m in answered[0]["data"]] == [second["id"]]

        claimable = (await agent.channel("work", "claimable"))["id"]
        job = await agent.send(claimable, "job")
        await wait_passive(server, 3)
        # by message id: the message index leads to the passive channel's handle
        claimed = await agent.post(f"/v1/messages/{job['id']}/claim", {})
        assert claimed.status_code == 200, claimed.text
        assert claimed.json()["message"]["claimed_by"] is not None
