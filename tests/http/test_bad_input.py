"""Bad input never gives a 500 and never changes state (contract §0.8, §2.1, §3.1, §4).

Each test builds a small world, throws malformed requests at it, checks that
every answer is a 4xx in the standard envelope with the exact code, and then
checks, by listing, that nothing changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from tests.conftest import Agent, Server, assert_error, raw_http

JSON = {"Content-Type": "application/json"}


def mismatch(response: httpx.Response, status: int, code: str) -> str | None:
    """Why ``response`` is not the expected error envelope, or None if it is."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} non-JSON {response.text[:80]!r}"
    if response.status_code != status or not isinstance(body, dict) or body.get("error") != code:
        return f"{response.status_code} {response.text[:160]}"
    if body.get("request_id") != response.headers.get("X-Request-Id"):
        return "request_id does not match X-Request-Id"
    if not str(body.get("documentation_url", "")).endswith(code.replace("_", "-")):
        return "bad documentation_url"
    return None


@dataclass
class World:
    server: Server
    alice: Agent
    bob: Agent
    channel: str
    free: str  # an unclaimed message
    held: str  # a message alice holds with a lease
    token: str


async def make_world(server: Server) -> World:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    free = (await alice.send(channel, "free"))["id"]
    held = (await alice.send(channel, "held"))["id"]
    leased = await alice.post(f"/v1/messages/{held}/claim-with-lease", {"actor": "w"})
    assert leased.status_code == 200, leased.text
    return World(server, alice, bob, channel, free, held, leased.json()["lease_token"])


async def observe(world: World) -> Any:
    """Everything a client can see that the requests under test could change."""
    alice = world.alice
    channels = (await alice.get("/v1/channels", params={"limit": 100})).json()
    messages = (await alice.get(f"/v1/channels/{world.channel}/messages")).json()
    history = (await alice.get(f"/v1/channels/{world.channel}/history")).json()
    keys = [(await agent.get("/v1/keys/me")).json() for agent in (world.alice, world.bob)]
    minted = await world.server.http.post("/v1/keys", json={"agent_label": "alice"})
    assert minted.status_code == 409  # alice's label is still taken by the one key
    return channels, messages, history, keys


def body_routes(world: World) -> list[tuple[str, bool]]:
    return [
        ("/v1/keys", False),
        ("/v1/channels", True),
        (f"/v1/channels/{world.channel}/messages", True),
        (f"/v1/messages/{world.free}/claim", True),
        (f"/v1/messages/{world.free}/claim-with-lease", True),
        (f"/v1/leases/{world.token}/heartbeat", True),
        (f"/v1/messages/{world.held}/release", True),
        (f"/v1/messages/{world.free}/ack", True),
        ("/v1/actors", True),
    ]


async def test_bodies_that_are_not_json_objects(server: Server) -> None:
    world = await make_world(server)
    before = await observe(world)
    bodies: list[tuple[bytes, int, str]] = [
        (b"not json", 400, "invalid_json"),
        (b'{"content": "x",}', 400, "invalid_json"),
        (b'{"content": ', 400, "invalid_json"),
        (b'{"content": "\xff\xfe"}', 400, "invalid_json"),  # invalid UTF-8
        (b"\xef\xbb\xbf\xff", 400, "invalid_json"),
        (b"[" * 100_000, 400, "invalid_json"),  # deeper than any parser recursion
        (b"[1, 2]", 422, "invalid_json_shape"),
        (b"[]", 422, "invalid_json_shape"),
        (b'"a string"', 422, "invalid_json_shape"),
        (b"42", 422, "invalid_json_shape"),
        (b"null", 422, "invalid_json_shape"),
        (b"true", 422, "invalid_json_shape"),
    ]
    failures = []
    for path, keyed in body_routes(world):
        headers = {**JSON, "X-API-Key": world.alice.key} if keyed else JSON
        for raw, status, code in bodies:
            response = await server.http.post(path, content=raw, headers=headers)
            problem = mismatch(response, status, code)
            if problem:
                failures.append((path, raw[:30], problem))
    assert not failures, "\n".join(map(str, failures))
    assert await observe(world) == before


async def test_non_standard_json_constants_are_invalid_json(server: Server) -> None:
    """``NaN`` and ``Infinity`` are not JSON (RFC 8259): refused, never stored or echoed."""
    world = await make_world(server)
    before = await observe(world)
    path = f"/v1/channels/{world.channel}/messages"
    headers = {**JSON, "X-API-Key": world.alice.key}
    failures = []
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        raw = b'{"content": "x", "metadata": {"v": ' + constant + b"}}"
        problem = mismatch(
            await server.http.post(path, content=raw, headers=headers), 400, "invalid_json"
        )
        if problem:
            failures.append((constant, problem))
    assert not failures, "\n".join(map(str, failures))
    assert await observe(world) == before


async def test_lone_surrogate_escapes_are_invalid_json(server: Server) -> None:
    """``"\\ud800"`` parses to a string that is not Unicode text: refused, never a 500."""
    world = await make_world(server)
    before = await observe(world)
    messages = f"/v1/channels/{world.channel}/messages"
    cases: list[tuple[str, bytes, bool]] = [
        (messages, rb'{"content": "x\ud800y"}', True),
        (messages, rb'{"content": "ok", "metadata": {"k\udfff": 1}}', True),
        (messages, rb'{"content": "ok", "metadata": {"k": ["\udc00"]}}', True),
        (messages, rb'{"content": "ok", "actor_label": "\ud83d"}', True),
        ("/v1/channels", rb'{"name": "n\ud800", "mode": "claimable"}', True),
        ("/v1/channels", rb'{"name": "n", "mode": "claimable", "description": "\ud800"}', True),
        ("/v1/keys", rb'{"agent_label": "label\ud800"}', False),
        ("/v1/actors", rb'{"name": "n\ud800"}', True),
        (f"/v1/messages/{world.free}/claim", rb'{"actor": "w\ud800"}', True),
        (f"/v1/messages/{world.free}/ack", rb'{"actor": "w\ud800"}', True),
    ]
    failures = []
    for path, raw, keyed in cases:
        headers = {**JSON, "X-API-Key": world.alice.key} if keyed else JSON
        response = await server.http.post(path, content=raw, headers=headers)
        problem = mismatch(response, 400, "invalid_json")
        if problem:
            failures.append((path.rsplit("/", 1)[-1], raw, problem))
    assert not failures, "\n".join(map(str, failures))
    # a proper surrogate pair is fine
    paired = await server.http.post(
        messages,
        content=rb'{"content": "smile \ud83d\ude42"}',
        headers={**JSON, "X-API-Key": world.alice.key},
    )
    assert paired.status_code == 201, paired.text
    assert paired.json()["message"]["content"] == "smile \U0001f642"
    assert (await world.alice.delete(f"/v1/messages/{paired.json()['message']['id']}")).is_success
    after = await observe(world)
    assert after[0] == before[0]  # channels
    assert after[1] == before[1]  # live messages
    assert after[3] == before[3]  # keys


async def test_numbers_the_server_cannot_store_are_refused(server: Server) -> None:
    """Integers beyond 64 bits are a 4xx, not a 500, wherever a body stores JSON."""
    world = await make_world(server)
    before = await observe(world)
    huge = 10**30
    cases = [
        (f"/v1/channels/{world.channel}/messages", {"content": "x", "metadata": {"n": huge}}),
        (f"/v1/channels/{world.channel}/messages", {"content": "x", "metadata": {"n": -huge}}),
        ("/v1/channels", {"name": "n", "mode": "claimable", "metadata_schema": {"maximum": huge}}),
        ("/v1/actors", {"name": "n", "metadata": {"n": huge}}),
    ]
    failures = []
    for path, body in cases:
        response = await world.alice.post(path, body)
        if not 400 <= response.status_code < 500 or response.json().get("error") in (
            None,
            "internal_server_error",
        ):
            failures.append((path, response.status_code, response.text[:120]))
    assert not failures, "\n".join(map(str, failures))
    assert await observe(world) == before


async def test_wrong_types_for_every_field(server: Server) -> None:
    world = await make_world(server)
    before = await observe(world)
    c, free, held, token = world.channel, world.free, world.held, world.token
    channel = {"name": "n", "mode": "claimable"}
    post = {"content": "x"}
    cases: list[tuple[str, dict[str, Any], int, str]] = []

    def add(path: str, base: dict[str, Any], name: str, values: list[Any], code: str) -> None:
        for value in values:
            cases.append((path, {**base, name: value}, 422, code))

    scalar_junk: list[Any] = [7, 1.5, True, [], ["a"], {}, {"a": 1}]
    not_int: list[Any] = [1.5, True, False, [], ["a"], {}, {"a": 1}]
    add("/v1/keys", {}, "agent_label", [*scalar_junk, None, "", "  "], "missing_field")
    add("/v1/channels", channel, "name", [*scalar_junk, None, "", " "], "invalid_string")
    add("/v1/channels", channel, "mode", [*scalar_junk, None, "", "Claimable"], "invalid_mode")
    add("/v1/channels", channel, "access", [*scalar_junk, None, "", "OPEN"], "invalid_access")
    add("/v1/channels", channel, "discoverable", [7, 0, "true", [], {}], "invalid_discoverable")
    add("/v1/channels", channel, "description", [*scalar_junk, "", " "], "invalid_string")
    add(
        "/v1/channels", channel, "metadata_schema", [7, 1.5, True, "x", [], ["a"]], "invalid_object"
    )
    add("/v1/channels", channel, "pinned_message", [*scalar_junk, ""], "invalid_string")
    add("/v1/channels", channel, "related_channels", [7, True, "x", {}], "invalid_related_channels")
    add("/v1/channels", channel, "related_channels", [[7], [""], [[]], [{}]], "invalid_string")
    add("/v1/channels", channel, "webhook_url", [*scalar_junk, ""], "invalid_string")
    add("/v1/channels", channel, "webhook_secret", [*scalar_junk, ""], "invalid_string")
    add(
        "/v1/channels",
        channel,
        "ttl_seconds",
        [*not_int, 7, None, "600", 600.0],
        "invalid_ttl_seconds",
    )
    add(
        "/v1/channels",
        channel,
        "retention_days",
        [*not_int, None, "7", 7.0],
        "invalid_retention_days",
    )
    add("/v1/channels", channel, "max_messages", [*not_int, "5", 5.0], "invalid_max_messages")
    add(
        "/v1/channels",
        channel,
        "max_writes_per_minute",
        [*not_int, "5", 5.0],
        "invalid_max_writes_per_minute",
    )
    messages = f"/v1/channels/{c}/messages"
    add(messages, post, "content", [*scalar_junk, None, "", "   "], "invalid_string")
    add(messages, post, "metadata", [7, 1.5, True, "x", [], ["a"]], "invalid_object")
    add(messages, post, "actor_label", [*scalar_junk, "", " "], "invalid_string")
    add(messages, post, "actor", [*scalar_junk, "", " "], "invalid_string")
    add(messages, post, "mentions", [7, 1.5, True, "x", {}, {"a": 1}], "invalid_mentions")
    add(messages, post, "mentions", [[7], [""], [[]], [{}], [True]], "invalid_string")
    for verb in ("claim", "claim-with-lease", "ack"):
        add(
            f"/v1/messages/{free}/{verb}",
            {},
            "actor",
            [7, 1.5, True, [], ["a"], {}],
            "invalid_string",
        )
        add(
            f"/v1/messages/{free}/{verb}",
            {},
            "metadata",
            [7, True, "x", [], ["a"]],
            "invalid_object",
        )
    add(f"/v1/messages/{held}/release", {}, "actor", [7, 1.5, True, [], {}], "invalid_string")
    lease_junk: list[Any] = [*not_int, None, "300", 300.0, 300.5, 4, 3601, -1, 0]
    add(
        f"/v1/messages/{free}/claim-with-lease",
        {},
        "lease_seconds",
        lease_junk,
        "invalid_lease_seconds",
    )
    add(f"/v1/leases/{token}/heartbeat", {}, "lease_seconds", lease_junk, "invalid_lease_seconds")
    add("/v1/actors", {"name": "n"}, "name", [*scalar_junk, None, "", " "], "invalid_string")
    add("/v1/actors", {"name": "n"}, "description", [*scalar_junk, "", " "], "invalid_string")
    add("/v1/actors", {"name": "n"}, "metadata", [7, True, "x", [], ["a"]], "invalid_object")
    cases.append(("/v1/actors", {}, 422, "missing_field"))
    cases.append(("/v1/actors", {"description": "d"}, 422, "missing_field"))
    cases.append((messages, {"metadata": {}}, 422, "missing_field"))

    failures = []
    for path, body, status, code in cases:
        if path == "/v1/keys":
            response = await server.http.post(path, json=body)
        else:
            response = await world.alice.post(path, body)
        problem = mismatch(response, status, code)
        if problem:
            failures.append((path, body, problem))
    assert not failures, "\n".join(map(str, failures))
    assert len(cases) > 250
    assert await observe(world) == before


async def test_bad_query_values(server: Server) -> None:
    world = await make_world(server)
    before = await observe(world)
    alice = world.alice
    messages = f"/v1/channels/{world.channel}/messages"
    history = f"/v1/channels/{world.channel}/history"
    cases: list[tuple[str, dict[str, str], int, str, str | None]] = []
    for path in (messages, history):
        for raw in ("abc", "1.5", "1e2", "0x10", "five", "\ufffd", "9" * 40):
            cases.append((path, {"limit": raw}, 400, "invalid_query", "limit"))
        for raw in ("0", "101", "-1", "1000"):
            cases.append((path, {"limit": raw}, 422, "invalid_limit", None))
    for raw in ("abc", "1.5", "0"):
        cases.append(
            ("/v1/channels", {"limit": raw if raw != "0" else "x0"}, 400, "invalid_query", "limit")
        )
    for raw in (
        "-1",
        "-0.5",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1e9",
        "1e400",
        "3601",
        "abc",
        "1,5",
        "0x10",
    ):
        cases.append((messages, {"wait": raw}, 400, "invalid_query", "wait"))
    for raw in ("bogus", "CLAIMED", "unclaimed,claimed", "all"):
        cases.append((messages, {"status": raw}, 422, "invalid_status", None))

    failures = []
    for path, params, status, code, parameter in cases:
        response = await alice.get(path, params=params)
        problem = mismatch(response, status, code)
        if problem is None and parameter is not None:
            if response.json().get("parameter") != parameter:
                problem = f"parameter is {response.json().get('parameter')!r}"
        if problem:
            failures.append((path.rsplit("/", 1)[-1], params, problem))
    assert not failures, "\n".join(map(str, failures))

    # accepted edge values: wait is clamped to the cap, but a non-empty page answers at once
    with trio.fail_after(5):
        fast = await alice.get(messages, params={"wait": "3600", "limit": " 7 "})
    assert fast.status_code == 200
    assert fast.json()["limit"] == 7
    assert len(fast.json()["data"]) == 2
    # invalid UTF-8 in the query string or path is a 4xx too
    raw_query = await server.http.get(f"{messages}?limit=%FF%FE", headers={"X-API-Key": alice.key})
    assert_error(raw_query, 400, "invalid_query")
    raw_path = await server.http.get("/v1/channels/%FF%FE", headers={"X-API-Key": alice.key})
    assert_error(raw_path, 404, "channel_not_found")
    assert await observe(world) == before


async def test_unknown_routes_and_wrong_methods_are_plain_404(server: Server) -> None:
    world = await make_world(server)
    before = await observe(world)
    alice = world.alice
    c, m = world.channel, world.free
    requests: list[tuple[str, str]] = [
        ("GET", "/nope"),
        ("GET", "/v1/nope"),
        ("POST", "/v1/nope"),
        ("GET", "/v1/channels/a/b/c"),
        ("GET", "/v2/channels"),
        ("PUT", "/v1/channels"),
        ("DELETE", "/v1/channels"),
        ("PATCH", "/v1/keys/me"),
        ("POST", "/v1/keys/me"),
        ("GET", "/v1/keys"),
        ("POST", "/health"),
        ("PUT", f"/v1/channels/{c}/messages"),
        ("DELETE", f"/v1/channels/{c}/messages"),
        ("POST", f"/v1/channels/{c}/history"),
        ("GET", f"/v1/messages/{m}"),
        ("GET", f"/v1/messages/{m}/claim"),
        ("PUT", f"/v1/messages/{m}/ack"),
        ("GET", f"/v1/leases/{world.token}/heartbeat"),
        ("DELETE", f"/v1/leases/{world.token}"),
        ("GET", "/v1/actors"),
        ("DELETE", "/v1/actors/x"),
    ]
    failures: list[Any] = []
    for method, path in requests:
        for headers in ({"X-API-Key": alice.key}, {}):
            response = await server.http.request(method, path, headers=headers)
            try:
                body = response.json()
            except ValueError:
                body = None
            if response.status_code != 404 or not isinstance(body, dict):
                failures.append((method, path, response.status_code, response.text[:80]))
            elif set(body) != {"error", "message"} or body["error"] != "not_found":
                failures.append((method, path, body))
    assert not failures, "\n".join(map(str, failures))
    assert await observe(world) == before


async def test_malformed_api_keys_change_nothing(server: Server) -> None:
    world = await make_world(server)
    before = await observe(world)
    bad_keys: list[str | bytes] = [
        "",
        "x",
        "no-dot",
        ".",
        f"{world.alice.key_id}.",
        f".{world.alice.key.split('.', 1)[1]}",
        world.alice.key[:-1],
        world.alice.key + ".extra",
        b"\xff\xfe.\xfd",
        "bck_" + "a" * 1000 + "." + "b" * 1000,
    ]
    failures = []
    for bad in bad_keys:
        for path, body in (
            ("/v1/channels", {"name": "n", "mode": "claimable"}),
            (f"/v1/channels/{world.channel}/messages", {"content": "x"}),
            (f"/v1/messages/{world.free}/claim", {}),
            (f"/v1/leases/{world.token}/heartbeat", {}),
        ):
            raw = bad if isinstance(bad, bytes) else bad.encode()
            response = await server.http.post(path, json=body, headers={b"X-API-Key": raw})
            problem = mismatch(response, 401, "unauthorized")
            if problem:
                failures.append((bad[:20], path, problem))
    assert not failures, "\n".join(map(str, failures))
    assert await observe(world) == before


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _oversized(server: Server) -> bytes:
    filler = "x" * (server.settings.max_body_bytes + 10)
    return ('{"content": "x", "metadata": {"pad": "' + filler + '"}}').encode()


async def test_oversized_bodies_are_413(server: Server) -> None:
    world = await make_world(server)
    before = await observe(world)
    raw = _oversized(server)
    headers = {**JSON, "X-API-Key": world.alice.key}
    paths = [
        f"/v1/channels/{world.channel}/messages",
        "/v1/channels",
        f"/v1/messages/{world.free}/claim",
        "/v1/actors",
        "/v1/keys",
    ]
    for path in paths:
        # a fresh connection each time: see the keep-alive test below
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            with trio.fail_after(10):
                sized = await http.post(path, content=raw, headers=headers)
            assert_error(sized, 413, "body_too_large")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            with trio.fail_after(10):
                chunked = await http.post(path, content=_chunks(raw, 65_536), headers=headers)
            assert_error(chunked, 413, "body_too_large")
    assert await observe(world) == before


async def test_a_keep_alive_connection_keeps_working_after_a_413(server: Server) -> None:
    """A client that retries an oversized post on its pooled connection gets 413 again."""
    alice = await server.agent("alice")
    channel = (await alice.channel("c", "broadcast"))["id"]
    raw = _oversized(server)
    headers = {**JSON, "X-API-Key": alice.key}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for attempt in range(2):
            for _ in range(2):  # the retry of the same oversized post, then a fixed one
                with trio.fail_after(5):
                    response = await http.post(
                        f"/v1/channels/{channel}/messages", content=raw, headers=headers
                    )
                assert_error(response, 413, "body_too_large")
            with trio.fail_after(5):
                small = await http.post(
                    f"/v1/channels/{channel}/messages",
                    json={"content": f"small {attempt}"},
                    headers=headers,
                )
            assert small.status_code == 201, small.text


async def test_a_non_integer_content_length_is_400_in_the_envelope(server: Server) -> None:
    """Contract §2.1: 400 ``invalid_content_length``, raised even before routing."""
    received = await raw_http(
        server.url,
        b"POST /v1/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: abc\r\nConnection: close\r\n\r\n{}",
    )
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    body = httpx.Response(400, content=payload).json()
    assert body["error"] == "invalid_content_length"
    assert "request_id" in body
