"""Limits (contract §3.9, §2.3 mint limiter, §2.6 size and channel limits, §0.2, §0.8).

Counting tests run against the real server; the two that need a window to
pass run the app in-process on trio's MockClock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

from backchannel.http.app import create_app
from backchannel.runtime.service import open_runtime
from tests.conftest import Server, assert_error, serving, test_settings

# -- per-key rate limit ------------------------------------------------------------


async def test_per_key_rate_limit(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, rate_limit=3, rate_limit_window=60) as server:
        alice = await server.agent("alice")
        bob = await server.agent("bob")
        remaining = []
        for _ in range(3):
            response = await alice.get("/v1/keys/me")
            assert response.status_code == 200
            assert response.headers["X-RateLimit-Limit"] == "3"
            assert response.headers["X-RateLimit-Window"] == "60"
            remaining.append(response.headers["X-RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]

        for refused in (
            await alice.get("/v1/keys/me"),
            await alice.post("/v1/channels", {"name": "x", "mode": "claimable"}),
            await alice.get("/v1/channels/nope"),
        ):
            body = assert_error(refused, 429, "rate_limit_exceeded")
            assert refused.headers["Retry-After"] == "60"
            assert refused.headers["X-RateLimit-Limit"] == "3"
            assert body["retry_after"] == 60
            assert body["message"] == (
                "Rate limit exceeded: 3 requests per 60s. "
                "The public instance is a sandbox — self-host for higher limits."
            )

        # another key has its own window; failed requests count too
        assert_error(await bob.get("/v1/channels/nope"), 404, "channel_not_found")
        assert_error(await bob.post("/v1/channels", {"mode": "x"}), 422, "missing_field")
        last = await bob.get("/v1/keys/me")
        assert last.status_code == 200
        assert last.headers["X-RateLimit-Remaining"] == "0"
        assert_error(await bob.get("/v1/keys/me"), 429, "rate_limit_exceeded")

        # the refused create did not happen; minting is not per-key limited
        carol = await server.agent("carol")
        names = await carol.get("/v1/channels")
        assert [c["name"] for c in names.json()["data"]] == ["sandbox"]
        # unauthenticated routes carry the headers too
        health = await server.http.get("/health")
        assert health.headers["X-RateLimit-Limit"] == "3"
        assert health.headers["X-RateLimit-Window"] == "60"


async def test_idempotent_replays_count_against_the_rate_limit(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, rate_limit=4) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("c", "broadcast"))["id"]  # 1
        path = f"/v1/channels/{channel}/messages"
        headers = {"Idempotency-Key": "k"}
        first = await alice.post(path, {"content": "x"}, headers=headers)  # 2
        assert first.headers["X-RateLimit-Remaining"] == "2"
        replay = await alice.post(path, {"content": "x"}, headers=headers)  # 3
        assert replay.headers["X-Idempotent-Replay"] == "true"
        assert "X-RateLimit-Remaining" not in replay.headers
        assert (await alice.get("/v1/keys/me")).headers["X-RateLimit-Remaining"] == "0"  # 4
        assert_error(
            await alice.post(path, {"content": "x"}, headers=headers), 429, "rate_limit_exceeded"
        )


# -- mint limiter -------------------------------------------------------------------


async def test_mint_limiter_per_ip_counts_every_attempt(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, key_mint_limit=3, key_mint_window=3600) as server:
        http = server.http
        minted = await http.post("/v1/keys", json={"agent_label": "a"})
        assert minted.status_code == 201
        assert_error(await http.post("/v1/keys", json={}), 422, "missing_field")
        assert_error(await http.post("/v1/keys", json={"agent_label": "a"}), 409, "label_in_use")
        for body in ({"agent_label": "b"}, {}, {"agent_label": "c"}):
            refused = await http.post("/v1/keys", json=body)
            error = assert_error(refused, 429, "rate_limit_exceeded")
            assert error["retry_after"] == 3600
            # the header carries the per-key window, the body the mint window (§3.9)
            assert refused.headers["Retry-After"] == str(server.settings.rate_limit_window)
        # keyed routes are not affected by the mint limiter
        headers = {"X-API-Key": minted.json()["key"]}
        assert (await http.get("/v1/keys/me", headers=headers)).status_code == 200
        created = await http.post(
            "/v1/channels", json={"name": "c", "mode": "broadcast"}, headers=headers
        )
        assert created.status_code == 201


async def test_mint_limit_zero_disables_the_limiter(server: Server) -> None:
    assert server.settings.key_mint_limit == 0
    for index in range(12):
        response = await server.http.post("/v1/keys", json={"agent_label": f"k{index}"})
        assert response.status_code == 201


# -- long-poll waiter cap -------------------------------------------------------------


async def test_waiter_cap_answers_at_once(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, longpoll_max_waiters=1) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("c", "broadcast"))["id"]
        path = f"/v1/channels/{channel}/messages"
        first: list[httpx.Response] = []

        async def wait_long() -> None:
            first.append(await alice.get(path, params={"wait": "5"}))

        with trio.fail_after(5):
            async with trio.open_nursery() as waiters:
                waiters.start_soon(wait_long)
                await trio.testing.wait_all_tasks_blocked(0.02)
                assert first == []
                started = trio.current_time()
                second = await alice.get(path, params={"wait": "5", "cursor": "0"})
                assert trio.current_time() - started < 1
                assert second.status_code == 200
                assert second.json() == {"data": [], "limit": 50, "next_cursor": "0"}
                assert first == []  # the parked waiter is still parked
                message = await alice.send(channel, "wake")
        assert [m["id"] for m in first[0].json()["data"]] == [message["id"]]


# -- body and content size -------------------------------------------------------------


async def test_body_too_large(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, max_body_bytes=2048) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("c", "broadcast"))["id"]
        path = f"/v1/channels/{channel}/messages"
        headers = {"X-API-Key": alice.key, "Content-Type": "application/json"}

        def body_of(size: int) -> bytes:
            prefix, suffix = b'{"content": "', b'"}'
            return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix

        at_cap = await server.http.post(path, content=body_of(2048), headers=headers)
        assert at_cap.status_code == 201, at_cap.text
        for size in (2049, 3000, 100_000):
            over = await server.http.post(path, content=body_of(size), headers=headers)
            assert_error(over, 413, "body_too_large")
        minted = await server.http.post(
            "/v1/keys", content=b'{"agent_label": "' + b"y" * 3000 + b'"}', headers=headers
        )
        assert_error(minted, 413, "body_too_large")
        listed = await alice.get(path)
        assert len(listed.json()["data"]) == 1


async def test_content_too_large(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("c", "broadcast"))["id"]
    path = f"/v1/channels/{channel}/messages"
    cap = server.settings.max_message_bytes
    assert cap == 10_000
    for content, received in (
        ("a" * 10_001, 10_001),
        ("é" * 5_001, 10_002),
        ("  " + "🙂" * 2_501, 10_004),
    ):
        body = assert_error(await alice.post(path, {"content": content}), 422, "content_too_large")
        assert body["max_content_bytes"] == cap
        assert body["received_bytes"] == received
        assert body["message"] == "Message content exceeds the 10000-byte limit"
    # the cap applies to the trimmed text
    exact = await alice.send(channel, "   " + "a" * 10_000 + "   ")
    assert exact["content"] == "a" * 10_000
    assert len((await alice.send(channel, "é" * 5_000))["content"]) == 5_000
    listed = await alice.get(path)
    assert len(listed.json()["data"]) == 2


async def test_content_cap_follows_the_setting(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, max_message_bytes=10) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("c", "broadcast"))["id"]
        path = f"/v1/channels/{channel}/messages"
        body = assert_error(await alice.post(path, {"content": "x" * 11}), 422, "content_too_large")
        assert body["max_content_bytes"] == 10
        assert body["received_bytes"] == 11
        assert (await alice.post(path, {"content": "x" * 10})).status_code == 201
        health = await server.http.get("/health")
        assert health.json()["max_content_bytes"] == 10


# -- per-channel limits -------------------------------------------------------------


async def test_channel_max_writes_per_minute(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    limited = (await alice.channel("limited", "broadcast", max_writes_per_minute=2))["id"]
    free = (await alice.channel("free", "broadcast"))["id"]
    first = await alice.send(limited, "one")
    await bob.send(limited, "two")
    for agent in (alice, bob):
        refused = await agent.post(f"/v1/channels/{limited}/messages", {"content": "three"})
        body = assert_error(refused, 429, "channel_write_rate_exceeded")
        assert body["retry_after"] == 60
        assert refused.headers["Retry-After"] == str(server.settings.rate_limit_window)
    # retracting does not give the budget back (unlike upstream, §6 P7)
    assert (await alice.delete(f"/v1/messages/{first['id']}")).status_code == 200
    assert_error(
        await alice.post(f"/v1/channels/{limited}/messages", {"content": "four"}),
        429,
        "channel_write_rate_exceeded",
    )
    # other channels are not affected
    for index in range(4):
        await alice.send(free, f"free {index}")
    listed = await alice.get(f"/v1/channels/{limited}/messages")
    assert [m["content"] for m in listed.json()["data"]] == ["two"]


async def test_channel_max_messages_is_a_ring_buffer(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("ring", "claimable", max_messages=3))["id"]
    sent = [await alice.send(channel, f"m{index}") for index in range(5)]
    listed = await alice.get(f"/v1/channels/{channel}/messages", params={"cursor": "0"})
    assert [m["content"] for m in listed.json()["data"]] == ["m2", "m3", "m4"]
    # trimmed messages leave for history (upstream deleted them: §6 C16)
    history = await alice.get(f"/v1/channels/{channel}/history")
    assert [m["content"] for m in history.json()["data"]] == ["m1", "m0"]
    assert all(m["active"] is False for m in history.json()["data"])
    for message in sent[:2]:
        assert_error(
            await alice.post(f"/v1/messages/{message['id']}/claim"), 404, "message_not_found"
        )
    assert (await alice.post(f"/v1/messages/{sent[2]['id']}/claim")).status_code == 200
    # a claimed message is trimmed like any other
    await alice.send(channel, "m5")
    listed = await alice.get(f"/v1/channels/{channel}/messages")
    assert [m["content"] for m in listed.json()["data"]] == ["m3", "m4", "m5"]
    history = await alice.get(f"/v1/channels/{channel}/history")
    assert [m["content"] for m in history.json()["data"]] == ["m2", "m1", "m0"]
    assert history.json()["data"][0]["claimed_by"] is not None


# -- windows, in-process on the MockClock ----------------------------------------------


@asynccontextmanager
async def in_process(tmp_path: Path, **changes: Any) -> AsyncIterator[Any]:
    async with open_runtime(test_settings(tmp_path, **changes), in_memory=True) as hub:
        app = create_app(hub)
        async with app.test_app() as test_app:
            yield test_app.test_client()


async def test_windows_slide(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with in_process(tmp_path, rate_limit=3, rate_limit_window=60) as client:
        minted = await client.post("/v1/keys", json={"agent_label": "alice"})
        alice = {"X-API-Key": (await minted.get_json())["key"]}
        created = await client.post(
            "/v1/channels",
            json={"name": "c", "mode": "broadcast", "max_writes_per_minute": 1},
            headers=alice,
        )
        channel = (await created.get_json())["id"]
        path = f"/v1/channels/{channel}/messages"
        assert (await client.post(path, json={"content": "1"}, headers=alice)).status_code == 201
        throttled = await client.post(path, json={"content": "2"}, headers=alice)
        assert throttled.status_code == 429
        assert (await throttled.get_json())["error"] == "channel_write_rate_exceeded"
        limited = await client.get("/v1/keys/me", headers=alice)
        assert limited.status_code == 429
        assert (await limited.get_json())["error"] == "rate_limit_exceeded"

        await trio.sleep(59)
        assert (await client.get("/v1/keys/me", headers=alice)).status_code == 429
        await trio.sleep(1.5)
        again = await client.post(path, json={"content": "3"}, headers=alice)
        assert again.status_code == 201
        listed = await client.get(path, headers=alice)
        assert [m["content"] for m in (await listed.get_json())["data"]] == ["1", "3"]
