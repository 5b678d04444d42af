"""``GET /v1/channels/{id}/stream`` over real HTTP: server-sent events.

Ordering, resume by ``Last-Event-ID`` without loss or repeat, a slow reader
ended by ``overflow`` while others go on, access changes, the waiter cap
and shutdown. Every wait is bounded by ``trio.fail_after``; the order of
events is the server's, never a sleep's.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from tests.conftest import Agent, Server, serving

LIMIT = 10  # seconds any one step may take


class Events:
    """One open stream on its own socket: a small HTTP/1.1 client that decodes
    the chunked body and parses its events (comments skipped)."""

    def __init__(self, sock: trio.socket.SocketType, rest: bytes) -> None:
        self.sock = sock
        self._raw = rest  # undecoded chunked bytes
        self._body = b""  # decoded body not yet parsed
        self.ended = False

    async def _fill(self) -> None:
        """Decode one more chunk into ``_body``, reading the socket as needed."""
        while True:
            head, sep, tail = self._raw.partition(b"\r\n")
            if sep:
                size = int(head, 16)
                if size == 0:
                    self.ended = True
                    return
                if len(tail) >= size + 2:
                    self._body += tail[:size]
                    self._raw = tail[size + 2 :]
                    return
            data = await self.sock.recv(1 << 16)
            if not data:
                self.ended = True
                return
            self._raw += data

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(LIMIT):
            while True:
                block, sep, rest = self._body.partition(b"\n\n")
                if sep:
                    self._body = rest
                    event: dict[str, Any] = {}
                    for line in block.decode().split("\n"):
                        if line and not line.startswith(":"):
                            name, _, value = line.partition(": ")
                            event[name] = json.loads(value) if name == "data" else value
                    if "event" in event:
                        return event
                    continue
                if self.ended:
                    raise AssertionError(f"stream ended; left {self._body!r}")
                await self._fill()

    async def comment(self) -> str:
        """The text of the next comment line, dropping whatever comes before it.

        Unbounded: the caller bounds it (on a ``MockClock`` when it waits for
        a keep-alive, which ``LIMIT`` of real-clock seconds would cut short).
        """
        while True:
            block, sep, rest = self._body.partition(b"\n\n")
            if sep:
                self._body = rest
                for line in block.decode().split("\n"):
                    if line.startswith(": "):
                        return line[2:]
                continue
            if self.ended:
                raise AssertionError(f"stream ended; left {self._body!r}")
            await self._fill()

    async def take(self, count: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(count)]

    async def rest(self) -> bytes:
        """Everything until the stream ends."""
        with trio.fail_after(LIMIT):
            while not self.ended:
                await self._fill()
        return self._body


async def open_stream(
    url: str, key: str, cid: str, query: str = "", headers: str = "", rcvbuf: int = 0
) -> tuple[int, trio.socket.SocketType, bytes]:
    host, port = url.removeprefix("http://").split(":")
    sock = trio.socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    with trio.fail_after(LIMIT):
        await sock.connect((host, int(port)))
        request = (
            f"GET /v1/channels/{cid}/stream{query} HTTP/1.1\r\nHost: x\r\n"
            f"X-API-Key: {key}\r\n{headers}\r\n"
        )
        await sock.send(request.encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += await sock.recv(1 << 16)
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status == 200:
        assert b"content-type: text/event-stream" in head.lower()
    return status, sock, rest


@asynccontextmanager
async def stream(agent: Agent, cid: str, **params: str) -> AsyncIterator[Events]:
    url = str(agent.http.base_url).rstrip("/")
    headers = ""
    if "last_event_id" in params:
        headers = f"Last-Event-ID: {params.pop('last_event_id')}\r\n"
    query = "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
    status, sock, rest = await open_stream(url, agent.key, cid, query, headers)
    assert status == 200
    with sock:
        yield Events(sock, rest)


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["content"] for e in events]


async def test_backlog_then_live_in_order_with_changes(server: Server) -> None:
    alice = await server.agent()
    cid = (await alice.channel())["id"]
    first = [await alice.send(cid, f"m{i}") for i in range(3)]
    async with stream(alice, cid, since="0") as events:
        backlog = await events.take(3)
        assert ids(backlog) == ["m0", "m1", "m2"]
        assert [e["id"] for e in backlog] == [f"s{i}" for i in (1, 2, 3)]
        assert {e["event"] for e in backlog} == {"message"}
        await alice.send(cid, "m3")
        live = await events.next()
        assert (live["event"], live["id"], live["data"]["content"]) == ("message", "s4", "m3")
        claimed = await alice.post(f"/v1/messages/{first[0]['id']}/claim", {})
        assert claimed.status_code == 200, claimed.text
        change = await events.next()
        assert change["event"] == "claimed"
        assert "id" not in change
        assert change["data"]["id"] == first[0]["id"]
        assert change["data"]["claimed_at"] is not None
        acked = await alice.post(f"/v1/messages/{first[0]['id']}/ack", {})
        assert acked.status_code == 200, acked.text
        assert (await events.next())["event"] == "acked"


async def test_resume_by_last_event_id_without_loss_or_repeat(server: Server) -> None:
    alice = await server.agent()
    cid = (await alice.channel("feed", "broadcast"))["id"]
    for i in range(5):
        await alice.send(cid, f"m{i}")
    async with stream(alice, cid) as events:
        seen = await events.take(3)
    for i in range(5, 8):
        await alice.send(cid, f"m{i}")
    # Last-Event-ID wins over since
    async with stream(alice, cid, since="s1", last_event_id=seen[-1]["id"]) as events:
        rest = await events.take(5)
        await alice.send(cid, "m8")
        rest.append(await events.next())
    assert ids(seen + rest) == [f"m{i}" for i in range(9)]


async def test_fan_out_to_many_streams(server: Server) -> None:
    alice = await server.agent()
    cid = (await alice.channel("fan", "broadcast"))["id"]
    got: list[str] = []
    opened = trio.Event()
    count = 20

    async with trio.open_nursery() as nursery:
        ready: list[int] = []

        async def read() -> None:
            async with stream(alice, cid, since="0") as events:
                ready.append(1)
                if len(ready) == count:
                    opened.set()
                got.append((await events.next())["data"]["content"])

        for _ in range(count):
            nursery.start_soon(read)
        with trio.fail_after(LIMIT):
            await opened.wait()
        await alice.send(cid, "all")
    assert got == ["all"] * count


async def test_slow_reader_overflows_others_go_on(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, stream_buffer_events=4) as server:
        alice = await server.agent()
        cid = (await alice.channel("fast", "broadcast"))["id"]
        status, slow, _ = await open_stream(server.url, alice.key, cid, rcvbuf=4096)
        assert status == 200
        body = "x" * 9_000
        async with stream(alice, cid) as fast:
            for i in range(120):  # the slow reader reads nothing meanwhile
                await alice.send(cid, f"{i}{body}")
                assert (await fast.next())["data"]["content"].startswith(f"{i}x")
        with slow:
            received = await Events(slow, b"").rest()
        assert b"event: overflow" in received
        last = received.rsplit(b"id: ", 1)[1].split(b"\n", 1)[0].decode()
        async with stream(alice, cid, last_event_id=last) as resumed:
            first = await resumed.next()
            assert first["id"] == f"s{int(last[1:]) + 1}"


async def test_removed_member_stream_ends_at_once(server: Server) -> None:
    alice, bob = await server.agent(), await server.agent()
    cid = (await alice.channel("secret", access="restricted"))["id"]
    assert (await alice.post(f"/v1/channels/{cid}/members", {"key_id": bob.key_id})).is_success
    async with stream(bob, cid) as events:
        await alice.send(cid, "before")
        assert (await events.next())["data"]["content"] == "before"
        assert (await alice.delete(f"/v1/channels/{cid}/members/{bob.key_id}")).is_success
        await alice.send(cid, "after")
        closed = await events.next()
        assert closed == {"event": "closed", "data": {"reason": "access"}}
        assert b"after" not in await events.rest()
    refused = await bob.get(f"/v1/channels/{cid}/stream")
    assert refused.status_code == 403


async def test_streams_count_against_the_waiter_cap(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, longpoll_max_waiters=1) as server:
        alice = await server.agent()
        cid = (await alice.channel())["id"]
        async with stream(alice, cid) as events:
            await alice.send(cid, "one")
            await events.next()
            full = await alice.get(f"/v1/channels/{cid}/stream")
            assert full.status_code == 503
        with trio.fail_after(LIMIT):
            async with stream(alice, cid, max_seconds="0.1") as again:
                assert (await again.next())["event"] == "message"
                assert await again.next() == {"event": "closed", "data": {"reason": "max_seconds"}}


async def test_streams_end_cleanly_on_shutdown(nursery: trio.Nursery, tmp_path: Path) -> None:
    ended: list[dict[str, Any]] = []
    done = trio.Event()
    async with serving(nursery, tmp_path) as server:
        alice = await server.agent()
        cid = (await alice.channel())["id"]
        opened = trio.Event()

        async def read() -> None:
            async with stream(alice, cid) as events:
                opened.set()
                ended.append(await events.next())
            done.set()

        nursery.start_soon(read)
        with trio.fail_after(LIMIT):
            await opened.wait()
    with trio.fail_after(LIMIT):
        await done.wait()
    assert ended == [{"event": "closed", "data": {"reason": "shutdown"}}]


async def test_bad_cursor_and_unknown_channel_are_refused_at_once(server: Server) -> None:
    alice = await server.agent()
    cid = (await alice.channel())["id"]
    with trio.fail_after(LIMIT):
        bad = await alice.get(f"/v1/channels/{cid}/stream", params={"since": "nope"})
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_query"
        missing = await alice.get("/v1/channels/ch_missing/stream")
        assert missing.status_code == 404


async def test_a_stream_outlives_the_read_timeout(nursery: trio.Nursery, tmp_path: Path) -> None:
    """Idle keep-alives close after ``read_timeout`` of client silence (here 1 s);
    a stream's client is silent by design and its stream stays open."""
    async with serving(
        nursery, tmp_path, idle_timeout_seconds=1.0, longpoll_max_wait_seconds=0.0
    ) as server:
        alice = await server.agent()
        cid = (await alice.channel())["id"]
        async with stream(alice, cid) as events:
            await trio.sleep(2.5)  # the timeout under test, not an ordering
            await alice.send(cid, "still here")
            assert (await events.next())["data"]["content"] == "still here"


async def test_delayed_messages_and_dead_letters_appear_when_they_become_visible(
    server: Server,
) -> None:
    """A delayed post shows up on the stream only when it comes due, after a
    message posted later; a dead-lettered copy arrives on the DLQ's stream."""
    alice = await server.agent()
    cid = (await alice.channel("work"))["id"]
    dlq = (await alice.channel("dlq"))["id"]
    patched = await alice.patch(
        f"/v1/channels/{cid}", {"max_deliveries": 1, "dead_letter_channel": dlq}
    )
    assert patched.status_code == 200, patched.text
    async with stream(alice, cid, since="0") as events, stream(alice, dlq, since="0") as dead:
        await alice.send(cid, "later", delay_seconds=1)
        now = await alice.send(cid, "now")
        first = await events.next()
        assert (first["event"], first["data"]["content"]) == ("message", "now")
        due = await events.next()  # about a second later, with the next position
        assert (due["event"], due["data"]["content"]) == ("message", "later")
        assert int(due["id"][1:]) > int(first["id"][1:])
        claimed = await alice.post(f"/v1/messages/{now['id']}/claim", {})
        assert claimed.status_code == 200, claimed.text
        released = await alice.post(f"/v1/messages/{now['id']}/release", {})
        assert released.status_code == 200, released.text
        moved = await dead.next()
        assert (moved["event"], moved["data"]["content"]) == ("message", "now")
        assert moved["data"]["metadata"]["dead_letter"]["source_message_id"] == now["id"]
