"""Operator routes over real HTTP (contract §2.3 admin mint and minting, §2.10, §3.11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import Agent, Server, assert_error, serving

TOKEN = "operator-secret"
ADMIN = {"X-Admin-Token": TOKEN}
ROUTES = [
    ("/v1/admin/keys", {"agent_label": "x"}),
    ("/v1/admin/minting", {"enabled": False}),
    ("/v1/admin/channels/sandbox/pause", {}),
    ("/v1/admin/channels/sandbox/resume", {}),
]


@pytest.mark.parametrize(("path", "body"), ROUTES)
async def test_admin_routes_are_disabled_without_a_configured_token(
    server: Server, path: str, body: dict[str, Any]
) -> None:
    for headers in ({}, ADMIN, {"X-Admin-Token": ""}):
        response = await server.http.post(path, json=body, headers=headers)
        assert_error(response, 403, "admin_disabled")


async def test_admin_routes_need_the_exact_token(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        alice = await server.agent("alice")
        for path, body in ROUTES:
            for headers in (
                {},
                {"X-Admin-Token": TOKEN + "x"},
                {"X-Admin-Token": TOKEN[:-1]},
                {"X-API-Key": alice.key},  # an API key is no admin token
            ):
                response = await server.http.post(path, json=body, headers=headers)
                assert_error(response, 401, "admin_unauthorized")
        # nothing happened
        channel = (await alice.get("/v1/channels/sandbox")).json()
        assert channel["paused"] is False
        assert (await server.http.get("/health")).json()["public_minting_enabled"] is True


# -- operator mint -----------------------------------------------------------------


async def test_admin_mint_works_while_public_minting_is_closed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(
        nursery, tmp_path, admin_token=TOKEN, public_minting_enabled=False, key_mint_limit=1
    ) as server:
        assert_error(
            await server.http.post("/v1/keys", json={"agent_label": "a"}), 403, "minting_closed"
        )
        for index in range(3):  # the per-IP mint limiter does not apply
            response = await server.http.post(
                "/v1/admin/keys", json={"agent_label": f"  op-{index}  "}, headers=ADMIN
            )
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
            assert body["agent_label"] == f"op-{index}"
            assert body["expires_at"] is None
            me = await server.http.get("/v1/keys/me", headers={"X-API-Key": body["key"]})
            assert me.json()["owner_id"] == f"op-{index}"
            assert me.json()["key_id"] == body["key_id"]
        # the same label rules as the public mint
        taken = await server.http.post(
            "/v1/admin/keys", json={"agent_label": "op-0"}, headers=ADMIN
        )
        assert_error(taken, 409, "label_in_use")
        for body_ in ({}, {"agent_label": "  "}, {"agent_label": 5}):
            missing = await server.http.post("/v1/admin/keys", json=body_, headers=ADMIN)
            assert_error(missing, 422, "missing_field")
        bad = await server.http.post("/v1/admin/keys", content=b"{", headers=ADMIN)
        assert_error(bad, 400, "invalid_json")
        shaped = await server.http.post("/v1/admin/keys", json=["x"], headers=ADMIN)
        assert_error(shaped, 422, "invalid_json_shape")


async def test_admin_mint_creates_the_default_actor_and_an_audit_event(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        response = await server.http.post(
            "/v1/admin/keys", json={"agent_label": "ops"}, headers=ADMIN
        )
        key = response.json()
        headers = {"X-API-Key": key["key"]}
        audit = (await server.http.get("/v1/security/audit", headers=headers)).json()
        assert [e["event_type"] for e in audit["data"]] == ["key.issue.admin"]
        assert audit["data"][0]["subject_key_id"] == key["key_id"]
        assert audit["data"][0]["detail"] == {"agent_label": "ops"}
        claimed_as_default = await server.http.post(
            "/v1/actors", json={"name": "other"}, headers=headers
        )
        assert claimed_as_default.json()["owner_id"] == "ops"


# -- minting toggle ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", 0, 1, None, [], {}])
async def test_minting_toggle_wants_a_boolean(
    nursery: trio.Nursery, tmp_path: Path, value: Any
) -> None:
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        response = await server.http.post(
            "/v1/admin/minting", json={"enabled": value}, headers=ADMIN
        )
        body = assert_error(response, 422, "invalid_field")
        assert body["message"] == "'enabled' must be true or false"
        missing = await server.http.post("/v1/admin/minting", json={}, headers=ADMIN)
        assert_error(missing, 422, "invalid_field")
        bad = await server.http.post("/v1/admin/minting", content=b"{", headers=ADMIN)
        assert_error(bad, 400, "invalid_json")
        shaped = await server.http.post("/v1/admin/minting", json=[False], headers=ADMIN)
        assert_error(shaped, 422, "invalid_json_shape")
        assert (await server.http.get("/health")).json()["public_minting_enabled"] is True


async def test_minting_toggle_closes_and_reopens_public_minting_across_restarts(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        response = await server.http.post(
            "/v1/admin/minting", json={"enabled": False}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"public_minting_enabled": False}
        assert "X-Idempotent-Replay" not in response.headers
        assert (await server.http.get("/health")).json()["public_minting_enabled"] is False
        closed = await server.http.post("/v1/keys", json={"agent_label": "a"})
        assert_error(closed, 403, "minting_closed")
    # the stored choice outlives a restart, and wins over the setting
    async with serving(nursery, tmp_path, admin_token=TOKEN, public_minting_enabled=True) as server:
        assert (await server.http.get("/health")).json()["public_minting_enabled"] is False
        assert_error(
            await server.http.post("/v1/keys", json={"agent_label": "a"}), 403, "minting_closed"
        )
        reopened = await server.http.post(
            "/v1/admin/minting", json={"enabled": True}, headers=ADMIN
        )
        assert reopened.json() == {"public_minting_enabled": True}
        assert (await server.http.post("/v1/keys", json={"agent_label": "a"})).status_code == 201
    async with serving(
        nursery, tmp_path, admin_token=TOKEN, public_minting_enabled=False
    ) as server:
        assert (await server.http.get("/health")).json()["public_minting_enabled"] is True


# -- pause / resume ------------------------------------------------------------------


async def _pause(server: Server, identifier: str, verb: str = "pause") -> httpx.Response:
    return await server.http.post(f"/v1/admin/channels/{identifier}/{verb}", headers=ADMIN)


async def test_pause_and_resume_answer_the_channel(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        alice = await server.agent("alice")
        created = await alice.channel("secret", "claimable", access="restricted")
        paused = await _pause(server, created["id"])
        assert paused.status_code == 200, paused.text
        body = paused.json()
        assert body["paused"] is True
        assert body["updated_at"] > created["updated_at"]
        assert {k: v for k, v in body.items() if k not in ("paused", "updated_at")} == {
            k: v for k, v in created.items() if k not in ("paused", "updated_at")
        }
        assert (await alice.get(f"/v1/channels/{created['id']}")).json()["paused"] is True
        resumed = await _pause(server, created["id"], "resume")
        assert resumed.json()["paused"] is False
        assert resumed.json()["updated_at"] > body["updated_at"]
        # pausing twice is harmless
        assert (await _pause(server, created["id"])).json()["paused"] is True
        assert (await _pause(server, created["id"])).json()["paused"] is True


async def test_pause_resolves_ids_and_aliases_only(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        alice = await server.agent("alice")
        await alice.channel("named", "broadcast")
        for verb in ("pause", "resume"):
            assert_error(await _pause(server, "named", verb), 404, "channel_not_found")
            assert_error(await _pause(server, "no-such-channel", verb), 404, "channel_not_found")
        by_alias = await _pause(server, "sandbox")
        assert by_alias.json()["aliases"] == ["sandbox"]
        assert by_alias.json()["paused"] is True


async def _paused_channel(server: Server) -> tuple[Agent, Agent, str, list[str]]:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    messages = [(await alice.send(channel, f"m{i}"))["id"] for i in range(5)]
    assert (await _pause(server, channel)).status_code == 200
    return alice, bob, channel, messages


async def test_a_paused_channel_refuses_posts_only(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        alice, bob, channel, messages = await _paused_channel(server)
        for agent in (alice, bob):
            refused = await agent.post(f"/v1/channels/{channel}/messages", {"content": "x"})
            body = assert_error(refused, 503, "channel_paused")
            assert body["retry_after"] == 30
            assert "Retry-After" not in refused.headers
        # every read and every other write still works
        listed = await bob.get(f"/v1/channels/{channel}/messages")
        assert [m["id"] for m in listed.json()["data"]] == messages
        assert (await bob.get(f"/v1/channels/{channel}/history")).status_code == 200
        assert (await bob.get(f"/v1/channels/{channel}")).json()["paused"] is True
        claim = await bob.post(f"/v1/messages/{messages[0]}/claim", {"actor": "w"})
        assert claim.json()["status"] == "claimed"
        assert (
            await bob.post(f"/v1/messages/{messages[0]}/ack", {"actor": "w"})
        ).status_code == 200
        released = await bob.post(f"/v1/messages/{messages[0]}/release", {"actor": "w"})
        assert released.status_code == 200, released.text
        leased = await bob.post(f"/v1/messages/{messages[1]}/claim-with-lease", {"actor": "w"})
        token = leased.json()["lease_token"]
        assert (await bob.post(f"/v1/leases/{token}/heartbeat", {})).status_code == 200
        next_one = await bob.post("/v1/tasks/claim", {"channel": channel, "actor": "w"})
        assert next_one.json()["claimed"]["id"] == messages[0]  # released, oldest
        assert (await alice.delete(f"/v1/messages/{messages[3]}")).status_code == 200
        # resumed: posts are accepted again
        assert (await _pause(server, channel, "resume")).status_code == 200
        assert (
            await alice.post(f"/v1/channels/{channel}/messages", {"content": "x"})
        ).status_code == 201


async def test_pause_is_journaled_and_survives_a_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("jobs", "broadcast"))["id"]
        await _pause(server, channel)
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        response = await server.http.post(
            f"/v1/channels/{channel}/messages",
            json={"content": "x"},
            headers={"X-API-Key": alice.key},
        )
        assert_error(response, 503, "channel_paused")


async def test_only_the_operator_resumes_what_the_operator_paused(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The kill switch outranks the owner (contract §6 S1): the owner's PATCH
    may pause and resume its own channel, never one the operator paused,
    and that holds across a restart (the flag is in snapshots and replay)."""
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("jobs", "broadcast"))["id"]
        own = await alice.patch(f"/v1/channels/{channel}", {"paused": True})
        assert own.json()["paused"] is True
        assert (await alice.patch(f"/v1/channels/{channel}", {"paused": False})).status_code == 200
        await _pause(server, channel)
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        alice = Agent(server.http, alice.key, alice.key_id, alice.label)  # the restarted server
        refused = await alice.patch(f"/v1/channels/{channel}", {"paused": False})
        assert_error(refused, 403, "forbidden")
        assert "operator" in refused.json()["message"]
        still = await alice.patch(f"/v1/channels/{channel}", {"paused": True, "description": "d"})
        assert still.status_code == 200, still.text  # pausing again and other fields are fine
        assert (await _pause(server, channel, "resume")).json()["paused"] is False
        assert (await alice.patch(f"/v1/channels/{channel}", {"paused": True})).status_code == 200
        assert (await alice.patch(f"/v1/channels/{channel}", {"paused": False})).status_code == 200
