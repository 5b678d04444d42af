"""Contract §3.15: the headers every answer carries, whoever serves it.

The API lane and Quart (docs, preflight, unknown paths) build their answers
separately; both must carry the same common headers.
"""

from __future__ import annotations

import re
import uuid
from email.utils import formatdate
from pathlib import Path

import httpx
import hypercorn.config
import pytest
import trio

from tests.conftest import Server, raw_http, serving

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'"
)
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def assert_common(response: httpx.Response, server: Server) -> None:
    headers = response.headers
    request_id = headers["X-Request-Id"]
    assert uuid.UUID(request_id).version == 4
    assert headers["Content-Length"] == str(len(response.content))
    assert headers["Content-Type"]
    assert headers["X-RateLimit-Limit"] == str(server.settings.rate_limit)
    assert headers["X-RateLimit-Window"] == str(server.settings.rate_limit_window)
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Content-Security-Policy"] == CSP
    generated = TRACEPARENT.match(headers["traceparent"])
    assert generated is not None, headers["traceparent"]
    assert generated.group(1) == request_id.replace("-", "")
    assert generated.group(2) == request_id.replace("-", "")[:16]
    links = headers.get("Link", "")
    if response.status_code < 400:
        assert '</openapi.json>; rel="service-desc"' in links
        assert '</.well-known/ai-manifest.json>; rel="ai-manifest"' in links
    else:
        assert not links
    assert "Strict-Transport-Security" not in headers


async def test_every_kind_of_answer_carries_the_common_headers(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("c", "broadcast"))["id"]
    answers = {
        "lane 201": await alice.post(f"/v1/channels/{channel}/messages", {"content": "x"}),
        "lane 200": await alice.get(f"/v1/channels/{channel}/messages"),
        "lane 404": await alice.get("/v1/channels/no-such-channel/messages"),
        "lane 401": await server.http.get("/v1/keys/me"),
        "lane 422": await alice.post(f"/v1/channels/{channel}/messages", {"content": ""}),
        "quart docs": await server.http.get("/llms.txt"),
        "quart preflight": await server.http.options("/v1/keys/me"),
        "quart route miss": await server.http.get("/v1/nowhere"),
        "quart wrong method": await server.http.put("/v1/keys/me"),
    }
    statuses = {name: r.status_code for name, r in answers.items()}
    assert statuses == {
        "lane 201": 201,
        "lane 200": 200,
        "lane 404": 404,
        "lane 401": 401,
        "lane 422": 422,
        "quart docs": 200,
        "quart preflight": 204,
        "quart route miss": 404,
        "quart wrong method": 404,
    }
    for response in answers.values():
        assert_common(response, server)
    ids = {r.headers["X-Request-Id"] for r in answers.values()}
    assert len(ids) == len(answers)


async def test_rate_limit_headers_on_success_only(server: Server) -> None:
    alice = await server.agent("alice")
    ok = await alice.get("/v1/keys/me")
    assert int(ok.headers["X-RateLimit-Remaining"]) >= 0
    missing = await alice.get("/v1/channels/nope")
    assert "X-RateLimit-Remaining" not in missing.headers


async def test_an_incoming_traceparent_is_echoed_verbatim(server: Server) -> None:
    alice = await server.agent("alice")
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for response in (
        await alice.get("/v1/keys/me", headers={"traceparent": trace}),
        await alice.get("/v1/channels/nope", headers={"traceparent": trace}),
        await server.http.get("/llms.txt", headers={"traceparent": trace}),
    ):
        assert response.headers["traceparent"] == trace


async def test_a_client_request_id_is_ignored(server: Server) -> None:
    alice = await server.agent("alice")
    response = await alice.get("/v1/keys/me", headers={"X-Request-Id": "mine"})
    assert response.headers["X-Request-Id"] != "mine"
    uuid.UUID(response.headers["X-Request-Id"])


async def test_hsts_when_forwarded_as_https(server: Server) -> None:
    alice = await server.agent("alice")
    for forwarded in ("https", "https, http", "https ,http"):
        response = await alice.get("/v1/keys/me", headers={"X-Forwarded-Proto": forwarded})
        hsts = response.headers["Strict-Transport-Security"]
        assert hsts == "max-age=31536000; includeSubDomains"
    plain = await alice.get("/v1/keys/me", headers={"X-Forwarded-Proto": "http, https"})
    assert "Strict-Transport-Security" not in plain.headers


async def test_a_body_far_over_the_cap_is_refused_and_the_connection_closed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Past 16x the cap (declared up front) the server answers 413 and closes."""
    async with serving(nursery, tmp_path, max_body_bytes=1024) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("c", "broadcast"))["id"]
        received = await raw_http(  # returns because the server closes the connection
            server.url,
            f"POST /v1/channels/{channel}/messages HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nX-API-Key: {alice.key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode(),
        )
        head = received.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 413")
        assert b"connection: close" in head
        assert b'"body_too_large"' in received
        listed = await alice.get(f"/v1/channels/{channel}/messages")
        assert listed.json()["data"] == []


async def test_the_date_header_is_current(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypercorn's Date header, formatted once a second by our tuning, stays right.

    Hypercorn reads ``time()`` for each answer; a fake one steps through a
    second and into the next, with no sleeping.
    """
    now = [1_700_000_000.2]
    monkeypatch.setattr(hypercorn.config, "time", lambda: now[0])
    dates = []
    for at in (1_700_000_000.2, 1_700_000_000.9, 1_700_000_001.0, 1_700_000_001.5, 1_700_000_007.3):
        now[0] = at
        response = await server.http.get("/health")
        dates.append(response.headers["Date"])
    second = [formatdate(t, usegmt=True) for t in (1_700_000_000, 1_700_000_001, 1_700_000_007)]
    assert dates == [second[0], second[0], second[1], second[1], second[2]]


async def test_no_server_banner(server: Server) -> None:
    response = await server.http.get("/health")
    assert "Server" not in response.headers
