"""Actor aliases and mention-webhook registration over real HTTP (contract §2.7, §0.7)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import Agent, Server, assert_error, serving


async def actor_of(agent: Agent, name: str = "worker") -> dict[str, Any]:
    response = await agent.post("/v1/actors", {"name": name})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# -- aliases -------------------------------------------------------------------------


async def test_owner_aliases_an_actor(server: Server) -> None:
    alice = await server.agent("alice")
    actor = await actor_of(alice)
    response = await alice.post(f"/v1/actors/{actor['id']}/aliases", {"alias": "  w-1  "})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["aliases"] == ["w-1"]
    assert {k: v for k, v in body.items() if k != "aliases"} == {
        k: v for k, v in actor.items() if k != "aliases"
    }
    # an alias resolves like the id, also when adding the next alias
    second = await alice.post("/v1/actors/w-1/aliases", {"alias": "a-0"})
    assert second.json()["aliases"] == ["a-0", "w-1"]  # sorted
    assert (await alice.get("/v1/actors/a-0")).json()["id"] == actor["id"]
    # and it names the actor when posting
    channel = (await alice.channel("c", "broadcast"))["id"]
    posted = await alice.send(channel, "hi", actor="w-1")
    assert posted["actor"] == {"id": actor["id"], "name": "worker"}


async def test_alias_is_the_owners_only(server: Server) -> None:
    alice = await server.agent("alice")
    mallory = await server.agent("mallory")
    actor = await actor_of(alice)
    response = await mallory.post(f"/v1/actors/{actor['id']}/aliases", {"alias": "sandbox"})
    body = assert_error(response, 403, "actor_forbidden")
    assert body["message"] == "You can only act as an actor your own key registered"
    assert (await mallory.get(f"/v1/actors/{actor['id']}")).json()["aliases"] == []
    assert_error(await mallory.get("/v1/actors/sandbox"), 404, "actor_not_found")


async def test_alias_errors(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    actor = await actor_of(alice)
    bobs = await actor_of(bob)
    path = f"/v1/actors/{actor['id']}/aliases"
    assert_error(await alice.post(path, {}), 422, "missing_field")
    for alias in ("", "  ", 3, None):
        assert_error(await alice.post(path, {"alias": alias}), 422, "invalid_string")
    long = "x" * (server.settings.max_name_chars + 1)
    assert_error(await alice.post(path, {"alias": long}), 422, "invalid_string")
    assert_error(
        await alice.post("/v1/actors/nope/aliases", {"alias": "x"}), 404, "actor_not_found"
    )
    # names never resolve
    assert_error(
        await alice.post("/v1/actors/worker/aliases", {"alias": "x"}), 404, "actor_not_found"
    )
    assert (await alice.post(path, {"alias": "taken"})).status_code == 201
    # the namespace is global: another owner cannot take it either
    for agent, target in ((alice, actor), (bob, bobs)):
        conflict = await agent.post(f"/v1/actors/{target['id']}/aliases", {"alias": "taken"})
        body = assert_error(conflict, 409, "alias_conflict")
        assert body["message"] == "Alias 'taken' already exists"
    bad = await alice.http.post(path, content=b"{", headers={"X-API-Key": alice.key})
    assert_error(bad, 400, "invalid_json")
    assert_error(await alice.post(path, ["x"]), 422, "invalid_json_shape")
    assert_error(await server.http.post(path, json={"alias": "y"}), 401, "unauthorized")


async def test_aliases_survive_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path) as server:
        alice = await server.agent("alice")
        actor = await actor_of(alice)
        await alice.post(f"/v1/actors/{actor['id']}/aliases", {"alias": "kept"})
    async with serving(nursery, tmp_path) as server:
        got = await server.http.get("/v1/actors/kept", headers={"X-API-Key": alice.key})
        assert got.json()["id"] == actor["id"]
        assert got.json()["aliases"] == ["kept"]


# -- mention webhook -----------------------------------------------------------------


async def test_register_read_replace_and_delete_a_webhook(server: Server) -> None:
    alice = await server.agent("alice")
    actor = await actor_of(alice)
    path = f"/v1/actors/{actor['id']}/webhook"
    assert_error(await alice.get(path), 404, "webhook_not_found")
    response = await alice.post(path, {"url": "https://hooks.example.com/a", "secret": "s3"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "actor_id": actor["id"],
        "url": "https://hooks.example.com/a",
        "has_secret": True,
    }
    got = await alice.get(path)
    assert got.status_code == 200
    body = got.json()
    assert set(body) == {"actor_id", "url", "has_secret", "updated_at"}
    assert body["url"] == "https://hooks.example.com/a"
    assert body["has_secret"] is True
    assert "s3" not in got.text  # the secret is never returned
    first_update = datetime.fromisoformat(body["updated_at"])
    # one webhook per actor: a second registration replaces the first
    replaced = await alice.post(path, {"url": "HTTP://other.example.com:8080/x?y=1"})
    assert replaced.json()["has_secret"] is False
    body = (await alice.get(path)).json()
    assert body["url"] == "HTTP://other.example.com:8080/x?y=1"
    assert body["has_secret"] is False
    assert datetime.fromisoformat(body["updated_at"]) > first_update
    deleted = await alice.delete(path)
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": True}
    assert_error(await alice.get(path), 404, "webhook_not_found")
    # deleting when none exists still succeeds
    assert (await alice.delete(path)).json() == {"deleted": True}


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "   ",
        5,
        ["https://a.example"],
        "ftp://example.com/x",
        "example.com/hook",
        "javascript:alert(1)",
        "https://",
        "http:///path-only",
        "https://exa mple.com/",
        "https://example.com/\nX-Injected: 1",
        "https://" + "a" * 2048 + ".example",
    ],
)
async def test_webhook_url_must_be_a_deliverable_http_url(server: Server, url: Any) -> None:
    alice = await server.agent("alice")
    actor = await actor_of(alice)
    path = f"/v1/actors/{actor['id']}/webhook"
    body = {} if url is None else {"url": url}
    assert_error(await alice.post(path, body), 422, "invalid_webhook_url")
    assert_error(await alice.get(path), 404, "webhook_not_found")


async def test_webhook_url_is_checked_before_the_actor(server: Server) -> None:
    alice = await server.agent("alice")
    mallory = await server.agent("mallory")
    actor = await actor_of(alice)
    path = f"/v1/actors/{actor['id']}/webhook"
    assert_error(await mallory.post(path, {"url": "ftp://x"}), 422, "invalid_webhook_url")
    assert_error(
        await alice.post("/v1/actors/nope/webhook", {"url": "x"}), 422, "invalid_webhook_url"
    )


async def test_webhook_routes_are_the_owners_only(server: Server) -> None:
    alice = await server.agent("alice")
    mallory = await server.agent("mallory")
    actor = await actor_of(alice)
    path = f"/v1/actors/{actor['id']}/webhook"
    assert (await alice.post(path, {"url": "https://a.example/h"})).status_code == 200
    stolen = await mallory.post(path, {"url": "https://evil.example/h"})
    assert_error(stolen, 403, "actor_forbidden")
    assert_error(await mallory.get(path), 403, "actor_forbidden")
    assert_error(await mallory.delete(path), 403, "actor_forbidden")
    assert (await alice.get(path)).json()["url"] == "https://a.example/h"


async def test_webhook_routes_find_actors_by_id_only(server: Server) -> None:
    alice = await server.agent("alice")
    actor = await actor_of(alice)
    await alice.post(f"/v1/actors/{actor['id']}/aliases", {"alias": "w"})
    for identifier in ("w", "worker", "nope"):
        path = f"/v1/actors/{identifier}/webhook"
        assert_error(await alice.post(path, {"url": "https://a.example"}), 404, "actor_not_found")
        assert_error(await alice.get(path), 404, "actor_not_found")
        assert_error(await alice.delete(path), 404, "actor_not_found")


async def test_webhook_body_errors(server: Server) -> None:
    alice = await server.agent("alice")
    actor = await actor_of(alice)
    path = f"/v1/actors/{actor['id']}/webhook"
    for secret in ("", 5, "  "):
        response = await alice.post(path, {"url": "https://a.example", "secret": secret})
        assert_error(response, 422, "invalid_string")
    nulled = await alice.post(path, {"url": "https://a.example", "secret": None})
    assert nulled.json()["has_secret"] is False
    bad = await alice.http.post(path, content=b"{", headers={"X-API-Key": alice.key})
    assert_error(bad, 400, "invalid_json")
    assert_error(await alice.post(path, ["x"]), 422, "invalid_json_shape")
    for response in (
        await server.http.post(path, json={"url": "https://a.example"}),
        await server.http.get(path),
        await server.http.delete(path),
    ):
        assert_error(response, 401, "unauthorized")


async def test_webhooks_survive_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path) as server:
        alice = await server.agent("alice")
        kept = await actor_of(alice, "kept")
        dropped = await actor_of(alice, "dropped")
        await alice.post(
            f"/v1/actors/{kept['id']}/webhook", {"url": "https://k.example", "secret": "s"}
        )
        await alice.post(f"/v1/actors/{dropped['id']}/webhook", {"url": "https://d.example"})
        await alice.delete(f"/v1/actors/{dropped['id']}/webhook")
        before = (await alice.get(f"/v1/actors/{kept['id']}/webhook")).json()
    async with serving(nursery, tmp_path) as server:
        headers = {"X-API-Key": alice.key}
        got = await server.http.get(f"/v1/actors/{kept['id']}/webhook", headers=headers)
        assert got.json() == before
        gone = await server.http.get(f"/v1/actors/{dropped['id']}/webhook", headers=headers)
        assert_error(gone, 404, "webhook_not_found")
