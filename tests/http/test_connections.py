"""Connection lifetimes: idle keep-alives close on the read timeout."""

from __future__ import annotations

from pathlib import Path

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
