"""Keep-alive connections survive answers given before the request body arrived.

The stall (``backchannel/http/hypercorn_recycle.py``): a POST answered while
its body is still on the way left hypercorn's HTTP/1.1 connection unable to
recycle, and the next request on that connection was read and never
answered. Each test below sends a request body *after* the headers, then
the next request on the same connection, and requires an answer to both.
"""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import Any

import h11
import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response
from quart_trio import QuartTrio

from backchannel.http.app import create_app
from backchannel.http.hypercorn_recycle import install_safe_recycle
from backchannel.http.hypercorn_tuning import tune_hypercorn
from backchannel.runtime.service import open_runtime
from tests.conftest import Server, test_settings


class Connection:
    """One client keep-alive connection, framed by h11."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, url: str) -> Connection:
        port = int(url.rsplit(":", 1)[1])
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, event: Any) -> None:
        await self.stream.send_all(self.h11.send(event) or b"")

    async def response(self) -> tuple[int, bytes]:
        """The rest of the current response on this connection: status and body."""
        status, body = 0, b""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = await self.stream.receive_some(65536)
                assert data, "the server closed the connection instead of answering"
                self.h11.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, body

    async def answered_soon(self) -> None:
        """Give the server 20 ms to start answering, and take what it sends."""
        with trio.move_on_after(0.02):
            self.h11.receive_data(await self.stream.receive_some(65536))


def head(method: str, path: str, size: int | None, **headers: str) -> h11.Request:
    """A request head; ``size`` None means a chunked body."""
    fields = [("Host", "127.0.0.1")]
    fields.append(
        ("Transfer-Encoding", "chunked") if size is None else ("Content-Length", str(size))
    )
    fields += [(name.replace("_", "-"), value) for name, value in headers.items()]
    return h11.Request(method=method, target=path, headers=fields)


async def exchange_with_late_body(
    connection: Connection, request: h11.Request, parts: list[bytes], pause: float = 0.0
) -> int:
    """Send the head of ``request``, give the server a moment to answer, then
    the body ``parts`` (``pause`` seconds apart), then a GET on the same
    connection. Returns the first status; the GET must be answered 200."""
    with trio.fail_after(5):
        await connection.send(request)
        await connection.answered_soon()
        for part in parts:
            await connection.send(h11.Data(data=part))
            if pause:
                await trio.sleep(pause)
        await connection.send(h11.EndOfMessage())
        status, _ = await connection.response()
        connection.h11.start_next_cycle()
        await connection.send(head("GET", "/health", 0))
        await connection.send(h11.EndOfMessage())
        health, _ = await connection.response()
        connection.h11.start_next_cycle()
    assert health == 200
    return status


async def test_posts_answered_before_their_body_arrives_leave_the_connection_usable(
    server: Server,
) -> None:
    """Six clients, many rounds each, on the paths Quart and the lane answer
    without needing the body; before the fix the first round stalled."""
    agent = await server.agent()
    body = b'{"content":"x"}'
    size = len(body)
    heads = [
        head("POST", "/v1/no-such-route/x", size, Content_Type="application/json"),
        head("POST", "/llms.txt", size),  # a Quart route, wrong method
        head("OPTIONS", "/v1/channels", size, Origin="http://a.example"),
        head("POST", "/v1/channels", size, X_API_Key="bad-key"),  # 401 before the body
        head("POST", "/v1/channels/nope/messages", size, X_API_Key=agent.key),
    ]
    statuses: list[int] = []

    async def client() -> None:
        connection = await Connection.open(server.url)
        async with connection.stream:
            for _ in range(8):
                for request in heads:
                    statuses.append(await exchange_with_late_body(connection, request, [body]))

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(client)
    assert sorted(set(statuses)) == [204, 401, 404]
    assert len(statuses) == 6 * 8 * len(heads)


async def test_a_body_that_trickles_in_after_the_headers_is_answered_and_the_connection_reused(
    server: Server,
) -> None:
    body = b'{"agent_label":"slow-body"}'
    for path in ("/v1/no-such-route", "/v1/keys"):
        connection = await Connection.open(server.url)
        async with connection.stream:
            request = head("POST", path, len(body), Content_Type="application/json")
            parts = [body[n : n + 1] for n in range(len(body))]
            status = await exchange_with_late_body(connection, request, parts, pause=0.005)
            assert status == (404 if path != "/v1/keys" else 201)


# -- hypercorn's recycle path on its own, for apps that never read the body ------


async def _lifespan(receive: Any, send: Any) -> None:
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def raw_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers every request at once and never reads a body."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"early"})


def quart_app() -> QuartTrio:
    """A bare quart-trio app whose POST handler never reads the body."""
    app = QuartTrio(__name__)

    @app.route("/health", methods=["GET"])
    async def health() -> Response:
        return Response("ok")

    @app.route("/early", methods=["POST"])
    async def early() -> Response:
        return Response("early")

    return app


async def _serve_safely(nursery: trio.Nursery, app: Any) -> str:
    tune_hypercorn()
    install_safe_recycle()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    never = trio.Event()
    binds: list[str] = await nursery.start(partial(serve, app, config, shutdown_trigger=never.wait))
    return binds[0]


@pytest.mark.parametrize("which", ["quart", "raw"])
async def test_hypercorn_recycles_a_connection_whose_body_outlived_the_answer(
    nursery: trio.Nursery, which: str
) -> None:
    """quart-trio used to leave the connection stalled, a raw app had it
    closed under the client's next request; now both keep it alive."""
    url = await _serve_safely(nursery, quart_app() if which == "quart" else raw_app)
    connection = await Connection.open(url)
    async with connection.stream:
        for _ in range(20):
            request = head("POST", "/early", 10)
            assert await exchange_with_late_body(connection, request, [b"0123456789"]) == 200
    nursery.cancel_scope.cancel()


async def test_a_chunked_body_the_app_never_reads_cannot_wedge_the_connection(
    nursery: trio.Nursery,
) -> None:
    """More chunks than hypercorn queues for the app (10): the reader no longer
    blocks on a queue that nobody will read once the app has answered."""
    url = await _serve_safely(nursery, raw_app)
    connection = await Connection.open(url)
    async with connection.stream:
        for _ in range(5):
            request = head("POST", "/early", None)
            assert await exchange_with_late_body(connection, request, [b"abcd"] * 40) == 200
    nursery.cancel_scope.cancel()


async def test_a_body_beyond_the_drain_limit_closes_the_connection(nursery: trio.Nursery) -> None:
    url = await _serve_safely(nursery, raw_app)
    try:
        install_safe_recycle(drain_limit=1000)
        connection = await Connection.open(url)
        async with connection.stream:
            await connection.send(head("POST", "/early", 5000))
            with trio.fail_after(5):
                status, _ = await connection.response()
                assert status == 200
                await connection.send(h11.Data(data=b"x" * 5000))
                with contextlib.suppress(trio.BrokenResourceError):  # a reset is a close too
                    while await connection.stream.receive_some(65536):
                        pass  # the server closes once the drain limit is passed
    finally:
        install_safe_recycle()
    nursery.cancel_scope.cancel()


# -- our own answers read the body first, whatever server runs us ----------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/no-such-route"), ("OPTIONS", "/v1/channels"), ("PATCH", "/llms.txt")],
)
async def test_quart_answers_only_after_the_body_was_read(
    tmp_path: Path, method: str, path: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Quart's fallbacks (404s, preflight) get the body replayed from the lane,
    which read it to its end first: no answer of ours leaves a body unread,
    even on stock hypercorn."""
    settings = test_settings(tmp_path)
    async with open_runtime(settings, in_memory=True) as hub:
        app = create_app(hub)
        arrived = [b'{"a":', b"1}"]
        sent: list[dict[str, Any]] = []
        body_left_when_answered: list[int] = []

        async def receive() -> dict[str, Any]:
            if arrived:
                await trio.sleep(1 if len(arrived) == 1 else 0)  # the last part comes late
                return {"type": "http.request", "body": arrived.pop(0), "more_body": bool(arrived)}
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                body_left_when_answered.append(len(arrived))
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": b"",
            "scheme": "http",
            "http_version": "1.1",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-length", b"6")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
        }
        async with app.test_app():
            with trio.fail_after(5):
                await app.asgi_app(scope, receive, send)  # type: ignore[arg-type]
        assert body_left_when_answered == [0]
        assert sent[0]["status"] in (204, 404)
