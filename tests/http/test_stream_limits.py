"""Streams at their edges: a revoked key, the keep-alive comment, the per-key
cap, and a fan-out of 200 streams from one key under the default limits.

The keep-alive test runs the server in the test's own trio run on a
``MockClock`` (in memory, as tests/http/test_longpoll.py does), so 15 s of
quiet take no real time and the interval is exact. The rest is real HTTP on
the real clock; every wait is bounded, no assertion is about speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from backchannel.config import Settings
from tests.conftest import Agent, Server, assert_error, serving
from tests.http.test_streams import LIMIT, Events, open_stream, stream

AUTOJUMP = 0.05  # real seconds idle before the mock clock jumps (test_longpoll.py says why)
AT_ONCE = 0.01  # virtual seconds


async def parked_waiters(server: Server, count: int) -> None:
    """Until the server reports ``count`` parked waiters (streams included)."""
    with trio.fail_after(LIMIT):
        while True:
            status = (await server.http.get("/status")).json()
            if status["parked_waiters"] == count:
                return
            await trio.sleep(0.01)  # the server's count, read over HTTP: nothing to wait on


async def test_revoking_a_key_ends_its_streams_and_answers_its_waits(server: Server) -> None:
    """``DELETE /v1/keys/me``: in the step that revokes the key, its open
    stream gets ``closed`` (``revoked``) and its parked long-poll and
    claim-next are answered 401 at once (their waits are 30 s); another
    key's stream on the same channel goes on."""
    alice, bob = await server.agent(), await server.agent()
    cid = (await alice.channel("work"))["id"]
    answers: dict[str, httpx.Response] = {}

    async def poll() -> None:
        path = f"/v1/channels/{cid}/messages"
        answers["poll"] = await alice.get(path, params={"since": "0", "wait": "30"})

    async def claim_next() -> None:
        path = f"/v1/channels/{cid}/claim-next"
        answers["claim"] = await alice.post(path, {"wait": 30, "lease_seconds": 60})

    async with stream(alice, cid) as mine, stream(bob, cid) as theirs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            nursery.start_soon(claim_next)
            await parked_waiters(server, 4)
            nursery.cancel_scope.deadline = trio.current_time() + LIMIT  # waits were 30 s
            revoked = await alice.delete("/v1/keys/me")
            assert revoked.status_code == 200, revoked.text
        assert not nursery.cancel_scope.cancelled_caught, "the waits were not answered"
        assert await mine.next() == {"event": "closed", "data": {"reason": "revoked"}}
        assert await mine.rest() == b""  # and nothing after it
        assert_error(answers["poll"], 401, "unauthorized")
        assert_error(answers["claim"], 401, "unauthorized")
        await parked_waiters(server, 1)  # bob's stream; nothing of alice's left behind
        await bob.send(cid, "still here")
        assert (await theirs.next())["data"]["content"] == "still here"
    again = await alice.get(f"/v1/channels/{cid}/stream")
    assert_error(again, 401, "unauthorized")


@pytest.mark.parametrize("interval", [None, 2.5])
async def test_a_quiet_stream_gets_a_keepalive_comment_every_interval(
    mock_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    tmp_path: Path,
    interval: float | None,
) -> None:
    """15 s of quiet (``STREAM_KEEPALIVE_SECONDS``) bring ``: keepalive``;
    an event restarts the count."""
    mock_clock.autojump_threshold = AUTOJUMP
    changes: dict[str, Any] = {} if interval is None else {"stream_keepalive_seconds": interval}
    every = interval or Settings().stream_keepalive_seconds
    assert Settings().stream_keepalive_seconds == 15.0
    async with serving(nursery, tmp_path, in_memory=True, **changes) as server:
        alice = await server.agent()
        cid = (await alice.channel())["id"]
        with trio.fail_after(every * 4):
            async with stream(alice, cid) as events:
                assert await events.comment() == "stream open"
                opened = trio.current_time()
                assert await events.comment() == "keepalive"
                assert every <= trio.current_time() - opened < every + AT_ONCE
                await trio.sleep(every / 2)
                await alice.send(cid, "news")
                posted = trio.current_time()
                assert (await events.next())["data"]["content"] == "news"
                assert await events.comment() == "keepalive"
                assert every <= trio.current_time() - posted < every + AT_ONCE


async def test_one_key_holds_at_most_its_cap_of_streams(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Opening a stream is not counted by the per-key rate limiter (here 3
    requests a minute), but a key holds at most ``STREAM_MAX_PER_KEY`` open
    streams: 429 past it, and a slot frees when a stream closes."""
    async with serving(nursery, tmp_path, rate_limit=3, stream_max_per_key=2) as server:
        alice = await server.agent()
        cid = (await alice.channel())["id"]  # 1 of 3 requests
        async with stream(alice, cid), stream(alice, cid):
            with trio.fail_after(LIMIT):
                full = await alice.get(f"/v1/channels/{cid}/stream")  # not counted either
            body = assert_error(full, 429, "rate_limit_exceeded")
            assert "2 open streams" in body["message"]
        # both closed by the client: a slot frees once the server has seen it go
        with trio.fail_after(LIMIT):
            while True:
                status, sock, _ = await open_stream(server.url, alice.key, cid)
                sock.close()
                if status == 200:
                    break
                await trio.sleep(0.01)
        assert (await alice.get("/v1/keys/me")).status_code == 200  # 2 of 3
        assert (await alice.get("/v1/keys/me")).status_code == 200  # 3 of 3
        assert_error(await alice.get("/v1/keys/me"), 429, "rate_limit_exceeded")


async def _read_all(streams: list[Events], count: int) -> list[list[str]]:
    """``count`` events from each stream, read concurrently: ``id content`` each."""
    got: list[list[str]] = [[] for _ in streams]

    async def read(index: int) -> None:
        taken = await streams[index].take(count)
        got[index] = [f"{e['id']} {e['data']['content']}" for e in taken]

    async with trio.open_nursery() as nursery:
        for index in range(len(streams)):
            nursery.start_soon(read, index)
    return got


async def _open_many(agent: Agent, cid: str, count: int, headers: str = "") -> list[Events]:
    url = str(agent.http.base_url).rstrip("/")
    opened: list[Events] = []

    async def open_one() -> None:
        status, sock, rest = await open_stream(url, agent.key, cid, headers=headers)
        assert status == 200
        opened.append(Events(sock, rest))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(open_one)
    return opened


@pytest.mark.timeout(60)
async def test_two_hundred_streams_from_one_key_then_half_resume(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """200 streams on one channel, one key, the default limits (rate limit,
    waiter cap, per-key cap): one post reaches all 200; then half close,
    three more posts, and the half resumed with ``Last-Event-ID`` get exactly
    those three, in order, then live, like the half that stayed."""
    defaults = Settings()
    async with serving(
        nursery,
        tmp_path,
        rate_limit=defaults.rate_limit,
        rate_limit_window=defaults.rate_limit_window,
    ) as server:
        alice = await server.agent()
        cid = (await alice.channel("fan", "broadcast"))["id"]
        streams = await _open_many(alice, cid, 200)
        await alice.send(cid, "m0")
        assert await _read_all(streams, 1) == [["s1 m0"]] * 200
        leaving, staying = streams[:100], streams[100:]
        for events in leaving:
            events.sock.close()
        for i in (1, 2, 3):
            await alice.send(cid, f"m{i}")
        resumed = await _open_many(alice, cid, 100, "Last-Event-ID: s1\r\n")
        later = ["s2 m1", "s3 m2", "s4 m3"]
        assert await _read_all(resumed, 3) == [later] * 100
        assert await _read_all(staying, 3) == [later] * 100
        await alice.send(cid, "m4")
        assert await _read_all(resumed + staying, 1) == [["s5 m4"]] * 200
        for events in resumed + staying:
            events.sock.close()
