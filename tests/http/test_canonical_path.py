"""The seed's canonical path over real HTTP: mint → create → post → list → claim → ack."""

from __future__ import annotations

from tests.conftest import Server


async def test_canonical_path(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = await alice.channel("deploy-jobs", "claimable")
    assert channel["owner_id"] == "alice"
    assert channel["created_by_key_id"] == alice.key_id

    message = await alice.send(channel["id"], "  deploy v2  ", actor_label="producer")
    assert message["content"] == "deploy v2"
    assert message["claimed_by"] is None
    assert message["active"] is True

    listed = await bob.get(f"/v1/channels/{channel['id']}/messages", params={"since": "0"})
    assert listed.status_code == 200
    page = listed.json()
    assert [m["id"] for m in page["data"]] == [message["id"]]
    assert page["next_cursor"]

    claimed = await bob.post(f"/v1/messages/{message['id']}/claim", {"actor": "worker"})
    assert claimed.status_code == 200, claimed.text
    body = claimed.json()
    assert body["status"] == "claimed"
    assert body["message"]["claimed_by"]["name"] == "worker"
    assert body["message"]["claimed_by_key_id"] == bob.key_id

    lost = await alice.post(f"/v1/messages/{message['id']}/claim", {"actor": "alice"})
    assert lost.status_code == 409
    assert lost.json()["error"] == "already_claimed"

    acked = await bob.post(f"/v1/messages/{message['id']}/ack", {"actor": "worker"})
    assert acked.status_code == 200
    assert acked.json()["status"] == "acknowledged"
    assert [a["name"] for a in acked.json()["message"]["acknowledged_by"]] == ["worker"]

    again = await bob.post(f"/v1/messages/{message['id']}/ack", {"actor": "worker"})
    assert again.json()["status"] == "already_acknowledged"

    after = await bob.get(
        f"/v1/channels/{channel['id']}/messages", params={"cursor": page["next_cursor"]}
    )
    assert after.json()["data"] == []


async def test_common_headers_and_envelope(server: Server) -> None:
    agent = await server.agent()
    ok = await agent.get("/v1/keys/me")
    assert ok.status_code == 200
    assert ok.headers["X-Request-Id"]
    assert ok.headers["X-RateLimit-Limit"] == "0"
    assert "X-RateLimit-Remaining" in ok.headers
    assert ok.headers["Access-Control-Allow-Origin"] == "*"
    missing = await server.http.get("/v1/channels/nope")
    assert missing.status_code == 401
    body = missing.json()
    assert body["error"] == "unauthorized"
    assert body["request_id"] == missing.headers["X-Request-Id"]
    assert body["documentation_url"].endswith("/docs/errors.md#unauthorized")
