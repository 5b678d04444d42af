"""``GET /v1/security/audit`` over real HTTP (contract §2.11; fixes §6 S11)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from tests.conftest import Agent, Server, assert_error, serving

TOKEN = "operator-secret"
ADMIN = {"X-Admin-Token": TOKEN}


async def audit(agent: Agent, **params: Any) -> dict[str, Any]:
    response = await agent.get("/v1/security/audit", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["count"] == len(body["data"])
    return body


async def test_a_key_sees_its_own_issue_event(server: Server) -> None:
    alice = await server.agent("alice")
    await server.agent("bob")
    body = await audit(alice)
    assert body["count"] == 1
    event = body["data"][0]
    assert set(event) == {
        "id",
        "occurred_at",
        "actor_key_id",
        "subject_key_id",
        "event_type",
        "remote_addr",
        "detail",
    }
    assert len(event["id"]) == 36
    assert event["event_type"] == "key.issue"
    assert event["subject_key_id"] == alice.key_id
    assert event["actor_key_id"] is None  # minted without a key
    assert event["remote_addr"] == "127.0.0.1"
    assert event["detail"] == {"agent_label": "alice"}
    datetime.fromisoformat(event["occurred_at"])


async def test_audit_needs_a_key(server: Server) -> None:
    assert_error(await server.http.get("/v1/security/audit"), 401, "unauthorized")


async def test_operator_events_reach_the_keys_they_concern(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        alice = await server.agent("alice")
        bob = await server.agent("bob")
        channel = await alice.channel("jobs", "broadcast")
        for verb in ("pause", "resume"):
            response = await server.http.post(
                f"/v1/admin/channels/{channel['id']}/{verb}", headers=ADMIN
            )
            assert response.status_code == 200
        await server.http.post("/v1/admin/minting", json={"enabled": False}, headers=ADMIN)
        events = (await audit(alice))["data"]
        assert [e["event_type"] for e in events] == ["channel.resume", "channel.pause", "key.issue"]
        for event in events[:2]:
            assert event["subject_key_id"] == alice.key_id  # the channel's owner key
            assert event["actor_key_id"] is None  # the operator has no key
            assert event["detail"] == {"channel_id": channel["id"], "name": "jobs"}
        # minting.toggle concerns no key; bob sees only his own issue
        assert [e["event_type"] for e in (await audit(bob))["data"]] == ["key.issue"]


async def test_limit_is_clamped_and_garbage_ignored(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("jobs", "broadcast"))["id"]
        for index in range(520):
            verb = "pause" if index % 2 == 0 else "resume"
            await server.http.post(f"/v1/admin/channels/{channel}/{verb}", headers=ADMIN)
        assert (await audit(alice))["count"] == 100
        assert (await audit(alice, limit="abc"))["count"] == 100
        assert (await audit(alice, limit="2"))["count"] == 2
        assert (await audit(alice, limit="0"))["count"] == 1
        assert (await audit(alice, limit="-5"))["count"] == 1
        assert (await audit(alice, limit="100000"))["count"] == 500
        newest = (await audit(alice, limit="2"))["data"]
        assert [e["event_type"] for e in newest] == ["channel.resume", "channel.pause"]


async def test_a_keys_events_stay_reachable_behind_many_others(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Upstream filtered the 500 newest events instance-wide (§6 S11)."""
    async with serving(nursery, tmp_path, admin_token=TOKEN) as server:
        alice = await server.agent("alice")
        for index in range(510):
            response = await server.http.post(
                "/v1/admin/keys", json={"agent_label": f"k{index}"}, headers=ADMIN
            )
            assert response.status_code == 201
        events = (await audit(alice))["data"]
        assert [(e["event_type"], e["subject_key_id"]) for e in events] == [
            ("key.issue", alice.key_id)
        ]


async def test_audit_survives_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path) as server:
        alice = await server.agent("alice")
        before = await audit(alice)
    async with serving(nursery, tmp_path) as server:
        after = await server.http.get("/v1/security/audit", headers={"X-API-Key": alice.key})
        assert after.json() == before
