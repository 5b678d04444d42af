"""``POST /v1/tasks/claim``: claim-next, atomic in the channel actor."""

from __future__ import annotations

from typing import Any

import trio

from tests.conftest import Server, assert_error
from tests.http.test_longpoll import parked


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


# -- the other verbs (contract §2.9) ------------------------------------------


async def test_post_creates_the_callers_claimable_channel_once_then_reuses_it(
    server: Server,
) -> None:
    agent = await server.agent("poster")
    first = await agent.post("/v1/tasks/post", {"channel": "jobs", "content": "one"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert set(body) == {"message", "next_cursor", "channel"}
    assert body["message"]["content"] == "one"
    channel = (await agent.get(f"/v1/channels/{body['channel']}")).json()
    assert (channel["name"], channel["mode"]) == ("jobs", "claimable")

    second = await agent.post(
        "/v1/tasks/post", {"channel": "jobs", "content": "two", "metadata": {"n": 2}}
    )
    assert second.json()["channel"] == body["channel"]  # §0.9: earlier tasks stay reachable
    assert second.json()["message"]["metadata"] == {"n": 2}
    page = (await agent.get("/v1/channels/jobs/messages")).json()["data"]
    assert [m["content"] for m in page] == ["one", "two"]

    other = await server.agent("other")
    theirs = await other.post("/v1/tasks/post", {"channel": "jobs", "content": "x"})
    assert theirs.json()["channel"] != body["channel"]  # names are per owner


async def test_concurrent_posts_to_a_new_name_make_one_channel(server: Server) -> None:
    agent = await server.agent()
    channels: list[str] = []

    async def post(n: int) -> None:
        reply = await agent.post("/v1/tasks/post", {"channel": "fresh", "content": f"t{n}"})
        assert reply.status_code == 201, reply.text
        channels.append(reply.json()["channel"])

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for n in range(10):
                nursery.start_soon(post, n)
    assert len(set(channels)) == 1
    page = (await agent.get(f"/v1/channels/{channels[0]}/messages")).json()["data"]
    assert len(page) == 10


async def test_post_refuses_bad_bodies_without_creating_a_channel(server: Server) -> None:
    agent = await server.agent()
    for body, status, code in [
        ({"content": "x"}, 422, "missing_field"),
        ({"channel": "  ", "content": "x"}, 422, "missing_field"),
        ({"channel": "bad\u200bname", "content": "x"}, 422, "invalid_channel_name"),
        ({"channel": "jobs"}, 422, "missing_field"),
        ({"channel": "jobs", "content": ""}, 422, "invalid_string"),
        ({"channel": "jobs", "content": "x", "metadata": 3}, 422, "invalid_object"),
    ]:
        assert_error(await agent.post("/v1/tasks/post", body), status, code)
    assert_error(await agent.get("/v1/channels/jobs"), 404, "channel_not_found")


async def test_broadcast_posts_to_an_existing_channel_of_any_mode(server: Server) -> None:
    owner = await server.agent("owner")
    news = await owner.channel("news", "broadcast")
    queue = await owner.channel("queue", "claimable")
    for channel in (news["id"], "news", queue["id"]):
        reply = await owner.post(
            "/v1/tasks/broadcast", {"channel": channel, "content": "hi", "actor_label": "bot"}
        )
        assert reply.status_code == 201, reply.text
        assert set(reply.json()) == {"message", "next_cursor"}
    page = (await owner.get(f"/v1/channels/{news['id']}/messages")).json()["data"]
    assert [m["content"] for m in page] == ["hi", "hi"]
    assert_error(await owner.post("/v1/tasks/broadcast", {"content": "x"}), 422, "missing_field")
    unknown = await owner.post("/v1/tasks/broadcast", {"channel": "nope", "content": "x"})
    assert_error(unknown, 404, "channel_not_found")
    private = await owner.channel("private", "broadcast", access="restricted")
    outsider = await server.agent("outsider")
    denied = await outsider.post("/v1/tasks/broadcast", {"channel": private["id"], "content": "x"})
    assert_error(denied, 403, "channel_access_denied")


async def test_subscribe_pages_like_listing_and_long_polls(server: Server) -> None:
    agent = await server.agent()
    channel = await agent.channel("feed", "broadcast")
    sent = [await agent.send(channel["id"], f"m{n}") for n in range(3)]
    page = (await agent.post("/v1/tasks/subscribe", {"channel": "feed", "limit": 2})).json()
    assert [m["id"] for m in page["data"]] == [m["id"] for m in sent[:2]]
    assert page["limit"] == 2
    rest = await agent.post(
        "/v1/tasks/subscribe", {"channel": "feed", "since": page["next_cursor"]}
    )
    assert [m["id"] for m in rest.json()["data"]] == [sent[2]["id"]]
    assert "Deprecation" not in rest.headers
    cursor = rest.json()["next_cursor"]

    got: list[Any] = []

    async def wait_for_next() -> None:
        reply = await agent.post(
            "/v1/tasks/subscribe", {"channel": "feed", "since": cursor, "wait": 20}
        )
        got.append(reply.json())

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_next)
            await parked()
            late = await agent.send(channel["id"], "late")
    assert [m["id"] for m in got[0]["data"]] == [late["id"]]

    for body, code in [
        ({"channel": "feed", "limit": 0}, "invalid_limit"),
        ({"channel": "feed", "limit": "ten"}, "invalid_limit"),
        ({"channel": "feed", "wait": -1}, "invalid_wait"),
        ({"channel": "feed", "wait": "soon"}, "invalid_wait"),
        ({}, "missing_field"),
    ]:
        assert_error(await agent.post("/v1/tasks/subscribe", body), 422, code)


async def test_claim_and_ack_claims_then_acknowledges(server: Server) -> None:
    owner = await server.agent("owner")
    worker = await server.agent("worker")
    channel = await owner.channel("q", "claimable")
    message = await owner.send(channel["id"])
    reply = await worker.post(
        "/v1/tasks/claim-and-ack", {"message_id": message["id"], "actor": "w"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "claimed_and_acked"
    assert reply.headers["Deprecation"] == "true"
    assert reply.headers["Sunset"]
    done = reply.json()["message"]
    assert done["claimed_by"]["name"] == "w"
    assert [a["name"] for a in done["acknowledged_by"]] == ["w"]

    held = await owner.send(channel["id"])
    await worker.post(f"/v1/messages/{held['id']}/claim", {"actor": "w"})
    other = await server.agent("other")
    taken = await other.post("/v1/tasks/claim-and-ack", {"message_id": held["id"]})
    assert_error(taken, 409, "already_claimed")
    # upstream's rule: the holder naming itself by name is not "the same actor"
    again = await worker.post("/v1/tasks/claim-and-ack", {"message_id": held["id"], "actor": "w"})
    assert_error(again, 409, "already_claimed")
    assert_error(await worker.post("/v1/tasks/claim-and-ack", {}), 422, "missing_field")


async def test_task_results_post_to_and_read_from_the_result_channel(server: Server) -> None:
    agent = await server.agent()
    work = await agent.post("/v1/tasks/post", {"channel": "jobs", "content": "do it"})
    task_id = work.json()["message"]["id"]
    assert_error(await agent.get(f"/v1/tasks/{task_id}/result"), 404, "result_not_ready")
    missing = await agent.post(f"/v1/tasks/{task_id}/result", {"content": "done"})
    assert_error(missing, 404, "channel_not_found")

    await agent.channel(f"result-of-{task_id}", "broadcast")
    assert_error(await agent.get(f"/v1/tasks/{task_id}/result"), 404, "result_not_ready")
    posted = await agent.post(
        f"/v1/tasks/{task_id}/result", {"content": "done", "metadata": {"ok": True}}
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["result_channel"] == f"result-of-{task_id}"
    assert posted.json()["message"]["metadata"] == {"ok": True, "task_id": task_id}
    assert posted.headers["Deprecation"] == "true"
    result = await agent.get(f"/v1/tasks/{task_id}/result")
    assert result.status_code == 200
    assert result.json()["task_id"] == task_id
    assert result.json()["result"]["content"] == "done"


async def test_post_with_result_opens_a_result_channel_any_key_can_answer(
    server: Server,
) -> None:
    asker = await server.agent("asker")
    worker = await server.agent("worker")
    reply = await asker.post(
        "/v1/tasks/post-with-result", {"channel": "jobs", "content": "add 2 and 2"}
    )
    assert reply.status_code == 201, reply.text
    assert reply.headers["Deprecation"] == "true"
    body = reply.json()
    task_id = body["message"]["id"]
    assert body["result_channel"] == f"result-of-{task_id}"
    assert body["result_url"] == f"/v1/tasks/{task_id}/result"
    work = (await asker.get(f"/v1/channels/{body['channel']}")).json()
    assert (work["name"], work["mode"]) == ("jobs", "claimable")
    results = (await worker.get(f"/v1/channels/result-of-{task_id}")).json()
    assert results["mode"] == "broadcast"
    assert results["aliases"] == [f"result-of-{task_id}"]

    assert_error(await asker.get(f"/v1/tasks/{task_id}/result"), 404, "result_not_ready")
    answered = await worker.post(f"/v1/tasks/{task_id}/result", {"content": "4"})
    assert answered.status_code == 201, answered.text
    result = await asker.get(f"/v1/tasks/{task_id}/result")
    assert result.json()["result"]["content"] == "4"
    assert result.json()["result"]["metadata"] == {"task_id": task_id}

    again = await asker.post("/v1/tasks/post-with-result", {"channel": "jobs", "content": "2"})
    assert again.json()["channel"] == body["channel"]  # the work channel is reused (§0.9)


async def test_create_claimable_session_makes_a_restricted_channel_and_an_invitation(
    server: Server,
) -> None:
    owner = await server.agent("owner")
    guest = await server.agent("guest")
    missing = await owner.post("/v1/tasks/create-claimable-session", {"name": "s"})
    assert_error(missing, 422, "invalid_string")  # upstream's rule: description required
    reply = await owner.post(
        "/v1/tasks/create-claimable-session", {"name": "pair", "description": "work together"}
    )
    assert reply.status_code == 201, reply.text
    assert reply.headers["Deprecation"] == "true"
    channel, invitation = reply.json()["channel"], reply.json()["invitation"]
    assert (channel["mode"], channel["access"], channel["name"]) == (
        "claimable",
        "restricted",
        "pair",
    )
    assert invitation["channel"]["id"] == channel["id"]
    assert invitation["active"] is True
    denied = await guest.get(f"/v1/channels/{channel['id']}/messages")
    assert_error(denied, 403, "channel_access_denied")
    joined = await guest.get(f"/v1/channel-invitations/{invitation['id']}")
    assert joined.status_code == 200, joined.text
    assert (await guest.get(f"/v1/channels/{channel['id']}/messages")).status_code == 200
