"""Connection lifetimes: idle keep-alives close on the read timeout."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from tests.conftest import start_server, test_settings


async def _read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_an_idle_keepalive_connection_is_closed_after_the_read_timeout(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    settings = test_settings(tmp_path, idle_timeout_seconds=1.0, longpoll_max_wait_seconds=0.2)
    running = await start_server(nursery, settings)
    port = int(running.url.rsplit(":", 1)[1])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    started = trio.current_time()
    with trio.fail_after(10):
        data = await _read_until_closed(stream)
    elapsed = trio.current_time() - started
    assert data.startswith(b"HTTP/1.1 200")
    assert 1.5 <= elapsed < 6  # read_timeout = ceil(max(1.0, 0.2 * 1.5 + 1)) = 2 s
    await stream.aclose()
    await running.stopped()


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
            for n in range(150):
                body = {"name": f"actor-{n}"}
                statuses.append(client.post("/v1/actors", json=body, headers=headers).status_code)
                statuses.append(
                    client.post("/v1/actors", json=body, headers={"X-API-Key": "bad"}).status_code
                )
        return statuses

    with trio.fail_after(60):
        statuses = await trio.to_thread.run_sync(many_requests)
    assert statuses.count(201) == 150
    assert statuses.count(401) == 150
    await running.stopped()
