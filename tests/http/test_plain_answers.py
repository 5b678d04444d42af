"""Plain keep-alive answers skip h11 (``http/hypercorn_answer.py``): the same bytes,
the same next cycle, and the answer and its recycle in one step."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h11
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from backchannel.http.hypercorn_answer import next_cycle, plain_answer
from backchannel.http.hypercorn_recycle import install_safe_recycle
from backchannel.http.hypercorn_tuning import tune_hypercorn

ROOT = Path(__file__).resolve().parents[2]
GET = b"GET /x?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: k\r\n\r\n"
API_HEADERS = [
    (b"x-ratelimit-limit", b"0"),
    (b"access-control-allow-origin", b"*"),
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-request-id", b"0b8e2f6e-4a53-4d0e-9a51-3f1c7d2e9b10"),
    (b"content-type", b"application/json"),
    (b"content-length", b"11"),
    (b"date", b"Mon, 30 Nov 2026 15:00:00 GMT"),
]
WERKZEUG_HEADERS = [
    (b"Content-Type", b"text/plain; charset=utf-8"),
    (b"Content-Length", b"11"),
    (b"Vary", b"Accept, Origin"),
]


def received(request: bytes) -> h11.Connection:
    """A server connection that has read ``request`` up to its end (or what it could)."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(request)
    while connection.their_state is not h11.DONE:
        event = connection.next_event()
        if event in (h11.NEED_DATA, h11.PAUSED):
            break
    return connection


def h11_wrote(connection: h11.Connection, status: int, headers: Any, body: bytes) -> bytes:
    data = connection.send(h11.Response(status_code=status, headers=headers)) or b""
    if body:
        data += connection.send(h11.Data(data=body)) or b""
    return data + (connection.send(h11.EndOfMessage()) or b"")


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (200, API_HEADERS, b'{"data":[]}'),
        (201, API_HEADERS, b'{"data":[]}'),
        (404, WERKZEUG_HEADERS, b"hello world"),
        (200, [(b"content-length", b"0")], b""),
    ],
)
def test_a_plain_answer_is_what_h11_writes_byte_for_byte(
    status: int, headers: Any, body: bytes
) -> None:
    ours = plain_answer(received(GET), "GET", [(b"host", b"x")], status, headers, body)
    assert ours == h11_wrote(received(GET), status, headers, body)


@pytest.mark.parametrize(
    ("request_bytes", "method", "status", "headers"),
    [
        (GET.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive, Close\r\n\r\n"), "GET", 200, None),
        (GET.replace(b"HTTP/1.1", b"HTTP/1.0"), "GET", 200, None),
        (GET.replace(b"GET", b"HEAD"), "HEAD", 200, None),
        (GET.replace(b"\r\n\r\n", b"\r\nUpgrade: h2c\r\n\r\n"), "GET", 200, None),
        (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab", "POST", 200, None),
        (GET, "GET", 204, None),
        (GET, "GET", 304, None),
        (GET, "GET", 200, [*API_HEADERS, (b"Connection", b"close")]),
        (GET, "GET", 200, [*API_HEADERS, (b"transfer-encoding", b"chunked")]),
        (GET, "GET", 200, [*API_HEADERS, (b"host", b"elsewhere")]),
        (GET, "GET", 200, [*API_HEADERS, (b"content-length", b"11")]),  # two of them
        (GET, "GET", 200, [h for h in API_HEADERS if h[0] != b"content-length"]),
        (GET, "GET", 200, [(b"content-length", b"12")]),  # not the body's length
    ],
)
def test_h11_decides_whatever_is_not_the_plain_case(
    request_bytes: bytes, method: str, status: int, headers: Any
) -> None:
    connection = received(request_bytes)
    request_headers = [(b"connection", b"keep-alive, Close")] if b"Close" in request_bytes else []
    answer = plain_answer(
        connection, method, request_headers, status, headers or API_HEADERS, b'{"data":[]}'
    )
    assert answer is None


@pytest.mark.parametrize(
    "after",
    [
        b"",
        GET,  # pipelined
        GET[:20],  # half of the next request
        GET + GET,
        b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000,  # over h11's incomplete-event limit
    ],
)
@pytest.mark.parametrize("eof", [False, True])
def test_the_next_cycle_is_the_one_start_next_cycle_begins(after: bytes, eof: bool) -> None:
    def events(connection: h11.Connection) -> list[Any]:
        seen: list[Any] = []
        for _ in range(8):
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as error:
                return [*seen, ("error", error.error_status_hint)]
            seen.append(event)
            if event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed):
                break
        return seen

    limit = 16 * 1024
    stock, ours = (h11.Connection(h11.SERVER, max_incomplete_event_size=limit) for _ in "ab")
    for connection in (stock, ours):
        connection.receive_data(GET + after)
        if eof:
            connection.receive_data(b"")
        assert isinstance(connection.next_event(), h11.Request)
        assert isinstance(connection.next_event(), h11.EndOfMessage)
        h11_wrote(connection, 200, [(b"content-length", b"2")], b"{}")
    stock.start_next_cycle()
    config = SimpleNamespace(h11_max_incomplete_size=limit)
    protocol = SimpleNamespace(connection=ours, config=config)
    next_cycle(protocol)
    fresh = protocol.connection
    assert fresh is not ours
    assert (fresh.our_state, fresh.their_state) == (stock.our_state, stock.their_state)
    assert fresh.trailing_data == stock.trailing_data
    assert events(fresh) == events(stock)


WIRE_PATHS = {
    b"/api": (200, API_HEADERS, b'{"data":[]}'),
    b"/created": (201, API_HEADERS, b'{"data":[]}'),
    b"/werkzeug": (404, WERKZEUG_HEADERS, b"hello world"),
    b"/empty": (200, [(b"content-length", b"0")], b""),
    b"/unsized": (200, [(b"content-type", b"text/plain")], b"chunked on the wire"),
    b"/big": (200, [(b"content-length", b"900000")], bytes(range(256)) * 3515 + b"x" * 160),
}


async def wire_app(scope: Any, receive: Any, send: Any) -> None:
    """Fixed answers per path (``WIRE_PATHS``); a sized body is sent in two chunks
    (stock hypercorn would frame an unsized one as two chunks, tuned as one)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    status, headers, body = WIRE_PATHS[scope["raw_path"]]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    split = 3 if any(name.lower() == b"content-length" for name, _ in headers) else len(body)
    await send({"type": "http.response.body", "body": body[:split], "more_body": True})
    await send({"type": "http.response.body", "body": body[split:]})


def wire_config() -> Config:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.include_date_header = False
    config.include_server_header = False
    return config


def wire_requests() -> bytes:
    """Pipelined, so each recycle carries the next request over; the last one closes."""
    paths = [b"/api", b"/werkzeug", b"/empty", b"/unsized", b"/created", b"/api"]
    one = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    head = b"HEAD /api HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    last = b"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    return b"".join(one % p for p in paths) + head + last


async def exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    received = b""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(request)
            while chunk := await stream.receive_some(65_536):
                received += chunk
    return received


_STOCK = """
import trio
from functools import partial
from hypercorn.trio import serve
from tests.http.test_plain_answers import wire_app, wire_config

async def main():
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, wire_app, wire_config()))
        print(binds[0], flush=True)

trio.run(main)
"""


async def test_tuned_hypercorn_writes_the_bytes_stock_hypercorn_writes(
    nursery: trio.Nursery,
) -> None:
    tune_hypercorn()
    install_safe_recycle()  # as the server does: plain answers need its stream close
    binds = await nursery.start(
        partial(serve, wire_app, wire_config(), shutdown_trigger=trio.sleep_forever)
    )
    tuned = await exchange(binds[0], wire_requests())
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", _STOCK], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(256)
                assert chunk, "the stock server did not start"
                line += chunk
        stock = await exchange(line.decode().strip(), wire_requests())
    finally:
        process.kill()
        with trio.fail_after(10):
            await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()
    assert tuned.count(b"HTTP/1.1 ") == 8
    assert tuned == stock
    nursery.cancel_scope.cancel()


async def cancelled_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers from a task already being cancelled, then finds out at its next checkpoint."""
    if scope["type"] != "http":
        await wire_app(scope, receive, send)
        return
    status, headers, body = WIRE_PATHS[b"/api"]
    with trio.CancelScope() as cancelled:
        cancelled.cancel()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        await trio.lowlevel.checkpoint()


async def test_an_answer_and_its_recycle_happen_even_in_a_cancelled_task(
    nursery: trio.Nursery,
) -> None:
    tune_hypercorn()
    install_safe_recycle()  # as the server does: plain answers need its stream close
    binds = await nursery.start(
        partial(serve, cancelled_app, wire_config(), shutdown_trigger=trio.sleep_forever)
    )
    host, port = binds[0].removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            for _ in range(3):  # the same connection, recycled each time
                await stream.send_all(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while not answer.endswith(b'{"data":[]}'):
                    chunk = await stream.receive_some(65_536)
                    assert chunk, answer
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200 \r\n")
    nursery.cancel_scope.cancel()


async def test_after_a_plain_answer_the_connection_counts_as_idle(nursery: trio.Nursery) -> None:
    """Headers of a next request trickling in after an answer do not keep the
    connection open past ``keep_alive_timeout`` from that answer."""
    tune_hypercorn()
    install_safe_recycle()
    config = wire_config()
    config.keep_alive_timeout = 2
    config.read_timeout = 2
    binds = await nursery.start(
        partial(serve, wire_app, config, shutdown_trigger=trio.sleep_forever)
    )
    host, port = binds[0].removeprefix("http://").rsplit(":", 1)
    trickle = b"GET /api HTTP/1.1\r\nX-Slow: " + b"a" * 40
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"data":[]}'):
                answer += await stream.receive_some(65_536)
            answered = trio.current_time()
            sent = 0
            with (
                trio.move_on_after(len(trickle) * 0.25),
                contextlib.suppress(trio.BrokenResourceError),
            ):
                for byte in trickle:  # a byte every 0.25 s: each read well within read_timeout
                    await stream.send_all(bytes([byte]))
                    sent += 1
                    with trio.move_on_after(0.25):
                        if await stream.receive_some(1) == b"":
                            break
            closed_after = trio.current_time() - answered
    assert 1.9 <= closed_after < 5, (closed_after, sent)
    nursery.cancel_scope.cancel()


async def test_an_answer_the_socket_takes_in_part_goes_out_whole_once(
    nursery: trio.Nursery,
) -> None:
    """A client that reads slowly: the socket takes part of a plain answer and
    the rest waits for it (hypercorn's path); not a byte lost or sent twice."""
    tune_hypercorn()
    install_safe_recycle()
    binds = await nursery.start(
        partial(serve, wire_app, wire_config(), shutdown_trigger=trio.sleep_forever)
    )
    host, port = binds[0].removeprefix("http://").rsplit(":", 1)
    expected = b"HTTP/1.1 200 \r\ncontent-length: 900000\r\n\r\n" + WIRE_PATHS[b"/big"][2]
    with trio.fail_after(30):
        sock = trio.socket.socket()
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
        await sock.connect((host, int(port)))
        stream = trio.SocketStream(sock)
        async with stream:
            for _ in range(2):  # and the connection is recycled after it
                await stream.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                await trio.sleep(0.2)  # the server writes what the socket takes, then waits
                answer = b""
                while len(answer) < len(expected):
                    chunk = await stream.receive_some(4096)
                    assert chunk, len(answer)
                    answer += chunk
                assert answer == expected
    nursery.cancel_scope.cancel()
