"""Access requests over real HTTP (contract §2.5)."""

from __future__ import annotations

import uuid

from tests.conftest import Server, assert_error

REQUEST_KEYS = {"id", "channel_id", "requester_key_id", "reason", "status", "created_at"}


async def test_request_approve_flow(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("secret", access="restricted")
    cid = channel["id"]
    await alice.post(f"/v1/channels/{cid}/aliases", {"alias": "secret.lane"})
    asked = await bob.post("/v1/channels/secret.lane/access-requests", {"reason": "  pls "})
    assert asked.status_code == 202
    body = asked.json()
    assert body["status"] == "pending"
    uuid.UUID(body["request_id"])
    # asking again while pending returns the same request
    again = await bob.post(f"/v1/channels/{cid}/access-requests", {})
    assert again.status_code == 202
    assert again.json() == body
    listed = await alice.get(f"/v1/channels/{cid}/access-requests")
    assert listed.status_code == 200
    data = listed.json()["data"]
    assert len(data) == 1
    assert set(data[0]) == REQUEST_KEYS
    assert data[0]["reason"] == "pls"
    assert data[0]["requester_key_id"] == bob.key_id
    assert data[0]["status"] == "pending"
    assert_error(await bob.get(f"/v1/channels/{cid}/messages"), 403, "channel_access_denied")

    approved = await alice.post(f"/v1/channels/{cid}/access-requests/{body['request_id']}/approve")
    assert approved.status_code == 200
    assert approved.json() == {
        "status": "approved",
        "request_id": body["request_id"],
        "requester_key_id": bob.key_id,
    }
    assert (await bob.get(f"/v1/channels/{cid}/messages")).status_code == 200
    assert (await alice.get(f"/v1/channels/{cid}/access-requests")).json() == {"data": []}
    member = await bob.post(f"/v1/channels/{cid}/access-requests", {})
    assert member.status_code == 200
    assert member.json() == {"status": "already_member"}
    resolved = await alice.post(f"/v1/channels/{cid}/access-requests/{body['request_id']}/deny")
    body2 = assert_error(resolved, 409, "access_request_resolved")
    assert body2["message"] == "Request already approved"
    log = (await alice.get(f"/v1/channels/{cid}/events")).json()["data"]
    assert [(e["event_type"], e["actor_key_id"], e["subject_key_id"]) for e in log] == [
        ("member_added", alice.key_id, bob.key_id)
    ]


async def test_deny_then_ask_again(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("secret", access="restricted", discoverable=False)
    cid = channel["id"]
    first = (await bob.post(f"/v1/channels/{cid}/access-requests")).json()["request_id"]
    denied = await alice.post(f"/v1/channels/{cid}/access-requests/{first}/deny")
    assert denied.status_code == 200
    assert denied.json() == {
        "status": "denied",
        "request_id": first,
        "requester_key_id": bob.key_id,
    }
    assert_error(await bob.get(f"/v1/channels/{cid}/messages"), 403, "channel_access_denied")
    again = await alice.post(f"/v1/channels/{cid}/access-requests/{first}/approve")
    assert_error(again, 409, "access_request_resolved")
    second = await bob.post(f"/v1/channels/{cid}/access-requests")
    assert second.status_code == 202
    assert second.json()["request_id"] != first
    data = (await alice.get(f"/v1/channels/{cid}/access-requests")).json()["data"]
    assert [r["id"] for r in data] == [second.json()["request_id"]]
    assert data[0]["reason"] is None


async def test_open_channel_and_owner(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("open")
    response = await bob.post(f"/v1/channels/{channel['id']}/access-requests")
    assert response.status_code == 200
    assert response.json() == {
        "status": "open",
        "note": "Channel is open; no access request needed — you can already read and post.",
    }
    restricted = await alice.channel("secret", access="restricted")
    own = await alice.post(f"/v1/channels/{restricted['id']}/access-requests")
    assert own.status_code == 200
    assert own.json() == {"status": "already_member"}


async def test_access_request_errors(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("secret", access="restricted")
    cid = channel["id"]
    # resolved by id or alias only, never by the caller's channel name
    assert_error(await alice.post("/v1/channels/secret/access-requests"), 404, "channel_not_found")
    assert_error(await bob.get("/v1/channels/nope/access-requests"), 404, "channel_not_found")
    assert_error(
        await bob.post(f"/v1/channels/{cid}/access-requests", {"reason": 5}), 422, "invalid_string"
    )
    request_id = (await bob.post(f"/v1/channels/{cid}/access-requests")).json()["request_id"]
    body = assert_error(await bob.get(f"/v1/channels/{cid}/access-requests"), 403, "forbidden")
    assert body["message"] == "Only the channel owner can view access requests"
    for verb in ("approve", "deny"):
        path = f"/v1/channels/{cid}/access-requests/{request_id}/{verb}"
        assert_error(await bob.post(path), 403, "forbidden")
        unknown = f"/v1/channels/{cid}/access-requests/{uuid.uuid4()}/{verb}"
        assert_error(await alice.post(unknown), 404, "access_request_not_found")
        other = await alice.channel(f"other-{verb}", access="restricted")
        elsewhere = f"/v1/channels/{other['id']}/access-requests/{request_id}/{verb}"
        assert_error(await alice.post(elsewhere), 404, "access_request_not_found")
        missing = f"/v1/channels/nope/access-requests/{request_id}/{verb}"
        assert_error(await alice.post(missing), 404, "channel_not_found")
    assert_error(await bob.get(f"/v1/channels/{cid}/messages"), 403, "channel_access_denied")
