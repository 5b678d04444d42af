"""Sessions over real HTTP (contract §2.8); their 24 h life in-process on the MockClock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from backchannel.http.app import create_app
from backchannel.runtime.service import open_runtime
from tests.conftest import Agent, Server, assert_error, serving, test_settings

DAY = timedelta(hours=24)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def create(agent: Agent, name: str = "plan", **fields: Any) -> dict[str, Any]:
    response = await agent.post("/v1/sessions", {"name": name, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_returns_a_session_that_lives_24_hours(server: Server) -> None:
    alice = await server.agent("alice")
    body = await create(alice, "  plan  ", state={"step": 1, "notes": ["a"]}, metadata={"x": 1})
    assert set(body) == {"id", "name", "state", "created_at", "updated_at", "expires_at"}
    assert len(body["id"]) == 36
    assert body["name"] == "plan"
    assert body["state"] == {"step": 1, "notes": ["a"]}  # `metadata` is ignored
    assert body["updated_at"] == body["created_at"]
    assert ts(body["expires_at"]) - ts(body["created_at"]) == DAY
    assert (await create(alice, "empty"))["state"] == {}
    assert (await create(alice, "null", state=None))["state"] == {}


async def test_create_validates_its_body(server: Server) -> None:
    alice = await server.agent("alice")
    assert_error(await alice.post("/v1/sessions", {}), 422, "missing_field")
    assert_error(await alice.post("/v1/sessions", {"state": {}}), 422, "missing_field")
    for name in ("", "   ", 5, None, ["x"]):
        assert_error(await alice.post("/v1/sessions", {"name": name}), 422, "invalid_string")
    for state in ("x", [1], 3, True):
        response = await alice.post("/v1/sessions", {"name": "n", "state": state})
        assert_error(response, 422, "invalid_object")
    big = {"blob": "x" * server.settings.max_metadata_bytes}
    assert_error(
        await alice.post("/v1/sessions", {"name": "n", "state": big}), 422, "invalid_object"
    )
    bad = await alice.http.post("/v1/sessions", content=b"{", headers={"X-API-Key": alice.key})
    assert_error(bad, 400, "invalid_json")
    assert_error(await alice.post("/v1/sessions", ["x"]), 422, "invalid_json_shape")
    assert (await alice.get("/v1/sessions")).json() == {"data": []}


async def test_every_session_route_needs_a_key(server: Server) -> None:
    alice = await server.agent("alice")
    session = await create(alice)
    path = f"/v1/sessions/{session['id']}"
    http = server.http
    for response in (
        await http.get("/v1/sessions"),
        await http.post("/v1/sessions", json={"name": "n"}),
        await http.get(path),
        await http.patch(path, json={"a": 1}),
        await http.delete(path),
    ):
        assert_error(response, 401, "unauthorized")


async def test_list_shows_the_callers_sessions_newest_first(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    first = await create(alice, "first")
    second = await create(alice, "second")
    await create(bob, "bobs")
    listed = (await alice.get("/v1/sessions")).json()
    assert listed == {"data": [second, first]}
    assert [s["name"] for s in (await bob.get("/v1/sessions")).json()["data"]] == ["bobs"]


async def test_get_is_per_key(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    session = await create(alice, state={"a": 1})
    got = await alice.get(f"/v1/sessions/{session['id']}")
    assert got.status_code == 200
    assert got.json() == session
    assert_error(await bob.get(f"/v1/sessions/{session['id']}"), 404, "session_not_found")
    assert_error(await alice.get("/v1/sessions/no-such-id"), 404, "session_not_found")


async def test_patch_merges_shallowly_and_keeps_the_expiry(server: Server) -> None:
    alice = await server.agent("alice")
    session = await create(alice, state={"a": 1, "nested": {"x": 1, "y": 2}})
    path = f"/v1/sessions/{session['id']}"
    patched = await alice.patch(path, {"state": {"b": 2, "nested": {"z": 3}}})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["state"] == {"a": 1, "b": 2, "nested": {"z": 3}}
    assert body["name"] == "plan"
    assert body["expires_at"] == session["expires_at"]
    assert body["created_at"] == session["created_at"]
    assert ts(body["updated_at"]) > ts(session["updated_at"])
    # without a `state` key the whole body is merged; `name` is not patchable
    whole = (await alice.patch(path, {"name": "renamed", "c": None})).json()
    assert whole["name"] == "plan"
    assert whole["state"] == {"a": 1, "b": 2, "nested": {"z": 3}, "name": "renamed", "c": None}
    assert (await alice.get(path)).json() == whole
    assert (await alice.patch(path, {})).json()["state"] == whole["state"]


async def test_patch_errors(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    session = await create(alice, state={"a": 1})
    path = f"/v1/sessions/{session['id']}"
    for state in ("x", [1], None, 2):  # upstream answered these with a 500
        assert_error(await alice.patch(path, {"state": state}), 422, "invalid_object")
    big = {"state": {"blob": "x" * server.settings.max_metadata_bytes}}
    assert_error(await alice.patch(path, big), 422, "invalid_object")
    assert_error(await bob.patch(path, {"state": {"b": 1}}), 404, "session_not_found")
    assert_error(await alice.patch("/v1/sessions/nope", {"a": 1}), 404, "session_not_found")
    bad = await alice.http.patch(path, content=b"[", headers={"X-API-Key": alice.key})
    assert_error(bad, 400, "invalid_json")
    assert_error(await alice.patch(path, [1]), 422, "invalid_json_shape")
    assert (await alice.get(path)).json()["state"] == {"a": 1}


async def test_delete(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    session = await create(alice)
    kept = await create(alice, "kept")
    path = f"/v1/sessions/{session['id']}"
    assert_error(await bob.delete(path), 404, "session_not_found")
    deleted = await alice.delete(path)
    assert deleted.status_code == 200
    assert deleted.json() == {"status": "deleted"}
    assert_error(await alice.get(path), 404, "session_not_found")
    assert_error(await alice.delete(path), 404, "session_not_found")
    assert_error(await alice.patch(path, {"a": 1}), 404, "session_not_found")
    assert (await alice.get("/v1/sessions")).json()["data"] == [kept]


async def test_sessions_survive_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path) as server:
        alice = await server.agent("alice")
        gone = await create(alice, "gone")
        kept = await create(alice, "kept", state={"a": 1})
        patched = (await alice.patch(f"/v1/sessions/{kept['id']}", {"b": 2})).json()
        await alice.delete(f"/v1/sessions/{gone['id']}")
    async with serving(nursery, tmp_path) as server:
        listed = await server.http.get("/v1/sessions", headers={"X-API-Key": alice.key})
        assert listed.json() == {"data": [patched]}


# -- the 24 h life, on the MockClock ------------------------------------------------


@asynccontextmanager
async def in_process(tmp_path: Path) -> AsyncIterator[Any]:
    """The app over an in-memory runtime, driven by quart's test client."""
    async with open_runtime(test_settings(tmp_path), in_memory=True) as hub:
        app = create_app(hub)
        async with app.test_app() as test_app:
            yield test_app.test_client()


@pytest.mark.parametrize("patch_first", [False, True])
async def test_a_session_leaves_the_list_24_hours_after_creation(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, patch_first: bool
) -> None:
    async with in_process(tmp_path) as client:
        minted = await client.post("/v1/keys", json={"agent_label": "alice"})
        alice = {"X-API-Key": (await minted.get_json())["key"]}
        created = await client.post("/v1/sessions", json={"name": "s"}, headers=alice)
        session = await created.get_json()
        path = f"/v1/sessions/{session['id']}"
        start = trio.current_time()
        await trio.sleep(23 * 3600)
        if patch_first:  # a write does not extend the life
            patched = await client.patch(path, json={"a": 1}, headers=alice)
            assert (await patched.get_json())["expires_at"] == session["expires_at"]
        await trio.sleep(3600 - 0.001)
        listed = await (await client.get("/v1/sessions", headers=alice)).get_json()
        assert [s["id"] for s in listed["data"]] == [session["id"]]
        await trio.sleep(0.001)
        assert trio.current_time() - start == pytest.approx(24 * 3600)
        listed = await (await client.get("/v1/sessions", headers=alice)).get_json()
        assert listed == {"data": []}
        # expired but not purged: still readable, patchable and deletable by id
        got = await client.get(path, headers=alice)
        assert got.status_code == 200
        assert (await got.get_json())["id"] == session["id"]
        assert (await client.patch(path, json={"b": 2}, headers=alice)).status_code == 200
        assert (await client.delete(path, headers=alice)).status_code == 200
        assert (await client.get(path, headers=alice)).status_code == 404
