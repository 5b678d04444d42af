"""PATCH, DELETE and aliases of a channel over real HTTP (contract §2.4, §0.7, §6 S6)."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.conftest import Server, assert_error

# -- PATCH ----------------------------------------------------------------------


async def test_patch_changes_every_allowed_field(server: Server) -> None:
    alice = await server.agent("alice")
    other = await alice.channel("other", "broadcast")
    channel = await alice.channel("jobs")
    response = await alice.patch(
        f"/v1/channels/{channel['id']}",
        {
            "name": "  renamed ",
            "mode": "broadcast",
            "access": "restricted",
            "discoverable": False,
            "description": " about ",
            "metadata_schema": {"type": "object", "required": ["who"]},
            "pinned_message": "read me",
            "related_channels": [other["id"]],
            "retention_days": 30,
            "max_messages": 10,
            "max_writes_per_minute": 5,
            "paused": True,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "renamed"
    assert body["mode"] == "broadcast"
    assert body["access"] == "restricted"
    assert body["discoverable"] is False
    assert body["description"] == "about"
    assert body["metadata_schema"] == {"type": "object", "required": ["who"]}
    assert body["pinned_message"] == "read me"
    assert body["related_channels"] == [{"id": other["id"], "name": "other", "mode": "broadcast"}]
    assert body["retention_days"] == 30
    assert body["max_messages"] == 10
    assert body["max_writes_per_minute"] == 5
    assert body["paused"] is True
    assert body["updated_at"] > channel["updated_at"]
    assert (await alice.get(f"/v1/channels/{channel['id']}")).json() == body
    # the caller's own name lookup follows the rename
    assert (await alice.get("/v1/channels/renamed")).json()["id"] == channel["id"]
    assert_error(await alice.get("/v1/channels/jobs"), 404, "channel_not_found")


async def test_patch_nulls_clear_and_no_change_keeps_updated_at(server: Server) -> None:
    alice = await server.agent("alice")
    other = await alice.channel("other")
    channel = await alice.channel(
        "jobs",
        pinned_message="pin",
        metadata_schema={"type": "object"},
        related_channels=[other["id"]],
        max_messages=3,
    )
    same = await alice.patch(f"/v1/channels/{channel['id']}", {"name": "jobs"})
    assert same.status_code == 200
    assert same.json()["updated_at"] == channel["updated_at"]
    # related_channels: null leaves links unchanged; the others clear
    response = await alice.patch(
        f"/v1/channels/{channel['id']}",
        {
            "pinned_message": None,
            "metadata_schema": None,
            "related_channels": None,
            "max_messages": None,
            "description": None,
        },
    )
    body = response.json()
    assert body["pinned_message"] is None
    assert body["metadata_schema"] == {}
    assert body["max_messages"] is None
    assert body["description"] == ""
    assert [c["id"] for c in body["related_channels"]] == [other["id"]]
    emptied = await alice.patch(f"/v1/channels/{channel['id']}", {"related_channels": []})
    assert emptied.json()["related_channels"] == []


async def test_patched_schema_validates_later_posts(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("jobs")
    await alice.send(channel["id"], metadata={"n": 9})
    schema = {
        "type": "object",
        "required": ["who"],
        "properties": {"who": {"type": "string"}, "n": {"type": "integer", "maximum": 3}},
        "additionalProperties": False,
    }
    response = await alice.patch(f"/v1/channels/{channel['id']}", {"metadata_schema": schema})
    assert response.status_code == 200
    posted = await alice.post(
        f"/v1/channels/{channel['id']}/messages", {"content": "x", "metadata": {"n": 9, "zz": 1}}
    )
    body = assert_error(posted, 422, "metadata_validation_failed")
    assert body["violations"] == [
        {"field": "metadata.who", "issue": "required field missing"},
        {"field": "metadata.n", "issue": "maximum 3"},
        {"field": "metadata.zz", "issue": "additional property not allowed"},
    ]
    await alice.send(channel["id"], metadata={"who": "me", "n": 2})


async def test_patch_invalid_fields_come_before_the_channel(server: Server) -> None:
    alice = await server.agent("alice")
    response = await alice.patch(
        "/v1/channels/no-such-channel", {"ttl_seconds": 400, "webhook_url": "http://x", "name": "a"}
    )
    body = assert_error(response, 422, "invalid_fields")
    assert body["fields"] == ["ttl_seconds", "webhook_url"]
    assert_error(await alice.patch("/v1/channels/no-such-channel", {}), 404, "channel_not_found")


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"name": ""}, "invalid_string"),
        ({"name": "a\x07b"}, "invalid_channel_name"),
        ({"name": "x" * 201}, "invalid_channel_name"),
        ({"mode": "queue"}, "invalid_mode"),
        ({"access": None}, "invalid_access"),
        ({"access": "secret"}, "invalid_access"),
        ({"discoverable": None}, "invalid_discoverable"),
        ({"discoverable": "yes"}, "invalid_discoverable"),
        ({"description": ""}, "invalid_string"),
        ({"metadata_schema": []}, "invalid_object"),
        ({"pinned_message": ""}, "invalid_string"),
        ({"related_channels": "x"}, "invalid_related_channels"),
        ({"related_channels": [""]}, "invalid_string"),
        ({"retention_days": 0}, "invalid_retention_days"),
        ({"retention_days": True}, "invalid_retention_days"),
        ({"max_messages": 0}, "invalid_max_messages"),
        ({"max_writes_per_minute": 1_000_001}, "invalid_max_writes_per_minute"),
        ({"paused": "no"}, "invalid_paused"),
        ({"paused": None}, "invalid_paused"),
    ],
)
async def test_patch_field_errors(server: Server, patch: dict[str, object], code: str) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("jobs")
    assert_error(await alice.patch(f"/v1/channels/{channel['id']}", patch), 422, code)
    assert (await alice.get(f"/v1/channels/{channel['id']}")).json() == channel


async def test_patch_related_unknown_is_404(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("jobs")
    response = await alice.patch(f"/v1/channels/{channel['id']}", {"related_channels": ["missing"]})
    assert_error(response, 404, "channel_not_found")


async def test_patch_is_the_owners(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("jobs")
    response = await bob.patch(f"/v1/channels/{channel['id']}", {"name": "mine"})
    assert_error(response, 403, "forbidden")
    restricted = await alice.channel("secret", access="restricted")
    response = await bob.patch(f"/v1/channels/{restricted['id']}", {"name": "mine"})
    assert_error(response, 403, "channel_access_denied")
    assert (await alice.get(f"/v1/channels/{channel['id']}")).json()["name"] == "jobs"


async def test_patch_to_restricted_locks_outsiders_out(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("jobs")
    await bob.send(channel["id"])
    await alice.patch(f"/v1/channels/{channel['id']}", {"access": "restricted"})
    listed = await bob.get(f"/v1/channels/{channel['id']}/messages")
    assert_error(listed, 403, "channel_access_denied")


# -- related_channels never reveal a restricted target (§6 S6) --------------------


async def test_links_to_unreadable_restricted_channels_are_refused(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    secret = await alice.channel("secret-lane", access="restricted")
    created = await bob.post(
        "/v1/channels", {"name": "b", "mode": "broadcast", "related_channels": [secret["id"]]}
    )
    body = assert_error(created, 403, "channel_access_denied")
    assert "secret-lane" not in created.text
    assert body["message"]
    mine = await bob.channel("mine")
    patched = await bob.patch(f"/v1/channels/{mine['id']}", {"related_channels": [secret["id"]]})
    assert_error(patched, 403, "channel_access_denied")
    assert "secret-lane" not in patched.text


async def test_links_show_only_channels_the_reader_can_read(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    secret = await alice.channel("secret-lane", access="restricted")
    public = await alice.channel("public-lane")
    hub = await alice.channel("hub", related_channels=[secret["id"], public["id"], public["id"]])
    names = [c["name"] for c in hub["related_channels"]]
    assert names == ["public-lane", "secret-lane"]
    own = [hub["id"], secret["id"]]
    patched = await alice.patch(f"/v1/channels/{hub['id']}", {"related_channels": own})
    assert [c["name"] for c in patched.json()["related_channels"]] == ["secret-lane"]
    await alice.patch(f"/v1/channels/{hub['id']}", {"related_channels": [*own, public["id"]]})
    seen = (await bob.get(f"/v1/channels/{hub['id']}")).json()
    assert [c["name"] for c in seen["related_channels"]] == ["public-lane"]
    assert "secret-lane" not in (await bob.get(f"/v1/channels/{hub['id']}")).text
    # a member of the target sees it; once removed, no longer
    await alice.post(f"/v1/channels/{secret['id']}/members", {"key_id": bob.key_id})
    seen = (await bob.get(f"/v1/channels/{hub['id']}")).json()
    assert [c["name"] for c in seen["related_channels"]] == ["public-lane", "secret-lane"]
    await alice.delete(f"/v1/channels/{secret['id']}/members/{bob.key_id}")
    seen = (await bob.get(f"/v1/channels/{hub['id']}")).json()
    assert [c["name"] for c in seen["related_channels"]] == ["public-lane"]


# -- DELETE -----------------------------------------------------------------------


async def test_delete_cascades(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("jobs")
    await alice.post(f"/v1/channels/{channel['id']}/aliases", {"alias": "ops.jobs"})
    first = await alice.send(channel["id"], "one")
    second = await alice.send(channel["id"], "two")
    lease = await bob.post(f"/v1/messages/{first['id']}/claim-with-lease", {"lease_seconds": 60})
    assert lease.status_code == 200
    await bob.post(f"/v1/messages/{second['id']}/claim", {})
    invitation = (await alice.post(f"/v1/channels/{channel['id']}/invitations")).json()
    response = await alice.delete(f"/v1/channels/{channel['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["content-type"] == "application/json"
    for path in (f"/v1/channels/{channel['id']}", "/v1/channels/ops.jobs", "/v1/channels/jobs"):
        assert_error(await alice.get(path), 404, "channel_not_found")
    assert_error(
        await alice.get(f"/v1/channels/{channel['id']}/messages"), 404, "channel_not_found"
    )
    assert_error(await bob.post(f"/v1/messages/{second['id']}/ack"), 404, "message_not_found")
    token = lease.json()["lease_token"]
    assert_error(await bob.post(f"/v1/leases/{token}/heartbeat"), 410, "lease_expired")
    assert_error(
        await bob.get(f"/v1/channel-invitations/{invitation['id']}"), 404, "invitation_not_found"
    )
    # the alias is free again
    again = await alice.channel("jobs2")
    aliased = await alice.post(f"/v1/channels/{again['id']}/aliases", {"alias": "ops.jobs"})
    assert aliased.status_code == 201


async def test_delete_is_the_owners(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("jobs")
    assert_error(await bob.delete(f"/v1/channels/{channel['id']}"), 403, "forbidden")
    restricted = await alice.channel("secret", access="restricted")
    denied = await bob.delete(f"/v1/channels/{restricted['id']}")
    assert_error(denied, 403, "channel_access_denied")
    assert_error(await bob.delete("/v1/channels/nope"), 404, "channel_not_found")
    assert (await alice.get(f"/v1/channels/{channel['id']}")).status_code == 200


async def test_delete_answers_a_parked_long_poll(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("jobs")
    answers: list[httpx.Response] = []

    async def poll() -> None:
        answers.append(await alice.get(f"/v1/channels/{channel['id']}/messages?wait=20"))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(0.3)
            assert (await alice.delete(f"/v1/channels/{channel['id']}")).status_code == 204
    assert_error(answers[0], 404, "channel_not_found")


async def test_delete_replays_with_idempotency_key(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("jobs")
    headers = {"Idempotency-Key": "del-1"}
    first = await alice.delete(f"/v1/channels/{channel['id']}", headers=headers)
    again = await alice.delete(f"/v1/channels/{channel['id']}", headers=headers)
    assert first.status_code == again.status_code == 204
    assert again.headers["X-Idempotent-Replay"] == "true"


# -- aliases ----------------------------------------------------------------------


async def test_alias_is_global_and_resolves(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("jobs")
    response = await alice.post(f"/v1/channels/{channel['id']}/aliases", {"alias": "  zeta "})
    assert response.status_code == 201
    assert response.json()["aliases"] == ["zeta"]
    response = await alice.post(f"/v1/channels/{channel['id']}/aliases", {"alias": "alpha"})
    assert response.json()["aliases"] == ["alpha", "zeta"]
    assert (await bob.get("/v1/channels/zeta")).json()["id"] == channel["id"]
    mine = await bob.channel("mine")
    taken = await bob.post(f"/v1/channels/{mine['id']}/aliases", {"alias": "zeta"})
    body = assert_error(taken, 409, "alias_conflict")
    assert body["message"] == "Alias 'zeta' already exists"
    again = await alice.post(f"/v1/channels/{channel['id']}/aliases", {"alias": "zeta"})
    assert_error(again, 409, "alias_conflict")


async def test_alias_errors(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("jobs")
    path = f"/v1/channels/{channel['id']}/aliases"
    assert_error(await alice.post(path, {}), 422, "missing_field")
    assert_error(await alice.post(path, {"alias": "  "}), 422, "invalid_string")
    assert_error(await alice.post(path, {"alias": 5}), 422, "invalid_string")
    assert_error(await bob.post(path, {"alias": "bobs"}), 403, "forbidden")
    assert_error(
        await alice.post("/v1/channels/nope/aliases", {"alias": "x"}), 404, "channel_not_found"
    )
    restricted = await alice.channel("secret", access="restricted")
    denied = await bob.post(f"/v1/channels/{restricted['id']}/aliases", {"alias": "x"})
    assert_error(denied, 403, "channel_access_denied")


async def test_patch_to_restricted_answers_an_outsiders_parked_long_poll(server: Server) -> None:
    alice, bob = await server.agent("alice"), await server.agent("bob")
    channel = await alice.channel("jobs")
    answers: list[httpx.Response] = []

    async def poll() -> None:
        answers.append(await bob.get(f"/v1/channels/{channel['id']}/messages?wait=20"))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(0.3)
            await alice.patch(f"/v1/channels/{channel['id']}", {"access": "restricted"})
            await trio.sleep(0.2)
            assert answers, "the outsider's long-poll is answered at the change"
            await alice.send(channel["id"], "members only")
    assert_error(answers[0], 403, "channel_access_denied")


async def test_concurrent_aliases_one_wins(server: Server) -> None:
    alice = await server.agent("alice")
    first, second = await alice.channel("one"), await alice.channel("two")
    statuses: list[int] = []

    async def alias(channel_id: str) -> None:
        response = await alice.post(f"/v1/channels/{channel_id}/aliases", {"alias": "contested"})
        statuses.append(response.status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(alias, first["id"])
            nursery.start_soon(alias, second["id"])
    assert sorted(statuses) == [201] + [409] * 9
    owner = (await alice.get("/v1/channels/contested")).json()["id"]
    other = second["id"] if owner == first["id"] else first["id"]
    assert (await alice.get(f"/v1/channels/{other}")).json()["aliases"] == []


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("PATCH", ""),
        ("POST", "/aliases"),
        ("POST", "/members"),
        ("POST", "/access-requests"),
    ],
)
async def test_bodies_must_be_json_objects(server: Server, method: str, suffix: str) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("jobs", access="restricted")
    path = f"/v1/channels/{channel['id']}{suffix}"
    headers = {"X-API-Key": alice.key}
    bad = await server.http.request(method, path, content=b"{nope", headers=headers)
    assert_error(bad, 400, "invalid_json")
    array = await server.http.request(method, path, content=b"[1]", headers=headers)
    assert_error(array, 422, "invalid_json_shape")


async def test_access_writes_replay_with_idempotency_key(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("jobs", access="restricted")
    headers = {"Idempotency-Key": "inv-1"}
    path = f"/v1/channels/{channel['id']}/invitations"
    first = await alice.post(path, headers=headers)
    again = await alice.post(path, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["X-Idempotent-Replay"] == "true"
    log = (await alice.get(f"/v1/channels/{channel['id']}/events")).json()["data"]
    assert log == []
    members = f"/v1/channels/{channel['id']}/members"
    headers = {"Idempotency-Key": "add-1"}
    await alice.post(members, {"key_id": "bck_x"}, headers=headers)
    await alice.post(members, {"key_id": "bck_x"}, headers=headers)
    log = (await alice.get(f"/v1/channels/{channel['id']}/events")).json()["data"]
    assert [e["event_type"] for e in log] == ["member_added"]
