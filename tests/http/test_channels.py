"""Channels over real HTTP: create, discover, get (contract §2.4, §2.1, §3.4)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from tests.conftest import Agent, Server, assert_error

CHANNEL_KEYS = {
    "id",
    "max_deliveries",
    "dead_letter_channel",
    "owner_id",
    "created_by_key_id",
    "name",
    "mode",
    "access",
    "discoverable",
    "description",
    "metadata_schema",
    "pinned_message",
    "ttl_seconds",
    "retention_days",
    "max_messages",
    "max_writes_per_minute",
    "paused",
    "aliases",
    "related_channels",
    "created_at",
    "updated_at",
}
DISCOVER_KEYS = {"id", "name", "mode", "access", "description", "created_at", "is_member"}


async def discover(agent: Agent, **params: Any) -> dict[str, Any]:
    response = await agent.get("/v1/channels", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def names(agent: Agent) -> list[str]:
    return [c["name"] for c in (await discover(agent, limit=100))["data"]]


# -- create -----------------------------------------------------------------


async def test_create_with_defaults(server: Server) -> None:
    alice = await server.agent("alice")
    response = await alice.post("/v1/channels", {"name": "  jobs  ", "mode": "claimable"})
    assert response.status_code == 201, response.text
    channel = response.json()
    assert set(channel) == CHANNEL_KEYS
    uuid.UUID(channel["id"])
    assert channel["owner_id"] == "alice"
    assert channel["created_by_key_id"] == alice.key_id
    assert channel["name"] == "jobs"
    assert channel["mode"] == "claimable"
    assert channel["access"] == "open"
    assert channel["discoverable"] is True
    assert channel["description"] == ""
    assert channel["metadata_schema"] == {}
    assert channel["pinned_message"] is None
    assert channel["ttl_seconds"] == 86_400
    assert channel["retention_days"] == 7
    assert channel["max_messages"] is None
    assert channel["max_writes_per_minute"] is None
    assert channel["paused"] is False
    assert channel["aliases"] == []
    assert channel["related_channels"] == []
    assert channel["created_at"] == channel["updated_at"]
    created = datetime.fromisoformat(channel["created_at"])
    assert created.utcoffset() == timedelta(0)


async def test_create_with_every_field(server: Server) -> None:
    alice = await server.agent("alice")
    zeta = await alice.channel("zeta", "broadcast")
    schema = {"type": "object", "required": ["who"]}
    response = await alice.post(
        "/v1/channels",
        {
            "name": "full",
            "mode": "broadcast",
            "access": "restricted",
            "discoverable": True,
            "description": "  about  ",
            "metadata_schema": schema,
            "pinned_message": " read me ",
            "related_channels": [zeta["id"], "sandbox", zeta["id"], None],
            "webhook_url": "https://example.invalid/hook",
            "webhook_secret": "s3cret",
            "ttl_seconds": 300,
            "retention_days": 365,
            "max_messages": 1_000_000,
            "max_writes_per_minute": 1,
            "paused": True,
            "unknown_field": "ignored",
        },
    )
    assert response.status_code == 201, response.text
    channel = response.json()
    assert set(channel) == CHANNEL_KEYS  # webhook_url / webhook_secret are never returned
    assert channel["access"] == "restricted"
    assert channel["discoverable"] is True
    assert channel["description"] == "about"
    assert channel["metadata_schema"] == schema
    assert channel["pinned_message"] == "read me"
    assert channel["ttl_seconds"] == 300
    assert channel["retention_days"] == 365
    assert channel["max_messages"] == 1_000_000
    assert channel["max_writes_per_minute"] == 1
    assert channel["paused"] is False  # not accepted at creation
    sandbox = (await alice.get("/v1/channels/sandbox")).json()
    assert channel["related_channels"] == [
        {"id": sandbox["id"], "name": "sandbox", "mode": "broadcast"},
        {"id": zeta["id"], "name": "zeta", "mode": "broadcast"},
    ]
    fetched = await alice.get(f"/v1/channels/{channel['id']}")
    assert fetched.json() == channel


async def test_restricted_channels_are_not_discoverable_by_default(server: Server) -> None:
    alice = await server.agent("alice")
    restricted = await alice.channel("secret", "claimable", access="restricted")
    assert restricted["discoverable"] is False
    explicit_null = await alice.channel("nulled", "claimable", discoverable=None)
    assert explicit_null["discoverable"] is True
    hidden = await alice.channel("hidden", "claimable", discoverable=False)
    assert hidden["discoverable"] is False
    assert await names(alice) == ["nulled", "sandbox"]


async def test_channel_name_rules(server: Server) -> None:
    alice = await server.agent("alice")
    for bad in (
        "a\x01b",
        "tab\there",
        "del\x7f",
        "zero\u200bwidth",
        "bom\ufeff",
        "bidi\u202e",
        "soft\u00adhyphen",
        "word\u2060joiner",
        "iso\u2066late",
        "x" * 201,
    ):
        response = await alice.post("/v1/channels", {"name": bad, "mode": "claimable"})
        assert_error(response, 422, "invalid_channel_name")
    ok = await alice.channel("y" * 200, "claimable")
    assert ok["name"] == "y" * 200
    html = await alice.channel("<b>&amp;</b> 'q' \"dq\" ünï", "claimable")
    assert html["name"] == "<b>&amp;</b> 'q' \"dq\" ünï"
    # names are not unique
    again = await alice.channel("y" * 200, "claimable")
    assert again["id"] != ok["id"]
    assert sorted(await names(alice)) == sorted(["sandbox", "y" * 200, "y" * 200, html["name"]])


async def test_create_field_errors(server: Server) -> None:
    alice = await server.agent("alice")
    base = {"name": "c", "mode": "claimable"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"mode": "claimable"}, 422, "missing_field"),
        ({"name": "c"}, 422, "missing_field"),
        ({**base, "name": ""}, 422, "invalid_string"),
        ({**base, "name": "   "}, 422, "invalid_string"),
        ({**base, "name": None}, 422, "invalid_string"),
        ({**base, "name": 7}, 422, "invalid_string"),
        ({**base, "mode": "queue"}, 422, "invalid_mode"),
        ({**base, "mode": None}, 422, "invalid_mode"),
        ({**base, "access": "public"}, 422, "invalid_access"),
        ({**base, "access": None}, 422, "invalid_access"),
        ({**base, "discoverable": "yes"}, 422, "invalid_discoverable"),
        ({**base, "discoverable": 1}, 422, "invalid_discoverable"),
        ({**base, "description": ""}, 422, "invalid_string"),
        ({**base, "description": 3}, 422, "invalid_string"),
        ({**base, "metadata_schema": []}, 422, "invalid_object"),
        ({**base, "metadata_schema": "x"}, 422, "invalid_object"),
        ({**base, "pinned_message": ""}, 422, "invalid_string"),
        ({**base, "related_channels": "sandbox"}, 422, "invalid_related_channels"),
        ({**base, "related_channels": {"a": 1}}, 422, "invalid_related_channels"),
        ({**base, "related_channels": [""]}, 422, "invalid_string"),
        ({**base, "related_channels": [5]}, 422, "invalid_string"),
        ({**base, "related_channels": ["no-such-channel"]}, 404, "channel_not_found"),
        ({**base, "ttl_seconds": 299}, 422, "invalid_ttl_seconds"),
        ({**base, "ttl_seconds": 2_592_001}, 422, "invalid_ttl_seconds"),
        ({**base, "ttl_seconds": "600"}, 422, "invalid_ttl_seconds"),
        ({**base, "ttl_seconds": 600.5}, 422, "invalid_ttl_seconds"),
        ({**base, "retention_days": 0}, 422, "invalid_retention_days"),
        ({**base, "retention_days": 366}, 422, "invalid_retention_days"),
        ({**base, "retention_days": True}, 422, "invalid_retention_days"),
        ({**base, "max_messages": 0}, 422, "invalid_max_messages"),
        ({**base, "max_messages": 1_000_001}, 422, "invalid_max_messages"),
        ({**base, "max_messages": True}, 422, "invalid_max_messages"),
        ({**base, "max_messages": "5"}, 422, "invalid_max_messages"),
        ({**base, "max_writes_per_minute": 0}, 422, "invalid_max_writes_per_minute"),
        ({**base, "max_writes_per_minute": 1_000_001}, 422, "invalid_max_writes_per_minute"),
        ({**base, "max_writes_per_minute": False}, 422, "invalid_max_writes_per_minute"),
        # checks run in the table's order
        ({"mode": "bogus"}, 422, "missing_field"),
        ({"name": "", "mode": "bogus"}, 422, "invalid_string"),
        ({**base, "mode": "bogus", "access": "bogus"}, 422, "invalid_mode"),
        ({**base, "access": "bogus", "ttl_seconds": 1}, 422, "invalid_access"),
        ({**base, "related_channels": ["nope"], "ttl_seconds": 1}, 422, "invalid_ttl_seconds"),
    ]
    failures = []
    for body, status, code in cases:
        response = await alice.post("/v1/channels", body)
        if response.status_code != status or response.json().get("error") != code:
            failures.append((body, status, code, response.status_code, response.text[:200]))
        else:
            assert_error(response, status, code)
    assert failures == []
    # null means "default" for these
    nulls = await alice.channel(
        "nulls",
        "claimable",
        description=None,
        metadata_schema=None,
        pinned_message=None,
        max_messages=None,
        max_writes_per_minute=None,
        related_channels=None,
    )
    assert nulls["description"] == ""
    assert nulls["metadata_schema"] == {}
    assert nulls["max_messages"] is None
    # none of the refused bodies created a channel
    assert await names(alice) == ["nulls", "sandbox"]


# -- get / resolution --------------------------------------------------------


async def test_get_by_id_alias_and_own_name(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    first = await alice.channel("shared-name", "claimable")
    second = await alice.channel("shared-name", "broadcast")
    bobs = await bob.channel("shared-name", "claimable")

    by_id = await bob.get(f"/v1/channels/{first['id']}")
    assert by_id.status_code == 200
    assert by_id.json()["id"] == first["id"]

    sandbox = await alice.get("/v1/channels/sandbox")
    assert sandbox.status_code == 200
    assert sandbox.json()["name"] == "sandbox"
    assert sandbox.json()["aliases"] == ["sandbox"]
    assert sandbox.json()["mode"] == "broadcast"
    assert (await bob.get("/v1/channels/sandbox")).json()["id"] == sandbox.json()["id"]

    # a name resolves among the caller's own channels only, newest first
    assert (await alice.get("/v1/channels/shared-name")).json()["id"] == second["id"]
    assert (await bob.get("/v1/channels/shared-name")).json()["id"] == bobs["id"]
    carol = await server.agent("carol")
    missing = await carol.get("/v1/channels/shared-name")
    body = assert_error(missing, 404, "channel_not_found")
    assert body["message"] == "Unknown channel 'shared-name'"

    assert_error(await alice.get(f"/v1/channels/{uuid.uuid4()}"), 404, "channel_not_found")


async def test_restricted_channel_get_is_owner_only(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    secret = await alice.channel("secret", "claimable", access="restricted")
    owner = await alice.get(f"/v1/channels/{secret['id']}")
    assert owner.status_code == 200
    assert owner.json() == secret
    assert (await alice.get("/v1/channels/secret")).json()["id"] == secret["id"]
    denied = await bob.get(f"/v1/channels/{secret['id']}")
    body = assert_error(denied, 403, "channel_access_denied")
    assert body["message"] == "You are not a member of this channel"
    # bob's names never reach alice's channel
    assert_error(await bob.get("/v1/channels/secret"), 404, "channel_not_found")


# -- discover -----------------------------------------------------------------


async def test_discover_newest_first_with_membership(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    a1 = await alice.channel("a1", "claimable", description="first")
    b1 = await bob.channel("b1", "broadcast")
    lane = await alice.channel("lane", "claimable", access="restricted", discoverable=True)
    await alice.channel("private", "claimable", access="restricted")
    await bob.channel("unlisted", "claimable", discoverable=False)

    page = await discover(bob)
    assert page["limit"] == 50
    assert page["next_cursor"] is None
    data = page["data"]
    assert [c["name"] for c in data] == ["lane", "b1", "a1", "sandbox"]
    for item in data:
        assert set(item) == DISCOVER_KEYS
    assert data[0] == {
        "id": lane["id"],
        "name": "lane",
        "mode": "claimable",
        "access": "restricted",
        "description": "",
        "created_at": lane["created_at"],
        "is_member": False,
    }
    assert data[1]["id"] == b1["id"]
    assert data[1]["is_member"] is True
    assert data[2]["id"] == a1["id"]
    assert data[2]["description"] == "first"
    assert data[2]["is_member"] is False
    assert data[3]["is_member"] is False  # the sandbox belongs to its bot
    created = [datetime.fromisoformat(c["created_at"]) for c in data]
    assert created == sorted(created, reverse=True)

    mine = {c["name"]: c["is_member"] for c in (await discover(alice))["data"]}
    assert mine == {"lane": True, "b1": False, "a1": True, "sandbox": False}


async def test_discover_limit_is_clamped(server: Server) -> None:
    alice = await server.agent("alice")
    for index in range(3):
        await alice.channel(f"c{index}", "claimable")
    for raw, expected in (
        ("0", 1),
        ("-7", 1),
        ("1", 1),
        ("2", 2),
        ("100", 100),
        ("101", 100),
        ("100000", 100),
    ):
        page = await discover(alice, limit=raw)
        assert page["limit"] == expected, raw
        assert len(page["data"]) == min(expected, 4)
    for raw in ("abc", "1.5", "1e2"):
        response = await alice.get("/v1/channels", params={"limit": raw})
        body = assert_error(response, 400, "invalid_query")
        assert body["parameter"] == "limit"


async def test_discover_pages_with_cursor(server: Server) -> None:
    alice = await server.agent("alice")
    created = [await alice.channel(f"c{index}", "claimable") for index in range(5)]
    expected = [c["id"] for c in reversed(created)]
    sandbox_id = (await alice.get("/v1/channels/sandbox")).json()["id"]
    expected.append(sandbox_id)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = await discover(alice, **params)
        pages += 1
        data = page["data"]
        seen.extend(c["id"] for c in data)
        if len(data) == 2:
            assert page["next_cursor"] == data[-1]["created_at"]
        else:
            assert page["next_cursor"] is None
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
        assert pages < 10
    assert seen == expected
    assert pages == 4  # three full pages, then an empty one with no cursor

    # "since" is an alias of "cursor"; "0" starts from the newest
    via_since = await discover(alice, limit=2, since=created[3]["created_at"])
    assert [c["id"] for c in via_since["data"]] == [created[2]["id"], created[1]["id"]]
    from_top = await discover(alice, limit=2, cursor="0")
    assert [c["id"] for c in from_top["data"]] == expected[:2]
    garbage = await discover(alice, limit=3, cursor="not-a-time")
    assert [c["id"] for c in garbage["data"]] == expected[:3]
