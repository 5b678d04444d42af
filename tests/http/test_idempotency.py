"""Idempotency-Key over real HTTP (contract §0.5, §3.8 as amended by §0)."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
import trio.testing

from backchannel.http.app import create_app
from backchannel.runtime.service import open_runtime
from tests.conftest import Agent, Server, assert_error, test_settings


async def contents(agent: Agent, channel: str) -> list[str]:
    response = await agent.get(f"/v1/channels/{channel}/messages", params={"limit": 100})
    assert response.status_code == 200
    return [m["content"] for m in response.json()["data"]]


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def test_replay_returns_the_identical_response(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    path = f"/v1/channels/{channel}/messages"
    first = await alice.post(path, {"content": "once"}, headers=key("k-1"))
    assert first.status_code == 201, first.text
    assert first.headers["X-Idempotency-Source"] == "client"
    assert first.headers["Idempotency-Key"] == "k-1"
    assert "X-Idempotent-Replay" not in first.headers

    replay = await alice.post(path, {"content": "once"}, headers=key("k-1"))
    assert replay.status_code == 201
    assert replay.content == first.content
    assert replay.headers["X-Idempotent-Replay"] == "true"
    assert replay.headers["X-Idempotency-Source"] == "client"
    assert replay.headers["Idempotency-Key"] == "k-1"
    assert replay.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    assert await contents(alice, channel) == ["once"]


async def test_a_different_body_with_the_same_key_gets_the_original_response(
    server: Server,
) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    path = f"/v1/channels/{channel}/messages"
    first = await alice.post(path, {"content": "original"}, headers=key("k-2"))
    assert first.status_code == 201
    changed = await alice.post(path, {"content": "changed"}, headers=key("k-2"))
    assert changed.status_code == 201
    assert changed.content == first.content
    assert changed.headers["X-Idempotent-Replay"] == "true"
    assert await contents(alice, channel) == ["original"]


async def test_same_key_on_another_path_or_method_is_refused(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    other = (await alice.channel("other", "claimable"))["id"]
    posted = await alice.post(
        f"/v1/channels/{channel}/messages", {"content": "x"}, headers=key("k-3")
    )
    assert posted.status_code == 201
    message = posted.json()["message"]["id"]

    for response in (
        await alice.post(f"/v1/channels/{other}/messages", {"content": "x"}, headers=key("k-3")),
        await alice.post("/v1/channels", {"name": "n", "mode": "claimable"}, headers=key("k-3")),
        await alice.post(f"/v1/messages/{message}/claim", {}, headers=key("k-3")),
        await alice.delete(f"/v1/messages/{message}", headers=key("k-3")),
    ):
        body = assert_error(response, 422, "idempotency_key_reused")
        assert body["message"]
    assert await contents(alice, channel) == ["x"]
    assert await contents(alice, other) == []
    names = [c["name"] for c in (await alice.get("/v1/channels")).json()["data"]]
    assert names == ["other", "jobs", "sandbox"]


async def test_keys_are_scoped_to_the_api_key(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("jobs", "broadcast"))["id"]
    path = f"/v1/channels/{channel}/messages"
    first = await alice.post(path, {"content": "a"}, headers=key("shared"))
    second = await bob.post(path, {"content": "b"}, headers=key("shared"))
    assert first.status_code == second.status_code == 201
    assert "X-Idempotent-Replay" not in second.headers
    assert await contents(alice, channel) == ["a", "b"]


async def test_without_a_key_identical_posts_are_two_messages(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    path = f"/v1/channels/{channel}/messages"
    first = await alice.post(path, {"content": "same"})
    second = await alice.post(path, {"content": "same"})
    assert first.status_code == second.status_code == 201
    for response in (first, second):
        assert "X-Idempotent-Replay" not in response.headers
        assert "X-Idempotency-Source" not in response.headers
    assert first.json()["message"]["id"] != second.json()["message"]["id"]
    assert await contents(alice, channel) == ["same", "same"]


async def test_concurrent_requests_with_one_key_execute_once(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    path = f"/v1/channels/{channel}/messages"
    responses: list[httpx.Response] = []

    async def send(content: str) -> None:
        responses.append(await alice.post(path, {"content": content}, headers=key("race")))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for index in range(8):
                nursery.start_soon(send, f"racer {index}")
    assert [r.status_code for r in responses] == [201] * 8
    assert len({r.content for r in responses}) == 1
    replays = [r.headers.get("X-Idempotent-Replay") for r in responses]
    assert replays.count("true") == 7
    assert len(await contents(alice, channel)) == 1


async def test_concurrent_claims_with_one_key_execute_once(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    message = (await alice.send(channel, "work"))["id"]
    responses: list[httpx.Response] = []

    async def claim(actor: str) -> None:
        responses.append(
            await alice.post(
                f"/v1/messages/{message}/claim-with-lease", {"actor": actor}, headers=key("c")
            )
        )

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for index in range(5):
                nursery.start_soon(claim, f"w{index}")
    assert [r.status_code for r in responses] == [200] * 5
    assert len({r.json()["lease_token"] for r in responses}) == 1
    assert len({r.content for r in responses}) == 1


async def test_errors_are_not_stored(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    path = f"/v1/channels/{channel}/messages"
    refused = await alice.post(path, {"content": ""}, headers=key("fix-me"))
    assert_error(refused, 422, "invalid_string")
    refused_again = await alice.post(path, {"content": "  "}, headers=key("fix-me"))
    assert_error(refused_again, 422, "invalid_string")
    fixed = await alice.post(path, {"content": "fixed"}, headers=key("fix-me"))
    assert fixed.status_code == 201, fixed.text
    assert "X-Idempotent-Replay" not in fixed.headers
    replay = await alice.post(path, {"content": ""}, headers=key("fix-me"))
    assert replay.status_code == 201
    assert replay.content == fixed.content
    assert replay.headers["X-Idempotent-Replay"] == "true"
    assert await contents(alice, channel) == ["fixed"]


async def test_a_refused_claim_is_retried_not_replayed(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    message = (await alice.send(channel, "work"))["id"]
    assert (await alice.post(f"/v1/messages/{message}/claim")).status_code == 200
    lost = await bob.post(f"/v1/messages/{message}/claim", {}, headers=key("try"))
    assert_error(lost, 409, "already_claimed")
    assert (await alice.post(f"/v1/messages/{message}/release")).status_code == 200
    won = await bob.post(f"/v1/messages/{message}/claim", {}, headers=key("try"))
    assert won.status_code == 200
    assert won.json()["status"] == "claimed"
    assert won.json()["message"]["claimed_by_key_id"] == bob.key_id


async def test_replay_of_other_mutations(server: Server) -> None:
    alice = await server.agent("alice")
    created = await alice.post(
        "/v1/channels", {"name": "made-once", "mode": "broadcast"}, headers=key("ch")
    )
    again = await alice.post(
        "/v1/channels", {"name": "made-once", "mode": "broadcast"}, headers=key("ch")
    )
    assert created.status_code == again.status_code == 201
    assert again.content == created.content
    names = [c["name"] for c in (await alice.get("/v1/channels")).json()["data"]]
    assert names == ["made-once", "sandbox"]

    channel = created.json()["id"]
    message = (await alice.send(channel, "gone soon"))["id"]
    deleted = await alice.delete(f"/v1/messages/{message}", headers=key("del"))
    assert deleted.status_code == 200
    replayed = await alice.delete(f"/v1/messages/{message}", headers=key("del"))
    assert replayed.status_code == 200
    assert replayed.json() == {"status": "retracted"}
    assert replayed.headers["X-Idempotent-Replay"] == "true"
    # without the key a second retraction is a fresh request
    assert (await alice.delete(f"/v1/messages/{message}")).status_code == 404

    actor = await alice.post("/v1/actors", {"name": "a"}, headers=key("act"))
    actor_again = await alice.post("/v1/actors", {"name": "a"}, headers=key("act"))
    assert actor_again.json()["id"] == actor.json()["id"]


async def test_unusable_idempotency_keys_are_4xx(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    path = f"/v1/channels/{channel}/messages"
    too_long = "k" * (server.settings.max_idempotency_key_chars + 1)
    for value in (too_long, ""):
        response = await alice.post(path, {"content": "x"}, headers=key(value))
        assert 400 <= response.status_code < 500, response.text
        body = response.json()
        assert body["request_id"] == response.headers["X-Request-Id"]
    assert await contents(alice, channel) == []


async def test_a_key_is_remembered_for_24_hours(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with open_runtime(test_settings(tmp_path), in_memory=True) as hub:
        app = create_app(hub)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            minted = await client.post("/v1/keys", json={"agent_label": "alice"})
            alice = {"X-API-Key": (await minted.get_json())["key"]}
            created = await client.post(
                "/v1/channels",
                json={"name": "c", "mode": "broadcast", "ttl_seconds": 2_592_000},
                headers=alice,
            )
            path = f"/v1/channels/{(await created.get_json())['id']}/messages"
            keyed = {**alice, "Idempotency-Key": "daily"}
            first = await client.post(path, json={"content": "a"}, headers=keyed)
            assert first.status_code == 201
            await trio.sleep(86_400 - 1)
            replay = await client.post(path, json={"content": "b"}, headers=keyed)
            assert replay.headers["X-Idempotent-Replay"] == "true"
            assert await replay.get_data() == await first.get_data()
            await trio.sleep(2)
            fresh = await client.post(path, json={"content": "c"}, headers=keyed)
            assert fresh.status_code == 201
            assert "X-Idempotent-Replay" not in fresh.headers
            listed = await client.get(path, headers=alice)
            assert [m["content"] for m in (await listed.get_json())["data"]] == ["a", "c"]
