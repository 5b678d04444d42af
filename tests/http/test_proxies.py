"""Clients behind reverse proxies and the advertised base URL (§3.17, §3.18, §3.9)."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from backchannel.config import Settings
from backchannel.http.clients import ClientView
from backchannel.http.request import Request
from tests.conftest import assert_error, serving


async def _mint(http: httpx.AsyncClient, label: str, forwarded: str | None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return await http.post("/v1/keys", json={"agent_label": label}, headers=headers)


async def test_the_mint_limit_counts_the_client_behind_a_trusted_proxy(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(
        nursery, tmp_path, key_mint_limit=1, trusted_proxies="127.0.0.0/8, 10.0.0.0/8"
    ) as server:
        http = server.http
        assert (await _mint(http, "a", "203.0.113.7")).status_code == 201
        refused = await _mint(http, "b", "203.0.113.7")
        body = assert_error(refused, 429, "rate_limit_exceeded")
        assert body["retry_after"] == 3600
        assert refused.headers["Retry-After"] == "60"
        assert refused.headers["X-RateLimit-Limit"] == "0"
        assert refused.headers["X-RateLimit-Window"] == "60"
        # another client, through two trusted proxies
        assert (await _mint(http, "c", "198.51.100.2, 10.1.1.1")).status_code == 201
        # a spoofed left-most hop does not hide the real client the proxy appended
        assert_error(
            await _mint(http, "d", "198.51.100.9, 203.0.113.7"), 429, "rate_limit_exceeded"
        )
        # no header: the proxy itself is the client
        assert (await _mint(http, "e", None)).status_code == 201


async def test_without_trusted_proxies_forwarded_for_is_ignored(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, key_mint_limit=1) as server:
        assert (await _mint(server.http, "a", "203.0.113.7")).status_code == 201
        refused = await _mint(server.http, "b", "198.51.100.2")
        assert_error(refused, 429, "rate_limit_exceeded")


def _request(peer: str, **headers: str) -> Request:
    raw = [(k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "method": "GET",
        "path": "/",
        "headers": raw,
        "client": (peer, 5000),
        "scheme": "http",
    }
    return Request(scope, None)


def test_client_ip_walks_forwarded_for_right_to_left() -> None:
    view = ClientView(Settings(trusted_proxies="10.0.0.0/8,::1/128"))
    assert view.client_ip(_request("192.0.2.1", x_forwarded_for="1.1.1.1")) == "192.0.2.1"
    trusted = "10.0.0.5"
    assert view.client_ip(_request(trusted, x_forwarded_for="1.1.1.1, 2.2.2.2")) == "2.2.2.2"
    assert view.client_ip(_request(trusted, x_forwarded_for="1.1.1.1, 10.9.9.9")) == "1.1.1.1"
    assert view.client_ip(_request(trusted, x_forwarded_for="10.1.1.1, 10.2.2.2")) == trusted
    assert view.client_ip(_request(trusted)) == trusted
    assert view.client_ip(_request("::1", x_forwarded_for="2001:db8::7")) == "2001:db8::7"


def test_base_url_precedence() -> None:
    plain = ClientView(Settings())
    assert plain.base_url(_request("10.0.0.5", host="bus.local:8080")) == "http://bus.local:8080"
    assert (
        plain.base_url(_request("10.0.0.5", host="[::1]:80")) == "https://backchannel.oakstack.eu"
    )
    spoofed = _request("192.0.2.1", host="bus.local", x_forwarded_host="evil.example")
    assert plain.base_url(spoofed) == "http://bus.local"
    proxied = ClientView(Settings(trusted_proxies="10.0.0.0/8"))
    forwarded = _request(
        "10.0.0.5",
        host="internal:8080",
        x_forwarded_host="bus.example.com",
        x_forwarded_proto="https",
    )
    assert proxied.base_url(forwarded) == "https://bus.example.com"
    allowed = ClientView(Settings(allowed_hosts="Bus.Example.com, other.example"))
    assert allowed.base_url(_request("1.2.3.4", host="evil.example")) == "http://bus.example.com"
    assert (
        allowed.base_url(_request("1.2.3.4", host="other.example:81")) == "http://other.example:81"
    )
    fixed = ClientView(Settings(base_url="https://bus.example.com/"))
    assert fixed.base_url(_request("1.2.3.4", host="x")) == "https://bus.example.com"


async def test_error_documentation_urls_use_the_base_url(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, base_url="https://bus.example.com") as server:
        response = await server.http.get("/v1/keys/me")
        body = assert_error(response, 401, "unauthorized")
        assert body["documentation_url"].startswith("https://bus.example.com/docs/errors.md#")
        status = (await server.http.get("/status")).json()
        assert status["health_url"] == "https://bus.example.com/health"


async def test_the_invitation_lookup_limit_counts_the_client_behind_a_trusted_proxy(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(
        nursery, tmp_path, invitation_lookup_limit=1, trusted_proxies="127.0.0.0/8"
    ) as server:
        agent = await server.agent()

        async def lookup(forwarded: str) -> httpx.Response:
            headers = {"X-API-Key": agent.key, "X-Forwarded-For": forwarded}
            return await server.http.get("/v1/channel-invitations/nope", headers=headers)

        assert_error(await lookup("203.0.113.7"), 404, "invitation_not_found")
        assert_error(await lookup("203.0.113.7"), 429, "rate_limit_exceeded")
        assert_error(await lookup("198.51.100.2"), 404, "invitation_not_found")  # another client
