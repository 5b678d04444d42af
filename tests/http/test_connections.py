"""Connection lifetimes: idle keep-alives close on the read timeout."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import httpx
import trio
import trio.testing

from backchannel.http.server import serve
from tests.conftest import start_server, test_settings


async def _read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_an_idle_keepalive_connection_is_closed_after_the_read_timeout(
    nursery: trio.Nursery, tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """On virtual time: the clock jumps once the loopback has been quiet for
    0.1 s of real time (an in-memory runtime, so no worker thread is ever
    busy meanwhile), and the close comes at exactly the read timeout."""
    mock_clock.autojump_threshold = 0.1
    settings = test_settings(tmp_path, idle_timeout_seconds=1.0, longpoll_max_wait_seconds=20)
    stop = trio.Event()
    url = await nursery.start(partial(serve, settings, stop=stop, in_memory=True))
    port = int(url.rsplit(":", 1)[1])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    started = trio.current_time()
    with trio.fail_after(60):
        data = await _read_until_closed(stream)
    elapsed = trio.current_time() - started
    assert data.startswith(b"HTTP/1.1 200")
    assert 31 <= elapsed < 32  # read_timeout = ceil(max(1.0, 20 * 1.5 + 1)) = 31 s
    await stream.aclose()
    stop.set()


async def test_a_connection_serves_many_requests(nursery: trio.Nursery, tmp_path: Path) -> None:
    running = await start_server(nursery, test_settings(tmp_path))
    port = int(running.url.rsplit(":", 1)[1])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    with trio.fail_after(10):
        for _ in range(20):
            await stream.send_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = b""
            while b"}" not in reply:
                reply += await stream.receive_some(65536)
            assert reply.startswith(b"HTTP/1.1 200")
    await stream.aclose()
    await running.stopped()


async def test_answers_given_before_the_body_is_read_do_not_stall_the_connection(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Idempotent replays and early errors answer without needing the body.

    Before the pipeline drained every request body, the request after such
    an answer on the same keep-alive connection was never dispatched.
    """
    running = await start_server(nursery, test_settings(tmp_path))

    def many_requests() -> list[int]:
        statuses: list[int] = []
        with httpx.Client(base_url=running.url, timeout=5) as client:
            key = client.post("/v1/keys", json={"agent_label": "k"}).json()["key"]
            headers = {"X-API-Key": key, "Idempotency-Key": "same"}
            for n in range(40):
                body = {"name": f"actor-{n}"}
                statuses.append(client.post("/v1/actors", json=body, headers=headers).status_code)
                statuses.append(
                    client.post("/v1/actors", json=body, headers={"X-API-Key": "bad"}).status_code
                )
        return statuses

    with trio.fail_after(60):
        statuses = await trio.to_thread.run_sync(many_requests)
    assert statuses.count(201) == 40
    assert statuses.count(401) == 40
    await running.stopped()


async def test_an_answer_larger_than_the_socket_buffer_arrives_whole(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A page of several MB fills the socket: the part the first write leaves
    goes through hypercorn's own path, in order, and the connection goes on."""
    settings = test_settings(tmp_path, max_message_bytes=400_000, max_body_bytes=1_000_000)
    running = await start_server(nursery, settings)
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        key = (await http.post("/v1/keys", json={"agent_label": "big"})).json()["key"]
        headers = {"X-API-Key": key}
        created = await http.post(
            "/v1/channels", json={"name": "big", "mode": "broadcast"}, headers=headers
        )
        channel = created.json()["id"]
        for n in range(30):
            content = f"{n:02d}" + "x" * 399_000
            posted = await http.post(
                f"/v1/channels/{channel}/messages", json={"content": content}, headers=headers
            )
            assert posted.status_code == 201, posted.text
    port = int(running.url.rsplit(":", 1)[1])
    request = (
        f"GET /v1/channels/{channel}/messages?limit=30 HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nX-API-Key: {key}\r\n\r\n"
    ).encode()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    with trio.fail_after(30):
        for _ in range(2):  # the second answer proves the connection was left sound
            await stream.send_all(request)
            # until the server has filled the socket and waits for it to drain
            await trio.testing.wait_all_tasks_blocked(0.02)
            received = b""
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some(65536)
            head, body = received.split(b"\r\n\r\n", 1)
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            assert length > 10_000_000
            while len(body) < length:
                body += await stream.receive_some(1 << 20)
            assert len(body) == length
            page = json.loads(body)
            assert [m["content"][:2] for m in page["data"]] == [f"{n:02d}" for n in range(30)]
    await stream.aclose()
    await running.stopped()
