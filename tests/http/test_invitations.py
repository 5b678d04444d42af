"""Invitations over real HTTP, and their clocks in-process (contract §2.5, §3.9)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import trio
import trio.testing

from backchannel.http.app import create_app
from backchannel.runtime.service import open_runtime
from tests.conftest import Server, assert_error, serving, test_settings

INVITATION_KEYS = {
    "id",
    "owner_id",
    "created_by_key_id",
    "created_at",
    "expires_at",
    "revoked_at",
    "active",
    "channel",
}


async def test_invite_resolve_revoke(server: Server) -> None:
    alice, bob, carol = (
        await server.agent("alice"),
        await server.agent("bob"),
        await server.agent("carol"),
    )
    channel = await alice.channel("secret", access="restricted", description="d")
    cid = channel["id"]
    created = await alice.post(f"/v1/channels/{cid}/invitations", {})
    assert created.status_code == 201
    invitation = created.json()
    assert set(invitation) == INVITATION_KEYS
    assert len(invitation["id"]) == 24
    assert invitation["owner_id"] == "alice"
    assert invitation["created_by_key_id"] == alice.key_id
    assert invitation["revoked_at"] is None
    assert invitation["active"] is True
    assert invitation["channel"] == {
        "id": cid,
        "name": "secret",
        "mode": "claimable",
        "description": "d",
    }
    lifetime = datetime.fromisoformat(invitation["expires_at"]) - datetime.fromisoformat(
        invitation["created_at"]
    )
    assert lifetime == timedelta(hours=24)

    path = f"/v1/channel-invitations/{invitation['id']}"
    resolved = await bob.get(path)
    assert resolved.status_code == 200
    assert resolved.json() == invitation
    assert resolved.headers["X-RateLimit-Remaining"] == "0"
    assert (await bob.get(f"/v1/channels/{cid}/messages")).status_code == 200
    # multi-use: another key, and the same key again
    assert (await carol.get(path)).status_code == 200
    assert (await bob.get(path)).status_code == 200
    listed = (await alice.get(f"/v1/channels/{cid}/members")).json()["data"]
    by_key = {m["key_id"]: m for m in listed}
    assert by_key[bob.key_id]["granted_via_invitation_id"] == invitation["id"]
    assert by_key[carol.key_id]["granted_via_invitation_id"] == invitation["id"]

    revoked = await alice.delete(path)
    assert revoked.status_code == 200
    body = revoked.json()
    assert body["active"] is False
    assert body["revoked_at"] is not None
    again = await alice.delete(path)
    assert again.json() == body  # later revocations change nothing
    dave = await server.agent("dave")
    assert_error(await dave.get(path), 410, "invitation_revoked")
    # memberships already granted stay
    assert (await bob.get(f"/v1/channels/{cid}/messages")).status_code == 200
    log = (await alice.get(f"/v1/channels/{cid}/events")).json()["data"]
    assert [(e["event_type"], e["actor_key_id"], e["subject_key_id"]) for e in log] == [
        ("invitation_resolved", bob.key_id, bob.key_id),
        ("invitation_resolved", carol.key_id, carol.key_id),
        ("invitation_resolved", bob.key_id, bob.key_id),
        ("invitation_revoked", alice.key_id, None),
    ]
    assert {e["invitation_id"] for e in log} == {invitation["id"]}


async def test_invitation_errors(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    open_channel = await alice.channel("open")
    restricted = await alice.channel("secret", access="restricted")
    body = assert_error(
        await bob.post(f"/v1/channels/{open_channel['id']}/invitations"), 403, "forbidden"
    )
    assert body["message"] == "Only the channel owner can create invitations"
    denied = await bob.post(f"/v1/channels/{restricted['id']}/invitations")
    assert_error(denied, 403, "channel_access_denied")
    assert_error(await bob.post("/v1/channels/nope/invitations"), 404, "channel_not_found")
    invitation = (await alice.post(f"/v1/channels/{restricted['id']}/invitations")).json()
    path = f"/v1/channel-invitations/{invitation['id']}"
    assert_error(await bob.delete(path), 403, "forbidden")
    assert (await bob.get(path)).status_code == 200  # still active
    unknown = "x" * 24
    assert_error(await bob.get(f"/v1/channel-invitations/{unknown}"), 404, "invitation_not_found")
    assert_error(
        await alice.delete(f"/v1/channel-invitations/{unknown}"), 404, "invitation_not_found"
    )


async def test_keyless_resolve_gets_the_special_401(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("secret", access="restricted")
    invitation = (await alice.post(f"/v1/channels/{channel['id']}/invitations")).json()
    path = f"/v1/channel-invitations/{invitation['id']}"
    response = await server.http.get(path)
    assert response.status_code == 401
    assert response.json() == {
        "error": "api_key_required",
        "message": "An API key is required to resolve this invitation.",
        "redirect_to": "",
    }
    bad = await server.http.get(path, headers={"X-API-Key": "bck_x.y"})
    assert_error(bad, 401, "unauthorized")
    assert_error(await server.http.get(path, headers={"X-API-Key": ""}), 401, "unauthorized")


async def test_onboarding_url_and_lookup_limiter(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(
        nursery,
        tmp_path,
        invitation_lookup_limit=10,
        invitation_onboarding_url="https://example.test/start",
    ) as server:
        alice = await server.agent("alice")
        channel = await alice.channel("secret", access="restricted")
        invitation = (await alice.post(f"/v1/channels/{channel['id']}/invitations")).json()
        path = f"/v1/channel-invitations/{invitation['id']}"
        keyless = await server.http.get(path)
        assert keyless.json()["redirect_to"] == "https://example.test/start"
        for _ in range(5):
            assert (await alice.get(path)).status_code == 200
        for _ in range(4):
            assert (await server.http.get(path)).status_code == 401
        # the 11th lookup from this address, with or without a key
        limited = await alice.get(path)
        body = assert_error(limited, 429, "rate_limit_exceeded")
        assert body["retry_after"] == 60
        assert body["message"] == "Invitation lookup rate limit exceeded"
        assert_error(await server.http.get(path), 429, "rate_limit_exceeded")
        # other routes are not counted by it
        assert (await alice.get(f"/v1/channels/{channel['id']}")).status_code == 200


# -- time, in-process on the MockClock ------------------------------------------------


@asynccontextmanager
async def in_process(tmp_path: Path, **changes: Any) -> AsyncIterator[Any]:
    settings = test_settings(tmp_path, sandbox_enabled=False, **changes)
    async with open_runtime(settings, in_memory=True) as hub:
        app = create_app(hub)
        async with app.test_app() as test_app:
            yield test_app.test_client()


async def mint(client: Any, label: str) -> dict[str, str]:
    minted = await client.post("/v1/keys", json={"agent_label": label})
    return {"X-API-Key": (await minted.get_json())["key"]}


async def test_invitation_expires_after_24h(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with in_process(tmp_path) as client:
        alice, bob = await mint(client, "alice"), await mint(client, "bob")
        created = await client.post(
            "/v1/channels",
            json={"name": "s", "mode": "broadcast", "access": "restricted"},
            headers=alice,
        )
        cid = (await created.get_json())["id"]
        invitation = await (
            await client.post(f"/v1/channels/{cid}/invitations", headers=alice)
        ).get_json()
        path = f"/v1/channel-invitations/{invitation['id']}"
        await trio.sleep(86_400 - 1)
        assert (await client.get(path, headers=bob)).status_code == 200
        await trio.sleep(1)
        expired = await client.get(path, headers=bob)
        assert expired.status_code == 410
        assert (await expired.get_json())["error"] == "invitation_expired"
        # the owner still sees it, inactive, when revoking
        revoked = await client.delete(path, headers=alice)
        assert (await revoked.get_json())["active"] is False
        assert (await client.get(path, headers=bob)).status_code == 410
        # a day after expiry it is forgotten once the channel moves on
        await trio.sleep(86_400)
        await client.post(f"/v1/channels/{cid}/invitations", headers=alice)
        gone = await client.get(path, headers=bob)
        assert gone.status_code == 404
        assert (await gone.get_json())["error"] == "invitation_not_found"


async def test_channel_events_live_24h(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with in_process(tmp_path) as client:
        alice = await mint(client, "alice")
        created = await client.post(
            "/v1/channels", json={"name": "c", "mode": "broadcast"}, headers=alice
        )
        cid = (await created.get_json())["id"]
        members = f"/v1/channels/{cid}/members"
        await client.post(members, json={"key_id": "bck_first"}, headers=alice)
        await trio.sleep(3_600)
        await client.post(members, json={"key_id": "bck_second"}, headers=alice)
        events = f"/v1/channels/{cid}/events"

        async def subjects() -> list[str]:
            page = await (await client.get(events, headers=alice)).get_json()
            return [e["subject_key_id"] for e in page["data"]]

        assert await subjects() == ["bck_first", "bck_second"]
        await trio.sleep(86_400 - 3_600 - 1)
        assert await subjects() == ["bck_first", "bck_second"]
        await trio.sleep(1)
        assert await subjects() == ["bck_second"]
        await trio.sleep(3_600)
        assert await subjects() == []


async def test_invitation_body_is_ignored(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("secret", access="restricted")
    response = await alice.http.post(
        f"/v1/channels/{channel['id']}/invitations",
        content=b"not json at all",
        headers={"X-API-Key": alice.key},
    )
    assert response.status_code == 201
    assert response.json()["channel"]["id"] == channel["id"]


async def test_resolving_an_open_channels_invitation_makes_a_member(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("open")
    invitation = (await alice.post(f"/v1/channels/{channel['id']}/invitations")).json()
    assert (await bob.get(f"/v1/channel-invitations/{invitation['id']}")).status_code == 200
    listed = (await alice.get(f"/v1/channels/{channel['id']}/members")).json()["data"]
    assert [(m["key_id"], m["granted_via_invitation_id"]) for m in listed] == [
        (alice.key_id, None),
        (bob.key_id, invitation["id"]),
    ]
    discovered = (await bob.get("/v1/channels")).json()["data"]
    assert next(c for c in discovered if c["id"] == channel["id"])["is_member"] is True
