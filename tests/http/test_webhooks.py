"""Channel webhooks over real HTTP, delivered to a real loopback receiver (§0.6, §3.13)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx
import trio

from tests.conftest import assert_error, serving
from tests.receiver import Receiver
from tests.storage.test_crash_recovery import ServerProcess

RETRY = "0.3,0.3,0.3,0.3"


async def test_a_post_is_delivered_signed_within_a_second(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    receiver = Receiver()
    url = await receiver.serve(nursery)
    async with serving(
        nursery, tmp_path, webhook_allow_private=True, webhook_retry_seconds=RETRY
    ) as server:
        alice = await server.agent("alice")
        channel = await alice.channel("hooked", webhook_url=url, webhook_secret="s3cret")
        assert "webhook_url" not in channel
        assert "webhook_secret" not in channel
        message = await alice.send(channel["id"], "deliver me")
        answered = trio.current_time()
        (got,) = await receiver.wait_for(1, within=1.0)
        assert got.at - answered < 1.0
        assert got.method == "POST"
        assert got.target == "/hook"
        expected = hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest()
        assert got.headers["x-backchannel-signature"] == f"sha256={expected}"
        assert got.headers["x-backchannel-event"] == "message.created"
        assert got.headers["user-agent"] == "Backchannel-Webhook/1"
        assert got.headers["content-type"] == "application/json"
        assert abs(int(got.headers["x-backchannel-timestamp"]) - time.time()) < 5
        assert len(got.headers["x-backchannel-delivery"]) == 36
        assert json.loads(got.body) == {"message": message}
        # the exact body is Python's json.dumps with its default separators
        assert got.body == json.dumps(json.loads(got.body)).encode()


async def test_no_secret_means_no_signature(nursery: trio.Nursery, tmp_path: Path) -> None:
    receiver = Receiver()
    url = await receiver.serve(nursery)
    async with serving(nursery, tmp_path, webhook_allow_private=True) as server:
        alice = await server.agent("alice")
        channel = await alice.channel("plain", webhook_url=url)
        await alice.send(channel["id"])
        (got,) = await receiver.wait_for(1)
        assert "x-backchannel-signature" not in got.headers


async def test_a_500_is_retried_with_the_same_delivery_id(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    receiver = Receiver(statuses=[500])
    url = await receiver.serve(nursery)
    async with serving(
        nursery, tmp_path, webhook_allow_private=True, webhook_retry_seconds=RETRY
    ) as server:
        alice = await server.agent("alice")
        channel = await alice.channel("flaky", webhook_url=url, webhook_secret="k")
        await alice.send(channel["id"])
        first, second = await receiver.wait_for(2)
        assert second.at - first.at >= 0.29
        assert first.headers["x-backchannel-delivery"] == second.headers["x-backchannel-delivery"]
        assert first.body == second.body
        await trio.sleep(1.0)
        assert len(receiver.requests) == 2  # delivered: no more attempts


async def test_five_attempts_then_it_gives_up(nursery: trio.Nursery, tmp_path: Path) -> None:
    receiver = Receiver(statuses=[500, 503, 404, 302, 500, 500, 500])
    url = await receiver.serve(nursery)
    async with serving(
        nursery, tmp_path, webhook_allow_private=True, webhook_retry_seconds="0.1,0.1,0.1,0.1"
    ) as server:
        alice = await server.agent("alice")
        channel = await alice.channel("down", webhook_url=url)
        await alice.send(channel["id"])
        attempts = await receiver.wait_for(5)
        assert len({a.headers["x-backchannel-delivery"] for a in attempts}) == 1
        await trio.sleep(0.6)
        assert len(receiver.requests) == 5


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    receiver = Receiver(statuses=[307, 302])
    url = await receiver.serve(nursery)
    receiver.location = url.replace("/hook", "/elsewhere")
    async with serving(
        nursery, tmp_path, webhook_allow_private=True, webhook_retry_seconds="0.1,0.1"
    ) as server:
        alice = await server.agent("alice")
        channel = await alice.channel("moved", webhook_url=url)
        await alice.send(channel["id"])
        attempts = await receiver.wait_for(3)
        assert [a.target for a in attempts] == ["/hook", "/hook", "/hook"]
        await trio.sleep(0.3)
        assert len(receiver.requests) == 3  # the third (200) delivered it


async def test_a_hanging_receiver_delays_nobody_else(nursery: trio.Nursery, tmp_path: Path) -> None:
    stuck = Receiver(hang=True)
    stuck_url = await stuck.serve(nursery)
    healthy = Receiver()
    healthy_url = await healthy.serve(nursery)
    async with serving(
        nursery,
        tmp_path,
        webhook_allow_private=True,
        webhook_retry_seconds="0.2",
        webhook_timeout_seconds=1.5,
    ) as server:
        alice = await server.agent("alice")
        slow = await alice.channel("slow", webhook_url=stuck_url)
        fast = await alice.channel("fast", webhook_url=healthy_url)  # same host, other port
        for _ in range(4):
            await alice.send(slow["id"])
        await stuck.wait_for(1)
        started = trio.current_time()
        for n in range(3):
            await alice.send(fast["id"], f"fast {n}")
        assert trio.current_time() - started < 1.0  # the API is not held up
        await healthy.wait_for(3, within=1.0)
        # slow start: a receiver that has not answered yet gets one attempt at a time
        assert len(stuck.requests) == 1
        # the stuck attempt times out and is retried; the others then go through
        stuck.hang = False
        attempts = await stuck.wait_for(5, within=5)
        ids = [a.headers["x-backchannel-delivery"] for a in attempts]
        assert ids[0] in ids[1:]
        assert len(set(ids)) == 4
        await trio.sleep(0.5)
        assert len(stuck.requests) == 5


async def test_a_hanging_path_does_not_hold_up_another_path_of_the_same_server(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    receiver = Receiver(hang_paths={"/hang"})
    url = await receiver.serve(nursery)
    async with serving(
        nursery, tmp_path, webhook_allow_private=True, webhook_per_host_concurrency=1
    ) as server:
        alice = await server.agent("alice")
        slow = await alice.channel("slow", webhook_url=url.replace("/hook", "/hang"))
        fast = await alice.channel("fast", webhook_url=url)
        for _ in range(3):
            await alice.send(slow["id"])
        await receiver.wait_for(1)
        await alice.send(fast["id"])
        await receiver.wait_for(2, within=1.0)
        assert [r.target for r in receiver.requests] == ["/hang", "/hook"]


async def test_private_targets_are_refused_unless_allowed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path) as server:
        alice = await server.agent("alice")
        for url in (
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "https://10.1.2.3/",
            "http://[::1]:8080/",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/",
            "ftp://example.com/",
        ):
            response = await alice.post(
                "/v1/channels", {"name": "x", "mode": "broadcast", "webhook_url": url}
            )
            assert_error(response, 422, "invalid_webhook_url")
        ok = await alice.post(
            "/v1/channels",
            {"name": "x", "mode": "broadcast", "webhook_url": "https://hooks.example.com/in"},
        )
        assert ok.status_code == 201, ok.text


async def test_a_target_resolving_to_loopback_is_refused_at_delivery(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    receiver = Receiver()
    await receiver.serve(nursery)
    sneaky = f"http://127.1:{receiver.port}/hook"  # not an address literal; resolves to 127.0.0.1
    async with serving(nursery, tmp_path, webhook_retry_seconds="0.1") as server:
        alice = await server.agent("alice")
        channel = await alice.channel("sneaky", webhook_url=sneaky)
        await alice.send(channel["id"])
        text = ""
        for _ in range(100):
            text = (await server.http.get("/metrics")).text
            if 'backchannel_webhook_attempts_total{outcome="given_up"} 1.0' in text:
                break
            await trio.sleep(0.02)
        assert 'backchannel_webhook_attempts_total{outcome="refused"} 2.0' in text
        assert 'backchannel_webhook_attempts_total{outcome="failed"} 1.0' in text
        assert 'backchannel_webhook_attempts_total{outcome="delivered"} 0.0' in text
        assert receiver.requests == []


async def test_deliveries_under_load_arrive_within_a_second(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """100 posts from 5 clients to ``backchannel serve`` (its own process): p99 under 1 s."""
    receiver = Receiver()
    url = await receiver.serve(nursery)
    env = {"BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE": "true"}
    server = await ServerProcess.start(tmp_path / "data", tmp_path / "server.log", env)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            minted = await http.post("/v1/keys", json={"agent_label": "load"})
            headers = {"X-API-Key": minted.json()["key"]}
            created = await http.post(
                "/v1/channels",
                json={"name": "busy", "mode": "broadcast", "webhook_url": url},
                headers=headers,
            )
            path = f"/v1/channels/{created.json()['id']}/messages"
            answered: dict[str, float] = {}

            async def producer(n: int) -> None:
                for i in range(20):
                    posted = await http.post(path, json={"content": f"{n}-{i}"}, headers=headers)
                    answered[posted.json()["message"]["id"]] = trio.current_time()

            async with trio.open_nursery() as producers:
                for n in range(5):
                    producers.start_soon(producer, n)
            arrived = await receiver.wait_for(100, within=10)
    finally:
        await server.kill()
    delays = sorted(r.at - answered[json.loads(r.body)["message"]["id"]] for r in arrived)
    assert delays[int(len(delays) * 0.99) - 1] < 1.0, delays[-5:]
    assert len({json.loads(r.body)["message"]["id"] for r in arrived}) == 100
    assert receiver.connections <= 8  # kept alive: the slots' connections are reused


async def test_an_approved_access_request_delivers_member_added(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    receiver = Receiver()
    url = await receiver.serve(nursery)
    async with serving(nursery, tmp_path, webhook_allow_private=True) as server:
        alice = await server.agent("alice")
        bob = await server.agent("bob")
        channel = await alice.channel(
            "guarded", access="restricted", webhook_url=url, webhook_secret="k"
        )
        asked = await bob.post(f"/v1/channels/{channel['id']}/access-requests", {"reason": "hi"})
        request_id = asked.json()["request_id"]
        denied_first = await alice.channel("other", access="restricted", webhook_url=url)
        other = await bob.post(f"/v1/channels/{denied_first['id']}/access-requests", {})
        deny = f"/v1/channels/{denied_first['id']}/access-requests/{other.json()['request_id']}"
        assert (await alice.post(f"{deny}/deny", {})).status_code == 200
        approve = f"/v1/channels/{channel['id']}/access-requests/{request_id}/approve"
        assert (await alice.post(approve, {})).status_code == 200
        (got,) = await receiver.wait_for(1)
        assert got.headers["x-backchannel-event"] == "member_added"
        assert json.loads(got.body) == {
            "channel_id": channel["id"],
            "member_key_id": bob.key_id,
            "approved_by": alice.key_id,
        }
        expected = hmac.new(b"k", got.body, hashlib.sha256).hexdigest()
        assert got.headers["x-backchannel-signature"] == f"sha256={expected}"
