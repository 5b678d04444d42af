"""Key scopes over real HTTP (contract §2.3 ``PUT /v1/keys/me/scopes``, §3.10).

Each of the five scope-checked operations is refused without its scope
and served with it; the routes the contract leaves unchecked stay open to
a key with no scopes at all.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from backchannel.core.scopes import VALID_SCOPES
from tests.conftest import Agent, Server, assert_error


async def scoped(server: Server, label: str, scopes: list[str]) -> Agent:
    agent = await server.agent(label)
    response = await agent.put("/v1/keys/me/scopes", {"scopes": scopes})
    assert response.status_code == 200, response.text
    return agent


async def test_put_scopes_stores_a_sorted_list_with_duplicates(server: Server) -> None:
    alice = await server.agent("alice")
    response = await alice.put(
        "/v1/keys/me/scopes", {"scopes": ["messages:write", "messages:read", "messages:read"]}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "key_id": alice.key_id,
        "scopes": ["messages:read", "messages:read", "messages:write"],
    }
    me = (await alice.get("/v1/keys/me")).json()
    assert me["scopes"] == ["messages:read", "messages:read", "messages:write"]


@pytest.mark.parametrize("value", [None, "messages:read", {"a": 1}, 3])
async def test_scopes_must_be_an_array(server: Server, value: Any) -> None:
    alice = await server.agent("alice")
    assert_error(await alice.put("/v1/keys/me/scopes", {"scopes": value}), 422, "invalid_scopes")
    assert_error(await alice.put("/v1/keys/me/scopes", {}), 422, "invalid_scopes")
    assert (await alice.get("/v1/keys/me")).json()["scopes"] is None


@pytest.mark.parametrize("entry", ["messages:delete", "", 7, None, "MESSAGES:READ"])
async def test_unknown_scope_is_refused_with_the_valid_set(server: Server, entry: Any) -> None:
    alice = await server.agent("alice")
    response = await alice.put("/v1/keys/me/scopes", {"scopes": ["messages:read", entry]})
    body = assert_error(response, 422, "invalid_scope")
    for scope in VALID_SCOPES:
        assert scope in body["message"]
    assert (await alice.get("/v1/keys/me")).json()["scopes"] is None


async def test_put_scopes_body_errors(server: Server) -> None:
    alice = await server.agent("alice")
    bad = await alice.http.put(
        "/v1/keys/me/scopes", content=b"{nope", headers={"X-API-Key": alice.key}
    )
    assert_error(bad, 400, "invalid_json")
    shaped = await alice.put("/v1/keys/me/scopes", ["messages:read"])
    assert_error(shaped, 422, "invalid_json_shape")
    assert_error(
        await server.http.put("/v1/keys/me/scopes", json={"scopes": []}), 401, "unauthorized"
    )


async def test_a_key_cannot_widen_its_own_scopes(server: Server) -> None:
    alice = await scoped(server, "alice", ["messages:read", "messages:write"])
    wider = await alice.put("/v1/keys/me/scopes", {"scopes": ["messages:claim", "messages:read"]})
    body = assert_error(wider, 403, "insufficient_scope")
    assert body["required_scope"] == "messages:claim"
    assert body["granted_scopes"] == ["messages:read", "messages:write"]
    assert (await alice.get("/v1/keys/me")).json()["scopes"] == ["messages:read", "messages:write"]
    # narrowing works, and then the dropped scope cannot come back
    narrowed = await alice.put("/v1/keys/me/scopes", {"scopes": ["messages:read"]})
    assert narrowed.json()["scopes"] == ["messages:read"]
    back = await alice.put("/v1/keys/me/scopes", {"scopes": ["messages:read", "messages:write"]})
    assert assert_error(back, 403, "insufficient_scope")["required_scope"] == "messages:write"
    # the empty list is allowed, and final
    assert (await alice.put("/v1/keys/me/scopes", {"scopes": []})).json()["scopes"] == []
    again = await alice.put("/v1/keys/me/scopes", {"scopes": ["messages:read"]})
    assert_error(again, 403, "insufficient_scope")


async def test_an_unrestricted_key_may_choose_any_scopes(server: Server) -> None:
    alice = await server.agent("alice")
    response = await alice.put("/v1/keys/me/scopes", {"scopes": list(VALID_SCOPES)})
    assert response.json()["scopes"] == sorted(VALID_SCOPES)


# -- enforcement, route by route ------------------------------------------------------


Op = tuple[str, str, str]  # (scope, method, path template)


async def _attempt(agent: Agent, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    if method == "GET":
        return await agent.get(path)
    return await agent.post(path, body)


async def _fixture(server: Server) -> tuple[Agent, str, str]:
    owner = await server.agent("owner")
    channel = (await owner.channel("jobs", "claimable"))["id"]
    message = (await owner.send(channel, "work"))["id"]
    return owner, channel, message


CHECKED = [
    ("channels:write", "POST", "/v1/channels", {"name": "n", "mode": "broadcast"}, 201),
    ("messages:write", "POST", "/v1/channels/{channel}/messages", {"content": "x"}, 201),
    ("messages:read", "GET", "/v1/channels/{channel}/messages", {}, 200),
    ("messages:read", "GET", "/v1/channels/{channel}/history", {}, 200),
    ("messages:claim", "POST", "/v1/messages/{message}/claim", {"actor": "w"}, 200),
]


@pytest.mark.parametrize(("scope", "method", "template", "body", "status"), CHECKED)
async def test_each_checked_operation_needs_its_scope(
    server: Server, scope: str, method: str, template: str, body: dict[str, Any], status: int
) -> None:
    _owner, channel, message = await _fixture(server)
    path = template.format(channel=channel, message=message)
    others = [s for s in VALID_SCOPES if s != scope]
    without = await scoped(server, "without", others)
    refused = await _attempt(without, method, path, body)
    error = assert_error(refused, 403, "insufficient_scope")
    assert error["required_scope"] == scope
    assert error["granted_scopes"] == sorted(others)
    assert f"'{scope}'" in error["message"]
    blocked = await scoped(server, "blocked", [])
    assert (
        assert_error(await _attempt(blocked, method, path, body), 403, "insufficient_scope")[
            "granted_scopes"
        ]
        == []
    )
    holder = await scoped(server, "holder", [scope])
    served = await _attempt(holder, method, path, body)
    assert served.status_code == status, served.text


async def test_scope_is_checked_before_an_idempotent_replay(server: Server) -> None:
    _owner, channel, _message = await _fixture(server)
    alice = await server.agent("alice")
    path = f"/v1/channels/{channel}/messages"
    headers = {"Idempotency-Key": "k1"}
    first = await alice.post(path, {"content": "x"}, headers=headers)
    assert first.status_code == 201
    await alice.put("/v1/keys/me/scopes", {"scopes": ["messages:read"]})
    replay = await alice.post(path, {"content": "x"}, headers=headers)
    assert_error(replay, 403, "insufficient_scope")


async def test_unchecked_routes_stay_open_to_a_key_without_scopes(server: Server) -> None:
    owner, channel, message = await _fixture(server)
    blocked = await scoped(server, "blocked", [])
    assert (await blocked.get("/v1/channels")).status_code == 200
    assert (await blocked.get(f"/v1/channels/{channel}")).status_code == 200
    assert (await blocked.get("/v1/keys/me")).status_code == 200
    leased = await blocked.post(f"/v1/messages/{message}/claim-with-lease", {"actor": "w"})
    assert leased.status_code == 200, leased.text
    token = leased.json()["lease_token"]
    assert (await blocked.post(f"/v1/leases/{token}/heartbeat", {})).status_code == 200
    assert (await blocked.post(f"/v1/messages/{message}/ack", {"actor": "w"})).status_code == 200
    other = (await owner.send(channel, "more"))["id"]
    claimed = await blocked.post("/v1/tasks/claim", {"channel": channel, "actor": "w"})
    assert claimed.json()["claimed"]["id"] == other
    assert (await blocked.post(f"/v1/messages/{other}/release", {"actor": "w"})).status_code == 200
    assert (await blocked.post("/v1/actors", {"name": "a"})).status_code == 201
    assert (await blocked.get("/v1/security/audit")).status_code == 200
    assert (await blocked.post("/v1/sessions", {"name": "s"})).status_code == 201
