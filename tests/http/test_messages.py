"""Messages over real HTTP: post, list, cursors, history (contract §2.6, §0.1, §3.5)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from tests.conftest import Agent, Server, assert_error

MESSAGE_KEYS = {
    "id",
    "deliveries",
    "visible_at",
    "channel_id",
    "actor",
    "actor_label",
    "content",
    "metadata",
    "created_at",
    "expires_at",
    "claimed_by",
    "claimed_by_key_id",
    "mentions",
    "claimed_at",
    "acknowledged_by",
    "active",
}
ARCHIVED_KEYS = {
    "id",
    "reason",
    "deliveries",
    "channel_id",
    "actor",
    "actor_label",
    "content",
    "metadata",
    "created_at",
    "expires_at",
    "claimed_by",
    "claimed_at",
    "archived_at",
    "active",
}


async def page(agent: Agent, channel: str, **params: Any) -> dict[str, Any]:
    response = await agent.get(f"/v1/channels/{channel}/messages", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def contents(agent: Agent, channel: str, **params: Any) -> list[str]:
    return [m["content"] for m in (await page(agent, channel, limit=100, **params))["data"]]


async def history(agent: Agent, channel: str, **params: Any) -> dict[str, Any]:
    response = await agent.get(f"/v1/channels/{channel}/history", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def default_actor(agent: Agent, channel: str) -> dict[str, Any]:
    """The key's default actor, learned by claiming and releasing a scratch message."""
    message = await agent.send(channel, "scratch")
    claimed = await agent.post(f"/v1/messages/{message['id']}/claim")
    actor: dict[str, Any] = claimed.json()["message"]["claimed_by"]
    await agent.post(f"/v1/messages/{message['id']}/release")
    await agent.delete(f"/v1/messages/{message['id']}")
    return actor


# -- post ---------------------------------------------------------------------


async def test_post_returns_the_message(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("jobs", "claimable", ttl_seconds=600)
    response = await alice.post(
        f"/v1/channels/{channel['id']}/messages",
        {"content": "  do it  ", "metadata": {"n": 1, "tags": ["a"]}, "actor_label": " bot "},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"message", "next_cursor"}
    message = body["message"]
    assert set(message) == MESSAGE_KEYS
    uuid.UUID(message["id"])
    assert message["channel_id"] == channel["id"]
    assert message["actor"] is None
    assert message["actor_label"] == "bot"
    assert message["content"] == "do it"
    assert message["metadata"] == {"n": 1, "tags": ["a"]}
    created = datetime.fromisoformat(message["created_at"])
    expires = datetime.fromisoformat(message["expires_at"])
    assert expires - created == timedelta(seconds=600)
    assert message["claimed_by"] is None
    assert message["claimed_by_key_id"] is None
    assert message["claimed_at"] is None
    assert message["mentions"] == []
    assert message["acknowledged_by"] == []
    assert message["active"] is True
    assert isinstance(body["next_cursor"], str)
    assert body["next_cursor"]

    listed = await page(alice, channel["id"])
    assert listed["data"] == [message]
    # the post's next_cursor continues after it
    assert (await page(alice, channel["id"], cursor=body["next_cursor"]))["data"] == []


async def test_post_by_name_and_by_alias(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = await alice.channel("by-name", "broadcast")
    await alice.send("by-name", "via name")
    await bob.send("sandbox", "via alias")
    assert await contents(alice, channel["id"]) == ["via name"]
    assert await contents(alice, "sandbox") == ["via alias"]
    assert_error(
        await bob.post("/v1/channels/by-name/messages", {"content": "x"}), 404, "channel_not_found"
    )


async def test_post_as_an_actor(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    created = await alice.post("/v1/actors", {"name": "planner", "description": "plans"})
    assert created.status_code == 201, created.text
    planner = created.json()
    assert planner["owner_id"] == "alice"
    assert planner["created_by_key_id"] == alice.key_id
    assert planner["name"] == "planner"

    posted = await alice.send(channel, "planned", actor=planner["id"])
    assert posted["actor"] == {"id": planner["id"], "name": "planner"}

    mine = await default_actor(alice, channel)
    assert mine["name"] == "alice"
    as_default = await alice.send(channel, "by default actor", actor=mine["id"])
    assert as_default["actor"] == mine

    path = f"/v1/channels/{channel}/messages"
    assert_error(
        await bob.post(path, {"content": "x", "actor": planner["id"]}), 403, "actor_forbidden"
    )
    assert_error(
        await alice.post(path, {"content": "x", "actor": str(uuid.uuid4())}), 404, "actor_not_found"
    )
    # names are not accepted when posting
    assert_error(
        await alice.post(path, {"content": "x", "actor": "planner"}), 404, "actor_not_found"
    )
    assert await contents(alice, channel) == ["planned", "by default actor"]


async def test_create_and_read_actors(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    created = await alice.post(
        "/v1/actors", {"name": "  scout  ", "description": " looks ", "metadata": {"v": 1}}
    )
    assert created.status_code == 201, created.text
    actor = created.json()
    assert set(actor) == {
        "id",
        "owner_id",
        "created_by_key_id",
        "name",
        "description",
        "metadata",
        "aliases",
        "created_at",
        "updated_at",
    }
    uuid.UUID(actor["id"])
    assert actor["owner_id"] == "alice"
    assert actor["created_by_key_id"] == alice.key_id
    assert actor["name"] == "scout"
    assert actor["description"] == "looks"
    assert actor["metadata"] == {"v": 1}
    assert actor["aliases"] == []
    assert actor["created_at"] == actor["updated_at"]
    bare = (await alice.post("/v1/actors", {"name": "scout"})).json()
    assert bare["id"] != actor["id"]  # names are not unique
    assert bare["description"] == ""
    assert bare["metadata"] == {}

    # any key may read any actor by id; names and unknown ids are 404
    read = await bob.get(f"/v1/actors/{actor['id']}")
    assert read.status_code == 200
    assert read.json() == actor
    assert_error(await bob.get("/v1/actors/scout"), 404, "actor_not_found")
    missing = assert_error(await bob.get(f"/v1/actors/{uuid.uuid4()}"), 404, "actor_not_found")
    assert missing["message"].startswith("Unknown actor")


async def test_post_mentions(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    open_channel = (await alice.channel("open", "broadcast"))["id"]
    secret = (await alice.channel("secret", "broadcast", access="restricted"))["id"]
    mine = (await alice.post("/v1/actors", {"name": "helper"})).json()
    bobs = (await bob.post("/v1/actors", {"name": "outsider"})).json()

    posted = await alice.send(
        open_channel,
        "hi",
        mentions=[mine["id"], None, str(uuid.uuid4()), mine["id"], bobs["id"]],
    )
    assert posted["mentions"] == [
        {"id": mine["id"], "name": "helper"},
        {"id": bobs["id"], "name": "outsider"},
    ]
    # members-only on restricted channels: bob's actor cannot read it, so it drops out
    restricted = await alice.send(secret, "psst", mentions=[bobs["id"], mine["id"]])
    assert restricted["mentions"] == [{"id": mine["id"], "name": "helper"}]


async def test_post_errors_and_their_order(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    schema = {
        "type": "object",
        "required": ["who"],
        "properties": {"who": {"type": "string"}, "n": {"type": "integer", "maximum": 3}},
        "additionalProperties": False,
    }
    channel = (await alice.channel("strict", "claimable", metadata_schema=schema))["id"]
    secret = (await alice.channel("secret", "claimable", access="restricted"))["id"]
    path = f"/v1/channels/{channel}/messages"

    assert_error(await alice.post(path, {}), 422, "missing_field")
    assert_error(await alice.post(path, {"content": "   "}), 422, "invalid_string")
    assert_error(await alice.post(path, {"content": "x", "metadata": [1]}), 422, "invalid_object")
    assert_error(await alice.post(path, {"content": "x", "actor_label": ""}), 422, "invalid_string")
    assert_error(await alice.post(path, {"content": "x", "mentions": "a"}), 422, "invalid_mentions")
    assert_error(await alice.post(path, {"content": "x", "mentions": [""]}), 422, "invalid_string")
    failed = assert_error(
        await alice.post(path, {"content": "x", "metadata": {"n": 5, "zz": 1}}),
        422,
        "metadata_validation_failed",
    )
    assert failed["message"] == "Message metadata failed channel schema validation"
    assert sorted(failed["violations"], key=lambda v: v["field"]) == [
        {"field": "metadata.n", "issue": "maximum 3"},
        {"field": "metadata.who", "issue": "required field missing"},
        {"field": "metadata.zz", "issue": "additional property not allowed"},
    ]
    accepted = await alice.post(path, {"content": "ok", "metadata": {"who": "me", "n": 3}})
    assert accepted.status_code == 201, accepted.text

    # order: content → size → metadata → actor_label → channel → schema → actor
    nowhere = f"/v1/channels/{uuid.uuid4()}/messages"
    assert_error(await alice.post(nowhere, {"content": ""}), 422, "invalid_string")
    assert_error(
        await alice.post(nowhere, {"content": "x" * 10_001, "metadata": 1}),
        422,
        "content_too_large",
    )
    assert_error(
        await alice.post(nowhere, {"content": "x", "metadata": 1, "actor_label": 1}),
        422,
        "invalid_object",
    )
    assert_error(
        await alice.post(nowhere, {"content": "x", "actor": str(uuid.uuid4())}),
        404,
        "channel_not_found",
    )
    assert_error(
        await bob.post(f"/v1/channels/{secret}/messages", {"content": "x", "metadata": {"bad": 1}}),
        403,
        "channel_access_denied",
    )
    assert_error(
        await alice.post(path, {"content": "x", "actor": str(uuid.uuid4())}),
        422,
        "metadata_validation_failed",
    )
    assert await contents(alice, channel) == ["ok"]
    assert await contents(alice, secret) == []


# -- list -----------------------------------------------------------------------


async def test_list_filters(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    sent = [await alice.send(channel, f"m{index}") for index in range(4)]
    claimed = await alice.post(f"/v1/messages/{sent[1]['id']}/claim")
    assert claimed.status_code == 200

    assert await contents(alice, channel) == ["m0", "m1", "m2", "m3"]
    assert await contents(alice, channel, status="unclaimed") == ["m0", "m2", "m3"]
    assert await contents(alice, channel, status="claimed") == ["m1"]
    assert await contents(alice, channel, status="") == ["m0", "m1", "m2", "m3"]
    limited = await page(alice, channel, limit=2)
    assert limited["limit"] == 2
    assert [m["content"] for m in limited["data"]] == ["m0", "m1"]
    default = await page(alice, channel)
    assert default["limit"] == 50
    # expiring_before keeps messages with expires_at < value; unparsable is ignored
    expiring = await contents(alice, channel, expiring_before=sent[2]["expires_at"])
    assert expiring == ["m0", "m1"]
    assert await contents(alice, channel, expiring_before="soon") == ["m0", "m1", "m2", "m3"]

    assert_error(
        await alice.get(f"/v1/channels/{channel}/messages", params={"status": "done"}),
        422,
        "invalid_status",
    )
    for raw in ("0", "101", "-1"):
        response = await alice.get(f"/v1/channels/{channel}/messages", params={"limit": raw})
        assert_error(response, 422, "invalid_limit")
    assert_error(await alice.get(f"/v1/channels/{uuid.uuid4()}/messages"), 404, "channel_not_found")


async def test_paging_120_messages_returns_each_once_in_order(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("bulk", "broadcast"))["id"]
    sent = [(await alice.send(channel, f"m{index:03d}"))["id"] for index in range(120)]

    seen: list[str] = []
    sizes: list[int] = []
    cursor = "0"
    for _ in range(10):
        body = await page(bob, channel, cursor=cursor, limit=50)
        sizes.append(len(body["data"]))
        seen.extend(m["id"] for m in body["data"])
        if not body["data"]:
            assert body["next_cursor"] == cursor  # an empty page echoes the cursor
            break
        assert body["next_cursor"] != cursor
        cursor = body["next_cursor"]
    assert sizes == [50, 50, 20, 0]
    assert seen == sent

    # new messages appear after the last cursor, exactly once
    late = await alice.send(channel, "late")
    after = await page(bob, channel, cursor=cursor, limit=50)
    assert [m["id"] for m in after["data"]] == [late["id"]]


async def test_since_timestamp_zero_and_garbage(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("times", "broadcast"))["id"]
    sent = [await alice.send(channel, f"m{index}") for index in range(3)]
    path = f"/v1/channels/{channel}/messages"

    # an ISO timestamp means "created strictly after that instant"
    after_first = await page(alice, channel, since=sent[0]["created_at"])
    assert [m["content"] for m in after_first["data"]] == ["m1", "m2"]
    zulu = sent[1]["created_at"].replace("+00:00", "Z")
    assert [m["content"] for m in (await page(alice, channel, since=zulu))["data"]] == ["m2"]
    naive = sent[1]["created_at"].replace("+00:00", "")
    assert [m["content"] for m in (await page(alice, channel, cursor=naive))["data"]] == ["m2"]
    before_all = datetime.fromisoformat(sent[0]["created_at"]) - timedelta(microseconds=1)
    assert await contents(alice, channel, cursor=before_all.isoformat()) == ["m0", "m1", "m2"]
    after_all = await page(alice, channel, since=sent[2]["created_at"])
    assert after_all["data"] == []
    assert after_all["next_cursor"] == sent[2]["created_at"]

    # since=0 and unparsable cursors start from the beginning
    assert await contents(alice, channel, since="0") == ["m0", "m1", "m2"]
    assert await contents(alice, channel, cursor="garbage") == ["m0", "m1", "m2"]

    # deprecation headers only when "since" is used without "cursor"
    deprecated = await alice.get(path, params={"since": "0"})
    assert deprecated.headers["Deprecation"] == "true"
    assert deprecated.headers["Sunset"] == "2027-01-01"
    preferred = await alice.get(path, params={"cursor": "0"})
    assert "Deprecation" not in preferred.headers
    assert "Sunset" not in preferred.headers
    both = await alice.get(path, params={"cursor": "0", "since": sent[1]["created_at"]})
    assert [m["content"] for m in both.json()["data"]] == ["m0", "m1", "m2"]
    assert "Deprecation" not in both.headers


async def test_next_cursor_echo_on_empty_pages(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("empty", "broadcast"))["id"]
    assert (await page(alice, channel))["next_cursor"] is None
    for raw in ("0", "garbage", "2030-01-01T00:00:00+00:00"):
        assert (await page(alice, channel, cursor=raw))["next_cursor"] == raw
        assert (await page(alice, channel, since=raw))["next_cursor"] == raw
    first = await alice.send(channel, "one")
    body = await page(alice, channel, cursor="garbage")
    assert [m["id"] for m in body["data"]] == [first["id"]]
    assert body["next_cursor"] not in (None, "garbage")


async def test_cursor_survives_retraction(server: Server) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("holes", "broadcast"))["id"]
    sent = [await alice.send(channel, f"m{index}") for index in range(4)]
    first = await page(alice, channel, limit=2)
    cursor = first["next_cursor"]
    for message in sent[1:3]:
        assert (await alice.delete(f"/v1/messages/{message['id']}")).status_code == 200
    rest = await page(alice, channel, cursor=cursor)
    assert [m["content"] for m in rest["data"]] == ["m3"]
    assert await contents(alice, channel) == ["m0", "m3"]


# -- history ----------------------------------------------------------------------


async def test_history_after_retraction(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("archive", "claimable"))["id"]
    assert (await history(alice, channel)) == {"data": [], "limit": 50, "next_cursor": None}
    sent = [
        await alice.send(channel, f"m{index}", metadata={"i": index}, actor_label="writer")
        for index in range(4)
    ]
    # claim and release one so its archived row has seen a claim
    assert (await bob.post(f"/v1/messages/{sent[1]['id']}/claim")).status_code == 200
    assert (await bob.post(f"/v1/messages/{sent[1]['id']}/release")).status_code == 200
    for index in (0, 2, 1):
        retracted = await alice.delete(f"/v1/messages/{sent[index]['id']}")
        assert retracted.status_code == 200
        assert retracted.json() == {"status": "retracted"}

    body = await history(bob, channel)
    data = body["data"]
    assert [m["id"] for m in data] == [sent[2]["id"], sent[1]["id"], sent[0]["id"]]
    assert body["next_cursor"] is not None
    for entry, original in zip(data, (sent[2], sent[1], sent[0]), strict=True):
        assert set(entry) == ARCHIVED_KEYS
        assert entry["active"] is False
        assert entry["channel_id"] == channel
        assert entry["content"] == original["content"]
        assert entry["metadata"] == original["metadata"]
        assert entry["actor_label"] == "writer"
        assert entry["created_at"] == original["created_at"]
        assert entry["expires_at"] == original["expires_at"]
        assert entry["claimed_by"] is None
        assert entry["claimed_at"] is None
        archived = datetime.fromisoformat(entry["archived_at"])
        assert archived >= datetime.fromisoformat(entry["created_at"])
    assert await contents(alice, channel) == ["m3"]

    # paging: next_cursor is set even on a short last page, null on an empty one
    first = await history(bob, channel, limit=2)
    assert [m["id"] for m in first["data"]] == [sent[2]["id"], sent[1]["id"]]
    second = await history(bob, channel, limit=2, cursor=first["next_cursor"])
    assert [m["id"] for m in second["data"]] == [sent[0]["id"]]
    assert second["next_cursor"] is not None
    third = await history(bob, channel, limit=2, cursor=second["next_cursor"])
    assert third == {"data": [], "limit": 2, "next_cursor": None}
    # a timestamp cursor pages backward too (created_at < cursor)
    by_time = await history(bob, channel, cursor=sent[2]["created_at"])
    assert [m["id"] for m in by_time["data"]] == [sent[1]["id"], sent[0]["id"]]


async def test_history_errors(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("archive", "claimable"))["id"]
    secret = (await alice.channel("secret", "claimable", access="restricted"))["id"]
    path = f"/v1/channels/{channel}/history"
    for raw in ("0", "101"):
        assert_error(await alice.get(path, params={"limit": raw}), 422, "invalid_limit")
    body = assert_error(await alice.get(path, params={"limit": "x"}), 400, "invalid_query")
    assert body["parameter"] == "limit"
    assert_error(await bob.get(f"/v1/channels/{secret}/history"), 403, "channel_access_denied")
    assert (await alice.get(f"/v1/channels/{secret}/history")).status_code == 200
    assert_error(await alice.get(f"/v1/channels/{uuid.uuid4()}/history"), 404, "channel_not_found")


# -- restricted channels ------------------------------------------------------------


async def test_restricted_channel_messages_are_owner_only(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    secret = (await alice.channel("secret", "claimable", access="restricted"))["id"]
    message = await alice.send(secret, "hidden")
    path = f"/v1/channels/{secret}/messages"
    assert_error(await bob.get(path), 403, "channel_access_denied")
    assert_error(await bob.get(path, params={"wait": "1"}), 403, "channel_access_denied")
    assert_error(await bob.post(path, {"content": "x"}), 403, "channel_access_denied")
    assert [m["id"] for m in (await page(alice, secret))["data"]] == [message["id"]]
