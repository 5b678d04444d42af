"""The API lane's own parts: routing, query parsing, hypercorn tuning."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio import serve
from hypothesis import given
from hypothesis import strategies as st

from backchannel.http.hypercorn_answer import HOLD_LIMIT
from backchannel.http.hypercorn_tuning import tune_hypercorn
from backchannel.http.request import Request, parse_query
from backchannel.http.router import Router


def make_router() -> Router[str]:
    router: Router[str] = Router()
    router.add("GET", "/v1/keys/me", "me")
    router.add("DELETE", "/v1/keys/me", "revoke")
    router.add("GET", "/v1/channels/<identifier>", "channel")
    router.add("POST", "/v1/channels/<identifier>/messages", "post")
    router.add("GET", "/v1/channels/<identifier>/messages", "list")
    router.add("POST", "/v1/messages/<message_id>/ack", "ack")
    router.add("POST", "/v1/leases/<lease_token>/heartbeat", "heartbeat")
    return router


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/keys/me", ("me", {})),
        ("DELETE", "/v1/keys/me", ("revoke", {})),
        ("GET", "/v1/channels/abc", ("channel", {"identifier": "abc"})),
        ("POST", "/v1/channels/a b/messages", ("post", {"identifier": "a b"})),
        ("GET", "/v1/channels/x/messages", ("list", {"identifier": "x"})),
        ("POST", "/v1/messages/m1/ack", ("ack", {"message_id": "m1"})),
        ("POST", "/v1/leases/t/heartbeat", ("heartbeat", {"lease_token": "t"})),
    ],
)
def test_routes_match_with_their_parameters(
    method: str, path: str, expected: tuple[str, dict[str, str]]
) -> None:
    assert make_router().match(method, path) == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/keys/me"),  # known path, other method
        ("GET", "/v1/channels/"),  # a parameter is never empty
        ("GET", "/v1/channels//messages"),
        ("GET", "/v1/channels/a/b"),  # a parameter never spans a slash
        ("POST", "/v1/messages/m1/nack"),
        ("GET", "/v1/keys/me/"),
        ("GET", "/"),
    ],
)
def test_misses(method: str, path: str) -> None:
    assert make_router().match(method, path) is None


def test_knows_paths_whatever_the_method() -> None:
    router = make_router()
    assert router.knows("/v1/keys/me")
    assert router.knows("/v1/messages/m1/ack")
    assert not router.knows("/v1/messages/m1")
    assert sorted(router)[:2] == [("DELETE", "/v1/keys/me"), ("GET", "/v1/channels/<identifier>")]


@pytest.mark.parametrize(
    "raw",
    [
        b"a=1&b=x+y&a=2",
        b"since=2026-01-01T00:00:00+00:00&wait=30",
        b"x=%E2%9C%93&&y",
        b"c=%zz&d=%2B&e=%",
        b"=v&k=",
        b"name=%FF%FE",
    ],
)
def test_query_parsing_agrees_with_the_standard_library(raw: bytes) -> None:
    expected: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode(), keep_blank_values=True, errors="replace"):
        expected.setdefault(name, value)
    assert parse_query(raw) == expected


@given(st.text(alphabet="ab=&+%2Fé ", max_size=30))
def test_query_parsing_agrees_on_any_text(text: str) -> None:
    raw = text.encode()
    expected: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, errors="replace"):
        expected.setdefault(name, value)
    assert parse_query(raw) == expected


def test_tuning_hypercorn_twice_installs_each_patch_once() -> None:
    tune_hypercorn()
    installed = HTTPStream.app_send
    tune_hypercorn()
    assert HTTPStream.app_send is installed
    assert getattr(installed, "whole_responses", False)


async def chunked_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers ``/<chunks>x<size>`` with that many body chunks, then an empty last one."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    chunks, size = (int(n) for n in scope["path"].strip("/").split("x"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for n in range(chunks):
        piece = bytes([65 + n % 26]) * size
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(
    ("chunks", "size"),
    [(1, 10), (5, 1000), (HOLD_LIMIT // 65536 + 8, 65536)],  # the last one outgrows the hold
)
async def test_chunked_bodies_arrive_whole_with_or_without_the_hold(
    nursery: trio.Nursery, chunks: int, size: int
) -> None:
    tune_hypercorn()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    never = trio.Event()
    binds = await nursery.start(partial(serve, chunked_app, config, shutdown_trigger=never.wait))
    async with httpx.AsyncClient(base_url=binds[0], timeout=10) as http:
        for _ in range(2):  # and the connection stays usable
            response = await http.get(f"/{chunks}x{size}")
            assert response.status_code == 200
            expected = b"".join(bytes([65 + n % 26]) * size for n in range(chunks))
            assert response.content == expected
    nursery.cancel_scope.cancel()


async def test_park_on_another_server_watches_receive_for_the_disconnect() -> None:
    """Without tuned hypercorn's hook, a helper task reads ``http.disconnect``."""
    into, receive = trio.open_memory_channel[dict[str, Any]](4)
    request = Request({"method": "GET", "path": "/", "headers": []}, receive.receive)
    await into.send({"type": "http.request", "body": b"", "more_body": False})

    async def park(deadline: float, on_leave: Callable[[Callable[[], None] | None], None]) -> bool:
        left = trio.Event()
        on_leave(left.set)
        with trio.move_on_at(deadline):
            await left.wait()
            return False
        return True

    with trio.fail_after(5):
        assert await request.park(park, trio.current_time() + 0.05) is True  # deadline
        async with trio.open_nursery() as nursery:
            nursery.start_soon(into.send, {"type": "http.disconnect"})
            assert await request.park(park, trio.current_time() + 60) is False
