"""``POST /v1/tasks/claim``: claim-next, atomic in the channel actor."""

from __future__ import annotations

import trio

from tests.conftest import Server


async def test_claim_next_hands_out_messages_oldest_first_then_nothing(server: Server) -> None:
    owner = await server.agent("owner")
    worker = await server.agent("worker")
    channel = await owner.channel("queue", "claimable")
    first = await owner.send(channel["id"], "one")
    second = await owner.send(channel["id"], "two")

    got = await worker.post("/v1/tasks/claim", {"channel": channel["id"], "actor": "w"})
    assert got.status_code == 200
    claimed = got.json()["claimed"]
    assert claimed["id"] == first["id"]
    assert claimed["claimed_by"]["name"] == "w"
    assert claimed["claimed_by_key_id"] == worker.key_id

    got = await worker.post("/v1/tasks/claim", {"channel": channel["id"], "actor": "w"})
    assert got.json()["claimed"]["id"] == second["id"]

    empty = await worker.post("/v1/tasks/claim", {"channel": channel["id"], "actor": "w"})
    assert empty.json() == {"claimed": None, "note": "no unclaimed messages available"}


async def test_concurrent_claim_next_never_hands_one_message_to_two_workers(
    server: Server,
) -> None:
    owner = await server.agent("owner")
    channel = await owner.channel("race", "claimable")
    sent = {(await owner.send(channel["id"], f"m{n}"))["id"] for n in range(20)}
    workers = [await server.agent(f"w{n}") for n in range(8)]
    won: list[str] = []

    async def drain(n: int) -> None:
        while True:
            reply = await workers[n].post(
                "/v1/tasks/claim", {"channel": channel["id"], "actor": f"w{n}"}
            )
            claimed = reply.json()["claimed"]
            if claimed is None:
                return
            won.append(claimed["id"])

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(drain, n)
    assert sorted(won) == sorted(sent)  # each message exactly once


async def test_claim_next_errors(server: Server) -> None:
    agent = await server.agent()
    broadcast = await agent.channel("news", "broadcast")
    await agent.send(broadcast["id"], "hello")
    nothing = await agent.post("/v1/tasks/claim", {"channel": broadcast["id"]})
    assert nothing.json()["claimed"] is None
    missing = await agent.post("/v1/tasks/claim", {})
    assert (missing.status_code, missing.json()["error"]) == (422, "missing_field")
    unknown = await agent.post("/v1/tasks/claim", {"channel": "no-such-channel"})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "channel_not_found")
    outsider = await server.agent("outsider")
    private = await agent.channel("private", "claimable", access="restricted")
    denied = await outsider.post("/v1/tasks/claim", {"channel": private["id"]})
    assert (denied.status_code, denied.json()["error"]) == (403, "channel_access_denied")
