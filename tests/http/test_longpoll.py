"""Long-poll over real HTTP (contract §0.2, §2.6 ``wait``), on virtual time.

The server runs in the test's own trio run, so
``trio.testing.wait_all_tasks_blocked`` tells us when a waiter has reached
the server and parked, without sleeping. Every test runs on trio's
``MockClock``: the clock stands still while anything happens and jumps to
the next deadline once the process has been idle for ``AUTOJUMP`` of real
time, so a ``wait=1`` takes no real second and elapsed times are exact.
The runtime is in memory (no worker threads, whose work would look idle).
Every wait is bounded by ``trio.fail_after`` on the same clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from tests.conftest import Agent, Server, assert_error, serving, start_server, test_settings

CUSHION = 0.02  # real seconds; below AUTOJUMP, so a parked waiter is seen before a jump
AUTOJUMP = 0.05
AT_ONCE = 0.01  # virtual seconds: no deadline passed (each is a second or more away)


@pytest.fixture(autouse=True)
def virtual_time(mock_clock: trio.testing.MockClock) -> None:
    """Every test takes ``mock_clock`` itself: pytest-trio runs a test on a
    clock only when the test function asks for it by name."""
    mock_clock.autojump_threshold = AUTOJUMP


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Server]:
    async with serving(nursery, tmp_path, in_memory=True) as running:
        yield running


class Waiter:
    """One long-poll request running in the background."""

    def __init__(self, agent: Agent, channel: str, **params: Any) -> None:
        self.agent = agent
        self.path = f"/v1/channels/{channel}/messages"
        self.params = params
        self.response: httpx.Response | None = None
        self.started = 0.0
        self.finished: float | None = None
        self.scope = trio.CancelScope()

    async def run(self) -> None:
        with self.scope:
            self.started = trio.current_time()
            self.response = await self.agent.get(self.path, params=self.params)
            self.finished = trio.current_time()

    def body(self) -> dict[str, Any]:
        assert self.response is not None
        assert self.response.status_code == 200, self.response.text
        body: dict[str, Any] = self.response.json()
        return body

    @property
    def elapsed(self) -> float:
        assert self.finished is not None
        return self.finished - self.started


async def parked() -> None:
    """Until every task, the server's included, is blocked (waiters are parked)."""
    await trio.testing.wait_all_tasks_blocked(CUSHION)


async def test_a_post_wakes_the_waiter_at_once(
    mock_clock: trio.testing.MockClock, server: Server
) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    waiter = Waiter(bob, channel, wait="5", cursor="0")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter.run)
            await parked()
            assert waiter.response is None
            posted_at = trio.current_time()
            message = await alice.send(channel, "wake up")
    assert waiter.finished is not None
    assert waiter.finished - posted_at < AT_ONCE
    body = waiter.body()
    assert [m["id"] for m in body["data"]] == [message["id"]]
    assert body["data"][0]["content"] == "wake up"
    assert body["next_cursor"] not in (None, "0")


async def test_a_post_to_another_channel_does_not_wake_it(
    mock_clock: trio.testing.MockClock, server: Server
) -> None:
    alice = await server.agent("alice")
    watched = (await alice.channel("watched", "broadcast"))["id"]
    other = (await alice.channel("other", "broadcast"))["id"]
    waiter = Waiter(alice, watched, wait="1")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter.run)
            await parked()
            for index in range(3):
                await alice.send(other, f"elsewhere {index}")
            assert waiter.response is None
    assert waiter.elapsed == pytest.approx(1)
    body = waiter.body()
    assert body["data"] == []
    assert body["next_cursor"] is None


async def test_a_message_the_waiter_cannot_see_does_not_end_the_wait(
    mock_clock: trio.testing.MockClock, server: Server
) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    waiter = Waiter(alice, channel, wait="1", status="claimed")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter.run)
            await parked()
            await alice.send(channel, "unclaimed")
    assert waiter.elapsed == pytest.approx(1)
    assert waiter.body()["data"] == []


async def test_the_wait_elapses_with_an_empty_page(
    mock_clock: trio.testing.MockClock, server: Server
) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("quiet", "broadcast"))["id"]
    for params, cursor in (({"wait": "0.5"}, None), ({"wait": "0.5", "cursor": "0"}, "0")):
        waiter = Waiter(alice, channel, **params)
        with trio.fail_after(5):
            await waiter.run()
        assert waiter.elapsed == pytest.approx(0.5)
        body = waiter.body()
        assert body == {"data": [], "limit": 50, "next_cursor": cursor}


async def test_a_waiter_after_the_last_cursor_gets_only_the_new_message(
    mock_clock: trio.testing.MockClock, server: Server
) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("jobs", "broadcast"))["id"]
    await alice.send(channel, "old 1")
    await alice.send(channel, "old 2")
    listed = await bob.get(f"/v1/channels/{channel}/messages")
    cursor = listed.json()["next_cursor"]

    # with messages after the cursor, wait is not a wait at all
    waiter = Waiter(bob, channel, wait="5", cursor="0")
    with trio.fail_after(5):
        await waiter.run()
    assert waiter.elapsed < AT_ONCE
    assert [m["content"] for m in waiter.body()["data"]] == ["old 1", "old 2"]

    waiter = Waiter(bob, channel, wait="5", cursor=cursor)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter.run)
            await parked()
            posted_at = trio.current_time()
            await alice.send(channel, "new")
    assert waiter.finished is not None
    assert waiter.finished - posted_at < AT_ONCE
    assert [m["content"] for m in waiter.body()["data"]] == ["new"]


async def test_a_timestamp_cursor_means_created_after_it_while_waiting_too(
    mock_clock: trio.testing.MockClock,
    server: Server,
) -> None:
    """``since=<ISO time>`` is "created strictly after that instant" (contract §0.1),
    also for a message that arrives during the wait."""
    alice = await server.agent("alice")
    channel = (await alice.channel("future", "broadcast"))["id"]
    await alice.send(channel, "before")
    future = "2999-01-01T00:00:00+00:00"
    waiter = Waiter(alice, channel, wait="1", since=future)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter.run)
            await parked()
            await alice.send(channel, "during the wait, but long before 2999")
    body = waiter.body()
    assert body["data"] == []
    assert body["next_cursor"] == future
    assert waiter.elapsed == pytest.approx(1)
    # the same request without waiting agrees
    listed = await alice.get(f"/v1/channels/{channel}/messages", params={"since": future})
    assert listed.json()["data"] == []


async def test_one_post_wakes_every_waiter_of_the_channel(
    mock_clock: trio.testing.MockClock, server: Server
) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("fanout", "broadcast"))["id"]
    agents = [await server.agent(f"reader-{index}") for index in range(4)]
    waiters = [Waiter(agents[index % 4], channel, wait="5") for index in range(20)]
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for waiter in waiters:
                nursery.start_soon(waiter.run)
            await parked()
            posted_at = trio.current_time()
            message = await alice.send(channel, "to all")
    for waiter in waiters:
        assert waiter.finished is not None
        assert waiter.finished - posted_at < AT_ONCE
        assert [m["id"] for m in waiter.body()["data"]] == [message["id"]]


async def test_wait_is_clamped_to_the_server_cap(
    mock_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, in_memory=True, longpoll_max_wait_seconds=0.3) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("quiet", "broadcast"))["id"]
        waiter = Waiter(alice, channel, wait="20")
        with trio.fail_after(5):
            await waiter.run()
        assert waiter.elapsed == pytest.approx(0.3)
        assert waiter.body()["data"] == []


async def test_wait_is_ignored_when_long_poll_is_disabled(
    mock_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, in_memory=True, longpoll_enabled=False) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("quiet", "broadcast"))["id"]
        waiter = Waiter(alice, channel, wait="5")
        with trio.fail_after(5):
            await waiter.run()
        assert waiter.elapsed < AT_ONCE
        assert waiter.body()["data"] == []


async def test_cancelled_waiters_leave_nothing_parked(
    mock_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """50 long-polls whose clients go away do not use up a waiter cap of 2."""
    async with serving(nursery, tmp_path, in_memory=True, longpoll_max_waiters=2) as server:
        alice = await server.agent("alice")
        bob = await server.agent("bob")
        channel = (await alice.channel("jobs", "broadcast"))["id"]
        cancelled = 0
        with trio.fail_after(30):
            for _ in range(25):
                pair = [Waiter(bob, channel, wait="30") for _ in range(2)]
                async with trio.open_nursery() as waiters:
                    for waiter in pair:
                        waiters.start_soon(waiter.run)
                    await parked()
                    assert [w.response for w in pair] == [None, None]
                    # the cap is full: a third long-poll is answered at once
                    probe = Waiter(alice, channel, wait="5")
                    await probe.run()
                    assert probe.elapsed < AT_ONCE
                    assert probe.body()["data"] == []
                    for waiter in pair:
                        waiter.scope.cancel()
                cancelled += 2
                await parked()  # let the server see the clients go
        assert cancelled == 50

        fresh = [Waiter(bob, channel, wait="5") for _ in range(2)]
        with trio.fail_after(5):
            async with trio.open_nursery() as waiters:
                for waiter in fresh:
                    waiters.start_soon(waiter.run)
                await parked()
                assert [w.response for w in fresh] == [None, None]
                posted_at = trio.current_time()
                message = await alice.send(channel, "still works")
        for waiter in fresh:
            assert waiter.finished is not None
            assert waiter.finished - posted_at < AT_ONCE
            assert [m["id"] for m in waiter.body()["data"]] == [message["id"]]


async def test_stopping_the_server_answers_every_parked_long_poll(
    mock_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Stack-notes pitfall 2: without the wake-up in the shutdown trigger,
    hypercorn cuts parked long-polls with no answer after its grace period."""
    settings = test_settings(tmp_path / "data")
    running = await start_server(nursery, settings, in_memory=True)
    with trio.fail_after(10):
        async with trio.open_nursery() as stopping:
            async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
                alice = await Server(running.url, http, settings).agent("alice")
                channels = [(await alice.channel(name, "broadcast"))["id"] for name in "ab"]
                waiters = [Waiter(alice, c, wait="30") for c in channels for _ in range(2)]
                async with trio.open_nursery() as clients:
                    for waiter in waiters:
                        clients.start_soon(waiter.run)
                    await parked()
                    assert [w.response for w in waiters] == [None] * 4
                    stopping.start_soon(running.stopped)
            # the client closes its connections, so hypercorn need not wait for them
    for waiter in waiters:
        assert waiter.body() == {"data": [], "limit": 50, "next_cursor": None}


async def test_one_fan_out_answers_each_waiter_its_own_page(
    mock_clock: trio.testing.MockClock, server: Server
) -> None:
    """Woken together, waiters share one serialized page only when their page is
    the same: same cursor, limit and filter, and still allowed to read it.

    Cursors are global seqs, so a cursor can lie ahead of this channel's
    newest message; its page stays empty after the post, as does a
    ``status=claimed`` page on a broadcast channel. A member removed while
    parked is answered 403 at once, with nothing of what comes after.
    """
    alice = await server.agent("alice")
    bob, carol, dave = [await server.agent(name) for name in ("bob", "carol", "dave")]
    channel = (await alice.channel("news", "broadcast", access="restricted"))["id"]
    for member in (bob, carol, dave):
        added = await alice.post(f"/v1/channels/{channel}/members", {"key_id": member.key_id})
        assert added.status_code == 201, added.text
    first = await alice.post(f"/v1/channels/{channel}/messages", {"content": "first"})
    cursor = first.json()["next_cursor"]
    alike = [Waiter(bob, channel, cursor=cursor, wait="5") for _ in range(3)]
    alike.append(Waiter(carol, channel, cursor=cursor, wait="5"))
    ahead = Waiter(carol, channel, cursor="s99999999", wait="5")
    claimed = Waiter(bob, channel, cursor=cursor, status="claimed", wait="5")
    shorter = Waiter(carol, channel, cursor=cursor, limit="1", wait="5")
    removed = Waiter(dave, channel, cursor=cursor, wait="5")
    everyone = [*alike, ahead, claimed, shorter, removed]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for waiter in everyone:
                nursery.start_soon(waiter.run)
            await parked()
            assert [w.response for w in everyone] == [None] * len(everyone)
            gone = await alice.delete(f"/v1/channels/{channel}/members/{dave.key_id}")
            assert gone.status_code == 200, gone.text
            await parked()
            assert removed.response is not None  # answered at the removal
            posted_at = trio.current_time()
            second = await alice.send(channel, "second")
    assert removed.response is not None
    assert_error(removed.response, 403, "channel_access_denied")
    assert "second" not in removed.response.text
    for waiter in [*alike, shorter]:
        assert waiter.finished is not None
        assert waiter.finished - posted_at < AT_ONCE
        body = waiter.body()
        assert [m["id"] for m in body["data"]] == [second["id"]]
        assert body["next_cursor"] not in (None, cursor)
    assert shorter.body()["limit"] == 1
    assert len({w.body()["next_cursor"] for w in alike}) == 1
    for waiter, own_cursor in ((ahead, "s99999999"), (claimed, cursor)):
        assert waiter.elapsed == pytest.approx(5)  # never woken for good: waited it out
        assert waiter.body() == {"data": [], "limit": 50, "next_cursor": own_cursor}


async def test_waiters_with_different_limits_woken_together_get_their_own_page(
    mock_clock: trio.testing.MockClock, server: Server
) -> None:
    """Two delayed messages come due in one step and wake everyone at once."""
    alice = await server.agent("alice")
    channel = (await alice.channel("news", "broadcast"))["id"]
    waiters = [Waiter(alice, channel, cursor="0", limit=str(n), wait="30") for n in (1, 2, 1, 2)]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for waiter in waiters:
                nursery.start_soon(waiter.run)
            await parked()
            delayed = [await alice.send(channel, f"due {n}", delay_seconds=2) for n in (1, 2)]
            assert [w.response for w in waiters] == [None] * len(waiters)
    pages = [[m["id"] for m in waiter.body()["data"]] for waiter in waiters]
    both = pages[1]  # in the order they became visible (same instant: any order)
    assert sorted(both) == sorted(m["id"] for m in delayed)
    assert pages == [both[:1], both, both[:1], both]
    assert [w.elapsed for w in waiters] == [pytest.approx(2)] * len(waiters)
