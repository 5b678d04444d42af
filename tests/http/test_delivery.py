"""Claim-next that waits, dead letters and redrive, delayed messages, over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from tests.conftest import Agent, Server, assert_error, serving


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def pair(server: Server) -> tuple[Agent, str, str]:
    """An owner with ``jobs`` dead-lettering into ``dlq`` after one delivery."""
    owner = await server.agent("owner")
    dlq = (await owner.channel("dlq"))["id"]
    jobs = await owner.channel("jobs", max_deliveries=1, dead_letter_channel=dlq)
    assert jobs["max_deliveries"] == 1
    assert jobs["dead_letter_channel"] == dlq
    return owner, jobs["id"], dlq


# -- claim-next ----------------------------------------------------------------------


async def test_claim_next_claims_the_oldest_and_answers_null_when_empty(server: Server) -> None:
    owner = await server.agent("owner")
    channel = (await owner.channel())["id"]
    assert ok(await owner.post(f"/v1/channels/{channel}/claim-next")) == {"claimed": None}
    first = await owner.send(channel, "one")
    await owner.send(channel, "two")
    got = ok(await owner.post(f"/v1/channels/{channel}/claim-next", {"actor": "w"}))
    assert set(got) == {"claimed"}
    assert got["claimed"]["id"] == first["id"]
    assert got["claimed"]["claimed_by"]["name"] == "w"
    assert got["claimed"]["deliveries"] == 1
    leased = ok(await owner.post(f"/v1/channels/{channel}/claim-next", {"lease_seconds": 30}))
    assert leased["claimed"]["content"] == "two"
    assert isinstance(leased["lease_token"], str)
    beat = ok(await owner.post(f"/v1/leases/{leased['lease_token']}/heartbeat", {}))
    assert beat["lease_token"] == leased["lease_token"]
    assert leased["expires_at"] > leased["claimed"]["claimed_at"]


async def test_claim_next_errors(server: Server) -> None:
    owner = await server.agent("owner")
    other = await server.agent("other")
    claimable = (await owner.channel("c"))["id"]
    broadcast = (await owner.channel("b", "broadcast"))["id"]
    secret = (await owner.channel("s", access="restricted"))["id"]
    assert_error(await owner.post("/v1/channels/nope/claim-next"), 404, "channel_not_found")
    assert_error(
        await other.post(f"/v1/channels/{secret}/claim-next"), 403, "channel_access_denied"
    )
    assert_error(
        await owner.post(f"/v1/channels/{broadcast}/claim-next"), 409, "channel_not_claimable"
    )
    path = f"/v1/channels/{claimable}/claim-next"
    for body, code in (
        ({"lease_seconds": 1}, "invalid_lease_seconds"),
        ({"lease_seconds": "30"}, "invalid_lease_seconds"),
        ({"wait": -1}, "invalid_wait"),
        ({"wait": 3601}, "invalid_wait"),
        ({"wait": True}, "invalid_wait"),
        ({"actor": 5}, "invalid_string"),
        ({"metadata": []}, "invalid_object"),
    ):
        assert_error(await owner.post(path, body), 422, code)


async def test_twenty_parked_claimers_ten_posts(server: Server) -> None:
    owner = await server.agent("owner")
    channel = (await owner.channel())["id"]
    workers = [await server.agent(f"w{i}") for i in range(20)]
    answers: list[dict[str, Any]] = []

    async def park(worker: Agent) -> None:
        answers.append(ok(await worker.post(f"/v1/channels/{channel}/claim-next", {"wait": 3})))

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for worker in workers:
            nursery.start_soon(park, worker)
        await trio.sleep(0.5)
        posted = {(await owner.send(channel, f"job {i}"))["id"] for i in range(10)}
    claimed = [a["claimed"]["id"] for a in answers if a["claimed"] is not None]
    assert sorted(claimed) == sorted(posted)  # each message exactly once
    assert sum(1 for a in answers if a["claimed"] is None) == 10
    assert 3 <= trio.current_time() - started < 6
    listed = ok(await owner.get(f"/v1/channels/{channel}/messages", params={"status": "unclaimed"}))
    assert listed["data"] == []


async def test_tasks_claim_takes_lease_seconds_and_wait(server: Server) -> None:
    owner = await server.agent("owner")
    channel = (await owner.channel("jobs"))["id"]
    got: list[dict[str, Any]] = []

    async def park() -> None:
        got.append(
            ok(
                await owner.post(
                    "/v1/tasks/claim", {"channel": channel, "wait": 5, "lease_seconds": 60}
                )
            )
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(park)
        await trio.sleep(0.3)
        message = await owner.send(channel, "late")
    [answer] = got
    assert answer["claimed"]["id"] == message["id"]
    assert isinstance(answer["lease_token"], str)
    empty = ok(await owner.post("/v1/tasks/claim", {"channel": channel, "wait": 0.2}))
    assert empty == {"claimed": None, "note": "no unclaimed messages available"}
    assert_error(
        await owner.post("/v1/tasks/claim", {"channel": channel, "wait": "x"}), 422, "invalid_wait"
    )


# -- dead letters and redrive --------------------------------------------------------------


async def test_dead_letter_settings_are_validated_on_create_and_patch(server: Server) -> None:
    owner = await server.agent("owner")
    other = await server.agent("other")
    dlq = (await owner.channel("dlq"))["id"]
    foreign = (await other.channel("theirs"))["id"]
    for fields in (
        {"max_deliveries": 3},
        {"dead_letter_channel": dlq},
        {"max_deliveries": 0, "dead_letter_channel": dlq},
        {"max_deliveries": 1001, "dead_letter_channel": dlq},
        {"max_deliveries": "3", "dead_letter_channel": dlq},
        {"max_deliveries": 3, "dead_letter_channel": foreign},
        {"max_deliveries": 3, "dead_letter_channel": "no-such-channel"},
        {"max_deliveries": 3, "dead_letter_channel": 7},
    ):
        response = await owner.post("/v1/channels", {"name": "x", "mode": "claimable", **fields})
        assert_error(response, 422, "invalid_dead_letter")
    jobs = (await owner.channel("jobs"))["id"]
    path = f"/v1/channels/{jobs}"
    assert_error(await owner.patch(path, {"max_deliveries": 2}), 422, "invalid_dead_letter")
    assert_error(
        await owner.patch(path, {"max_deliveries": 2, "dead_letter_channel": jobs}),
        422,
        "invalid_dead_letter",
    )
    await owner.post(f"/v1/channels/{dlq}/aliases", {"alias": "graveyard"})
    patched = ok(await owner.patch(path, {"max_deliveries": 2, "dead_letter_channel": "graveyard"}))
    assert (patched["max_deliveries"], patched["dead_letter_channel"]) == (2, dlq)
    assert ok(await owner.patch(path, {"max_deliveries": 5}))["max_deliveries"] == 5
    assert_error(await owner.patch(path, {"dead_letter_channel": None}), 422, "invalid_dead_letter")
    cleared = ok(await owner.patch(path, {"max_deliveries": None, "dead_letter_channel": None}))
    assert (cleared["max_deliveries"], cleared["dead_letter_channel"]) == (None, None)
    assert_error(
        await other.patch(path, {"max_deliveries": 2, "dead_letter_channel": foreign}),
        403,
        "forbidden",
    )


async def test_a_release_at_max_deliveries_dead_letters_and_redrive_brings_it_back(
    server: Server,
) -> None:
    owner, jobs, dlq = await pair(server)
    message = await owner.send(jobs, "flaky", metadata={"k": 1})
    claimed = ok(await owner.post(f"/v1/channels/{jobs}/claim-next"))["claimed"]
    assert claimed["id"] == message["id"]
    ok(await owner.post(f"/v1/messages/{message['id']}/release", {}))
    assert ok(await owner.get(f"/v1/channels/{jobs}/messages"))["data"] == []
    [archived] = ok(await owner.get(f"/v1/channels/{jobs}/history"))["data"]
    assert archived["id"] == message["id"]
    assert archived["reason"] == "dead_lettered"
    [copy] = ok(await owner.get(f"/v1/channels/{dlq}/messages"))["data"]
    assert copy["content"] == "flaky"
    assert copy["metadata"] == {
        "k": 1,
        "dead_letter": {
            "source_channel_id": jobs,
            "source_message_id": message["id"],
            "deliveries": 1,
            "reason": "released",
        },
    }
    other = await server.agent("other")
    assert_error(await other.post(f"/v1/channels/{dlq}/redrive", {}), 403, "forbidden")
    assert_error(
        await owner.post(f"/v1/channels/{dlq}/redrive", {"limit": 0}), 422, "invalid_limit"
    )
    assert ok(await owner.post(f"/v1/channels/{dlq}/redrive", {})) == {"moved": 1}
    assert ok(await owner.get(f"/v1/channels/{dlq}/messages"))["data"] == []
    [back] = ok(await owner.get(f"/v1/channels/{jobs}/messages"))["data"]
    assert back["content"] == "flaky"
    assert back["metadata"] == {"k": 1}
    assert back["deliveries"] == 0
    assert ok(await owner.post(f"/v1/channels/{dlq}/redrive", {})) == {"moved": 0}


async def test_a_lapsed_lease_dead_letters_over_http(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, lease_min_seconds=1) as server:
        owner, jobs, dlq = await pair(server)
        message = await owner.send(jobs)
        got = ok(await owner.post(f"/v1/channels/{jobs}/claim-next", {"lease_seconds": 1}))
        assert got["claimed"]["id"] == message["id"]
        waited = ok(await owner.post(f"/v1/channels/{dlq}/claim-next", {"wait": 5}))
        assert waited["claimed"]["metadata"]["dead_letter"]["reason"] == "lease_expired"
        assert waited["claimed"]["metadata"]["dead_letter"]["source_message_id"] == message["id"]


# -- delayed messages --------------------------------------------------------------------


async def test_a_delayed_message_shows_once_after_later_messages_through_cursors(
    server: Server,
) -> None:
    owner = await server.agent("owner")
    channel = (await owner.channel())["id"]
    path = f"/v1/channels/{channel}/messages"
    for value in (-1, 86_401, 1.5, "5", True):
        assert_error(
            await owner.post(path, {"content": "x", "delay_seconds": value}),
            422,
            "invalid_delay_seconds",
        )
    posted = ok(await owner.post(path, {"content": "later", "delay_seconds": 1}), 201)
    delayed = posted["message"]
    assert delayed["visible_at"] > delayed["created_at"]
    now = await owner.send(channel, "now")
    assert now["visible_at"] == now["created_at"]
    first = ok(await owner.get(path))
    assert [m["content"] for m in first["data"]] == ["now"]
    assert ok(await owner.post(f"/v1/channels/{channel}/claim-next"))["claimed"]["id"] == now["id"]
    assert_error(
        await owner.post(f"/v1/messages/{delayed['id']}/claim", {}), 404, "message_not_found"
    )
    # the reader's cursor is past "now"; a long-poll wakes when "later" shows
    cursor = first["next_cursor"]
    started = trio.current_time()
    woke = ok(await owner.get(path, params={"cursor": cursor, "wait": 10}))
    assert 0.3 < trio.current_time() - started < 5
    assert [m["id"] for m in woke["data"]] == [delayed["id"]]
    assert ok(await owner.get(path, params={"cursor": woke["next_cursor"]}))["data"] == []
    # the poster's cursor (taken before the delayed message had a place) sees it too
    seen = ok(await owner.get(path, params={"cursor": posted["next_cursor"]}))
    assert [m["content"] for m in seen["data"]] == ["now", "later"]
    assert seen["data"][1]["visible_at"] >= delayed["visible_at"]


async def test_delayed_posts_and_dead_letters_survive_a_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path) as server:
        owner, jobs, dlq = await pair(server)
        key = owner.key
        moved = await owner.send(jobs, "moved")
        ok(await owner.post(f"/v1/channels/{jobs}/claim-next"))
        ok(await owner.post(f"/v1/messages/{moved['id']}/release", {}))
        path = f"/v1/channels/{jobs}/messages"
        delayed = ok(await owner.post(path, {"content": "later", "delay_seconds": 1}), 201)
    async with serving(nursery, tmp_path) as server:
        owner = Agent(server.http, key, "", "owner")
        await trio.sleep(1.2)
        [shown] = ok(await owner.get(path))["data"]
        assert shown["id"] == delayed["message"]["id"]
        claimed = ok(await owner.post(f"/v1/messages/{shown['id']}/claim", {}))
        assert claimed["status"] == "claimed"
        [copy] = ok(await owner.get(f"/v1/channels/{dlq}/messages"))["data"]
        assert copy["metadata"]["dead_letter"]["source_message_id"] == moved["id"]
