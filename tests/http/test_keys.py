"""Keys over real HTTP (contract §2.3, §2.1 authentication, §3.1 envelope)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import trio

from tests.conftest import Server, assert_error, serving

KEY_RE = re.compile(r"^(bck_[A-Za-z0-9_-]{12})\.[A-Za-z0-9_-]{32}$")


async def test_mint_returns_a_permanent_key(server: Server) -> None:
    response = await server.http.post("/v1/keys", json={"agent_label": "alice"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {
        "key",
        "key_id",
        "expires_at",
        "agent_label",
        "rate_limit",
        "rate_limit_window_seconds",
    }
    match = KEY_RE.match(body["key"])
    assert match is not None, body["key"]
    assert body["key_id"] == match.group(1)
    assert body["expires_at"] is None
    assert body["agent_label"] == "alice"
    assert body["rate_limit"] == server.settings.rate_limit
    assert body["rate_limit_window_seconds"] == server.settings.rate_limit_window
    assert response.headers["X-RateLimit-Remaining"] == "0"  # unauthenticated route

    me = await server.http.get("/v1/keys/me", headers={"X-API-Key": body["key"]})
    assert me.status_code == 200
    assert me.json() == {
        "key_id": body["key_id"],
        "owner_id": "alice",
        "plan": "free",
        "active": True,
        "scopes": None,
        "rate_limit": server.settings.rate_limit,
        "rate_limit_window_seconds": server.settings.rate_limit_window,
    }


async def test_mint_trims_and_truncates_the_label(server: Server) -> None:
    long_label = "x" * 200
    response = await server.http.post("/v1/keys", json={"agent_label": f"  {long_label}  "})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["agent_label"] == "x" * 128
    me = await server.http.get("/v1/keys/me", headers={"X-API-Key": body["key"]})
    assert me.json()["owner_id"] == "x" * 128


async def test_mint_requires_a_non_empty_string_label(server: Server) -> None:
    for body in ({}, {"agent_label": ""}, {"agent_label": "   "}, {"agent_label": None}):
        response = await server.http.post("/v1/keys", json=body)
        assert_error(response, 422, "missing_field")
    values: list[Any] = [5, True, [], {}, ["a"]]
    for value in values:
        response = await server.http.post("/v1/keys", json={"agent_label": value})
        assert_error(response, 422, "missing_field")
    # nothing was minted: the label is still free
    assert (await server.http.post("/v1/keys", json={"agent_label": "5"})).status_code == 201


async def test_mint_refuses_bodies_that_are_not_json_objects(server: Server) -> None:
    headers = {"Content-Type": "application/json"}
    response = await server.http.post("/v1/keys", content=b"{agent_label", headers=headers)
    assert_error(response, 400, "invalid_json")
    response = await server.http.post("/v1/keys", content=b'["alice"]', headers=headers)
    assert_error(response, 422, "invalid_json_shape")
    response = await server.http.post(
        "/v1/keys", content=b'{"agent_label": "\xff"}', headers=headers
    )
    assert_error(response, 400, "invalid_json")


async def test_label_in_use_while_the_key_is_active(server: Server) -> None:
    alice = await server.agent("alice")
    again = await server.http.post("/v1/keys", json={"agent_label": "alice"})
    assert_error(again, 409, "label_in_use")
    trimmed = await server.http.post("/v1/keys", json={"agent_label": "  alice "})
    assert_error(trimmed, 409, "label_in_use")
    # the first key is untouched
    assert (await alice.get("/v1/keys/me")).status_code == 200


async def test_minting_ignores_idempotency_keys(server: Server) -> None:
    headers = {"Idempotency-Key": "mint-1"}
    first = await server.http.post("/v1/keys", json={"agent_label": "a"}, headers=headers)
    second = await server.http.post("/v1/keys", json={"agent_label": "b"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["key_id"] != second.json()["key_id"]
    assert "X-Idempotent-Replay" not in second.headers
    again = await server.http.post("/v1/keys", json={"agent_label": "a"}, headers=headers)
    assert_error(again, 409, "label_in_use")


async def test_revoke_then_401_and_the_label_is_free_again(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("inbox", "claimable")

    revoked = await alice.delete("/v1/keys/me")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"key_id": alice.key_id, "revoked": True}

    for response in (
        await alice.get("/v1/keys/me"),
        await alice.get(f"/v1/channels/{channel['id']}"),
        await alice.post("/v1/channels", {"name": "x", "mode": "broadcast"}),
        await alice.delete("/v1/keys/me"),
    ):
        body = assert_error(response, 401, "unauthorized")
        assert body["message"] == "Inactive API key"

    reminted = await server.http.post("/v1/keys", json={"agent_label": "alice"})
    assert reminted.status_code == 201, reminted.text
    new_key = reminted.json()
    assert new_key["key_id"] != alice.key_id
    headers = {"X-API-Key": new_key["key"]}
    me = await server.http.get("/v1/keys/me", headers=headers)
    assert me.json()["owner_id"] == "alice"
    # identity is the label (contract §3.2): the caller's channel name resolves again
    by_name = await server.http.get("/v1/channels/inbox", headers=headers)
    assert by_name.status_code == 200
    assert by_name.json()["id"] == channel["id"]
    # and the old key stays dead
    assert_error(await alice.get("/v1/keys/me"), 401, "unauthorized")


async def test_authentication_failures_are_401_unauthorized(server: Server) -> None:
    alice = await server.agent("alice")
    key_id = alice.key_id
    cases: list[tuple[dict[bytes, bytes], str]] = [
        ({}, "Missing X-API-Key header"),
        ({b"X-API-Key": b""}, "Missing X-API-Key header"),
        ({b"X-API-Key": b"no-dot-here"}, "Malformed API key"),
        ({b"X-API-Key": f"{key_id}.".encode()}, "Malformed API key"),
        ({b"X-API-Key": b".secret"}, "Malformed API key"),
        ({b"X-API-Key": f"{key_id}.wrong-secret".encode()}, "Invalid API key"),
        ({b"X-API-Key": b"bck_unknownunkn.secretsecretsecretsecretsecretsec"}, "Invalid API key"),
        ({b"X-API-Key": (alice.key + "x").encode()}, "Invalid API key"),
        ({b"X-API-Key": b"bck_\xff\xfe.\xfd"}, "Invalid API key"),
    ]
    for headers, message in cases:
        for response in (
            await server.http.get("/v1/keys/me", headers=headers),
            await server.http.post(
                "/v1/channels", json={"name": "n", "mode": "claimable"}, headers=headers
            ),
        ):
            body = assert_error(response, 401, "unauthorized")
            assert body["message"] == message, (headers, body)
    # none of those requests created a channel
    listed = await alice.get("/v1/channels")
    assert [c["name"] for c in listed.json()["data"]] == ["sandbox"]


async def test_the_api_key_header_name_is_case_insensitive(server: Server) -> None:
    alice = await server.agent("alice")
    response = await server.http.get("/v1/keys/me", headers={"x-api-key": alice.key})
    assert response.status_code == 200
    assert response.json()["key_id"] == alice.key_id


async def test_minting_closed_is_403_before_the_mint_limiter(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, public_minting_enabled=False, key_mint_limit=1) as server:
        for _ in range(3):
            response = await server.http.post("/v1/keys", json={"agent_label": "alice"})
            assert_error(response, 403, "minting_closed")
        health = await server.http.get("/health")
        assert health.json()["public_minting_enabled"] is False
