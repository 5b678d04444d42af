"""Members and the channel event log over real HTTP (contract §2.5, §3.4)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import trio

from tests.conftest import Agent, Server, assert_error

MEMBER_KEYS = {"id", "channel_id", "key_id", "granted_at", "granted_via_invitation_id"}
EVENT_KEYS = {
    "id",
    "channel_id",
    "event_type",
    "actor_key_id",
    "subject_key_id",
    "invitation_id",
    "metadata",
    "created_at",
    "expires_at",
}


async def members(agent: Agent, channel_id: str) -> list[dict[str, Any]]:
    response = await agent.get(f"/v1/channels/{channel_id}/members")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def events(agent: Agent, channel_id: str, **params: Any) -> dict[str, Any]:
    response = await agent.get(f"/v1/channels/{channel_id}/events", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_member_lifecycle(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("secret", access="restricted")
    cid = channel["id"]
    listed = await members(alice, cid)
    assert [m["key_id"] for m in listed] == [alice.key_id]
    assert set(listed[0]) == MEMBER_KEYS
    assert_error(await bob.get(f"/v1/channels/{cid}/messages"), 403, "channel_access_denied")

    added = await alice.post(f"/v1/channels/{cid}/members", {"key_id": f"  {bob.key_id} "})
    assert added.status_code == 201
    member = added.json()
    assert set(member) == MEMBER_KEYS
    uuid.UUID(member["id"])
    assert member["channel_id"] == cid
    assert member["key_id"] == bob.key_id
    assert member["granted_via_invitation_id"] is None
    assert (await bob.get(f"/v1/channels/{cid}/messages")).status_code == 200
    # re-adding returns the same row
    again = await alice.post(f"/v1/channels/{cid}/members", {"key_id": bob.key_id})
    assert again.status_code == 201
    assert again.json() == member
    # existence of the key is not checked
    ghost = await alice.post(f"/v1/channels/{cid}/members", {"key_id": "bck_nobody"})
    assert ghost.status_code == 201
    assert [m["key_id"] for m in await members(alice, cid)] == [
        alice.key_id,
        bob.key_id,
        "bck_nobody",
    ]

    removed = await alice.delete(f"/v1/channels/{cid}/members/{bob.key_id}")
    assert removed.status_code == 200
    assert removed.json() == {"status": "removed"}
    assert_error(await bob.get(f"/v1/channels/{cid}/messages"), 403, "channel_access_denied")
    # removing a non-member is not an error
    assert (await alice.delete(f"/v1/channels/{cid}/members/{bob.key_id}")).status_code == 200
    log = (await events(alice, cid))["data"]
    assert [(e["event_type"], e["subject_key_id"]) for e in log] == [
        ("member_added", bob.key_id),
        ("member_added", bob.key_id),
        ("member_added", "bck_nobody"),
        ("member_removed", bob.key_id),
        ("member_removed", bob.key_id),
    ]
    assert all(e["actor_key_id"] == alice.key_id for e in log)


async def test_member_route_errors(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    open_channel = await alice.channel("open")
    cid = open_channel["id"]
    for response in (
        await bob.get(f"/v1/channels/{cid}/members"),
        await bob.post(f"/v1/channels/{cid}/members", {"key_id": bob.key_id}),
        await bob.delete(f"/v1/channels/{cid}/members/{alice.key_id}"),
        await bob.get(f"/v1/channels/{cid}/events"),
    ):
        assert_error(response, 403, "forbidden")
    body = assert_error(await bob.get(f"/v1/channels/{cid}/members"), 403, "forbidden")
    assert body["message"] == "Only the channel owner can list members"
    owner = await alice.delete(f"/v1/channels/{cid}/members/{alice.key_id}")
    assert_error(owner, 409, "cannot_remove_owner")
    assert [m["key_id"] for m in await members(alice, cid)] == [alice.key_id]
    assert_error(await alice.post(f"/v1/channels/{cid}/members", {}), 422, "missing_field")
    blank = await alice.post(f"/v1/channels/{cid}/members", {"key_id": " "})
    assert_error(blank, 422, "invalid_string")
    for response in (
        await alice.get("/v1/channels/nope/members"),
        await alice.post("/v1/channels/nope/members", {"key_id": "x"}),
        await alice.delete("/v1/channels/nope/members/x"),
        await alice.get("/v1/channels/nope/events"),
    ):
        assert_error(response, 404, "channel_not_found")
    restricted = await alice.channel("secret", access="restricted")
    rid = restricted["id"]
    for response in (
        await bob.get(f"/v1/channels/{rid}/members"),
        await bob.post(f"/v1/channels/{rid}/members", {"key_id": bob.key_id}),
        await bob.delete(f"/v1/channels/{rid}/members/{alice.key_id}"),
        await bob.get(f"/v1/channels/{rid}/events"),
    ):
        assert_error(response, 403, "channel_access_denied")


async def test_removal_takes_effect_everywhere(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("secret", access="restricted")
    cid = channel["id"]
    await alice.post(f"/v1/channels/{cid}/members", {"key_id": bob.key_id})
    held = await alice.send(cid, "held")
    other = await alice.send(cid, "other")
    lease = await bob.post(f"/v1/messages/{held['id']}/claim-with-lease", {"lease_seconds": 60})
    assert lease.status_code == 200
    token = lease.json()["lease_token"]
    await alice.delete(f"/v1/channels/{cid}/members/{bob.key_id}")
    assert_error(await bob.get(f"/v1/channels/{cid}"), 403, "channel_access_denied")
    assert_error(await bob.get(f"/v1/channels/{cid}/history"), 403, "channel_access_denied")
    posted = await bob.post(f"/v1/channels/{cid}/messages", {"content": "x"})
    assert_error(posted, 403, "channel_access_denied")
    assert_error(await bob.post(f"/v1/messages/{other['id']}/claim"), 403, "channel_access_denied")
    assert_error(await bob.post(f"/v1/messages/{held['id']}/ack"), 403, "channel_access_denied")
    released = await bob.post(f"/v1/messages/{held['id']}/release")
    assert_error(released, 403, "channel_access_denied")
    beat = await bob.post(f"/v1/leases/{token}/heartbeat", {"lease_seconds": 3600})
    assert_error(beat, 403, "channel_access_denied")
    # the lease itself keeps its normal expiry: still held, same deadline
    page = (await alice.get(f"/v1/channels/{cid}/messages")).json()["data"]
    still = next(m for m in page if m["id"] == held["id"])
    assert still["claimed_by_key_id"] == bob.key_id


async def test_removed_member_long_poll_is_answered_and_sees_nothing_new(server: Server) -> None:
    alice, bob, carol = (
        await server.agent("alice"),
        await server.agent("bob"),
        await server.agent("carol"),
    )
    channel = await alice.channel("secret", access="restricted")
    cid = channel["id"]
    for agent in (bob, carol):
        await alice.post(f"/v1/channels/{cid}/members", {"key_id": agent.key_id})
    answers: dict[str, httpx.Response] = {}

    async def poll(agent: Agent) -> None:
        answers[agent.label] = await agent.get(f"/v1/channels/{cid}/messages?wait=20")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll, bob)
            nursery.start_soon(poll, carol)
            await trio.sleep(0.3)
            await alice.delete(f"/v1/channels/{cid}/members/{bob.key_id}")
            await trio.sleep(0.2)
            assert "bob" in answers  # answered at the removal, before anything new
            assert "carol" not in answers  # still parked
            await alice.send(cid, "after removal")
    assert_error(answers["bob"], 403, "channel_access_denied")
    assert "after removal" not in answers["bob"].text
    assert [m["content"] for m in answers["carol"].json()["data"]] == ["after removal"]


async def test_event_log_pages(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("jobs")
    cid = channel["id"]
    for n in range(5):
        await alice.post(f"/v1/channels/{cid}/members", {"key_id": f"bck_k{n}"})
    first = await events(alice, cid, limit=2)
    assert first["limit"] == 2
    assert [e["subject_key_id"] for e in first["data"]] == ["bck_k0", "bck_k1"]
    event = first["data"][0]
    assert set(event) == EVENT_KEYS
    assert event["metadata"] == {}
    assert event["invitation_id"] is None
    assert event["channel_id"] == cid
    second = await events(alice, cid, limit=2, since=first["next_cursor"])
    assert [e["subject_key_id"] for e in second["data"]] == ["bck_k2", "bck_k3"]
    third = await events(alice, cid, since=second["next_cursor"])
    assert [e["subject_key_id"] for e in third["data"]] == ["bck_k4"]
    empty = await events(alice, cid, since=third["next_cursor"])
    assert empty["data"] == []
    assert empty["next_cursor"] == third["next_cursor"]
    assert (await events(alice, cid))["limit"] == 50
    # a timestamp cursor means "created after"
    by_time = await events(alice, cid, since=first["data"][1]["created_at"])
    assert [e["subject_key_id"] for e in by_time["data"]] == ["bck_k2", "bck_k3", "bck_k4"]
    fresh = await alice.channel("fresh")
    empty_log = await events(alice, fresh["id"])
    assert empty_log == {"data": [], "limit": 50, "next_cursor": None}
    for bad in ("0", "101"):
        response = await alice.get(f"/v1/channels/{cid}/events", params={"limit": bad})
        assert_error(response, 422, "invalid_limit")
    response = await alice.get(f"/v1/channels/{cid}/events", params={"limit": "abc"})
    assert_error(response, 400, "invalid_query")
