"""The in-server MCP endpoint at ``/mcp``, driven by the SDK's ``ClientSession``.

The server runs on hypercorn's trio worker with quart-trio, as in
production; the client runs on trio too. Each test is time-bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from hypercorn.trio import serve as hypercorn_serve
from mcp.shared.exceptions import MCPError

from backchannel.core.errors import ApiError
from backchannel.http.app import create_app
from backchannel.http.hypercorn_recycle import install_safe_recycle
from backchannel.http.hypercorn_tuning import tune_hypercorn
from backchannel.http.mcp.mount import McpMount
from backchannel.http.request import DRAIN_FACTOR
from backchannel.http.server import hypercorn_config
from backchannel.runtime.hub import Hub
from backchannel.runtime.service import open_runtime
from tests.conftest import Server, assert_error, serving, start_server, test_settings
from tests.mcp_session import call, check_membership_tools, fail, http_session, parked_on

PUBLISHED = {
    "post_task",
    "broadcast",
    "claim_task",
    "subscribe",
    "await_result",
    "list_channels",
    "request_access",
    "issue_key",
}
ADDED = {"ack", "release", "heartbeat", "claim_next", "create_channel", "invite"}


async def test_a_whole_handoff_between_two_agents(server: Server) -> None:
    boss = await server.agent("boss")
    worker = await server.agent("worker")
    with trio.fail_after(30):
        async with (
            http_session(server.url, {"X-API-Key": boss.key}) as a,
            http_session(server.url, {"Authorization": f"Bearer {worker.key}"}) as b,
        ):
            posted = await call(
                a, "post_task", channel="jobs", content="summarise", actor_label="boss"
            )
            channel, task = posted["channel"], posted["message_id"]
            assert posted["envelope"]["message"]["content"] == "summarise"

            claimed = await call(b, "claim_next", channel=channel, actor="w", lease_seconds=60)
            assert claimed["claimed"]["id"] == task
            assert claimed["claimed"]["claimed_by"]["name"] == "w"
            beat = await call(b, "heartbeat", lease_token=claimed["lease_token"], lease_seconds=120)
            assert beat["lease_token"] == claimed["lease_token"]
            assert beat["expires_at"] >= claimed["expires_at"]

            answer: dict[str, object] = {}

            async def wait_for_result() -> None:
                answer.update(await call(a, "await_result", channel=channel, message_id=task))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_for_result)
                await parked_on(server.http, boss.key, channel)
                assert not answer
                acked = await call(b, "ack", message_id=task, actor="w")
                assert acked["status"] == "acknowledged"
            assert answer["status"] == "acknowledged"
            assert answer["message"]["acknowledged_by"][0]["name"] == "w"  # type: ignore[index]

            news = await call(a, "broadcast", channel="news", content="done: summarise")
            seen = await call(b, "subscribe", channel=news["channel"], since="0")
            assert [m["content"] for m in seen["data"]] == ["done: summarise"]

            await check_membership_tools(a, b, channel)


async def test_tools_are_listed_with_exact_schemas(server: Server) -> None:
    agent = await server.agent()
    with trio.fail_after(10):
        async with http_session(server.url, {"X-API-Key": agent.key}) as session:
            listed = (await session.list_tools()).tools
            assert {t.name for t in listed} == PUBLISHED | ADDED
            for tool in listed:
                assert tool.input_schema["additionalProperties"] is False, tool.name
                assert tool.description
                assert tool.annotations is not None
                read_only = tool.name in {"subscribe", "await_result", "list_channels"}
                assert tool.annotations.read_only_hint is read_only, tool.name
            code, text = await fail(session, "post_task", channel="jobs", content="x", colour="red")
            assert code == "invalid_arguments"
            assert "colour" in text
            code, _ = await fail(session, "claim_task", channel="jobs")
            assert code == "invalid_arguments"
            code, _ = await fail(session, "subscribe", channel="jobs", limit=0)
            assert code == "invalid_arguments"


async def test_api_errors_are_tool_errors_with_our_code(server: Server) -> None:
    owner = await server.agent("owner")
    rival = await server.agent("rival")
    closed = await owner.channel("closed", "claimable", access="restricted")
    with trio.fail_after(20):
        async with (
            http_session(server.url, {"X-API-Key": owner.key}) as mine,
            http_session(server.url, {"X-API-Key": rival.key}) as theirs,
        ):
            posted = await call(mine, "post_task", channel="queue", content="one")
            await call(mine, "claim_task", channel=posted["channel"], actor="me")
            code, text = await fail(theirs, "release", message_id=posted["message_id"], actor="x")
            assert code == "forbidden", text
            code, text = await fail(theirs, "subscribe", channel=closed["id"])
            assert (code, "403") == ("channel_access_denied", text.split()[2][1:])
            code, _ = await fail(theirs, "ack", message_id="no-such-message")
            assert code == "message_not_found"
            code, _ = await fail(theirs, "await_result", channel=closed["id"], message_id="m")
            assert code == "channel_access_denied"
            code, _ = await fail(mine, "heartbeat", lease_token="nope")
            assert code == "lease_expired"
            code, _ = await fail(mine, "claim_next", channel="no-such-channel")
            assert code == "channel_not_found"
            news = (await call(mine, "broadcast", channel="news", content="hi"))["channel"]
            code, _ = await fail(mine, "claim_next", channel=news, wait=5)
            assert code == "channel_not_claimable"
            code, _ = await fail(mine, "claim_next", channel=news, lease_seconds=30)
            assert code == "channel_not_claimable"
            with pytest.raises(MCPError, match="Unknown tool"):
                await mine.call_tool("no_such_tool", {})


async def test_the_endpoint_authenticates_every_request(server: Server) -> None:
    with trio.fail_after(10):
        bare = await server.http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert_error(bare, 401, "unauthorized")
        bad = await server.http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Authorization": "Bearer bck_nothing.here"},
        )
        assert_error(bad, 401, "unauthorized")


async def test_idempotency_keys_replay_like_the_rest_routes(server: Server) -> None:
    agent = await server.agent()
    with trio.fail_after(15):
        async with http_session(server.url, {"X-API-Key": agent.key}) as session:
            first = await call(
                session, "post_task", channel="jobs", content="a", idempotency_key="k1"
            )
            again = await call(
                session, "post_task", channel="jobs", content="b", idempotency_key="k1"
            )
            assert again["message_id"] == first["message_id"]
            page = await call(session, "subscribe", channel=first["channel"])
            assert [m["content"] for m in page["data"]] == ["a"]
            code, _ = await fail(
                session, "ack", message_id=first["message_id"], idempotency_key="k1"
            )
            assert code == "idempotency_key_reused"
    # the same key over REST replays the MCP call's answer
    replay = await agent.post(
        "/v1/tasks/post", {"channel": "jobs", "content": "c"}, headers={"Idempotency-Key": "k1"}
    )
    assert replay.headers["X-Idempotent-Replay"] == "true"
    assert replay.json()["message"]["id"] == first["message_id"]


async def test_tool_calls_count_against_the_key_rate_limit(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, rate_limit=3, rate_limit_window=60) as server:
        agent = await server.agent()
        with trio.fail_after(15):
            async with http_session(server.url, {"X-API-Key": agent.key}) as session:
                for _ in range(3):
                    await call(session, "list_channels")
                code, text = await fail(session, "list_channels")
                assert code == "rate_limit_exceeded", text
                code, _ = await fail(session, "await_result", channel="sandbox", message_id="m")
                assert code == "rate_limit_exceeded"


async def test_claim_next_waits_for_a_task_and_await_result_times_out(server: Server) -> None:
    boss = await server.agent("boss")
    worker = await server.agent("worker")
    with trio.fail_after(20):
        async with (
            http_session(server.url, {"X-API-Key": boss.key}) as a,
            http_session(server.url, {"X-API-Key": worker.key}) as b,
        ):
            channel = (await call(a, "create_channel", name="lane", mode="claimable"))["id"]
            empty = await call(b, "claim_next", channel=channel, actor="w")
            assert empty["claimed"] is None
            got: dict[str, object] = {}

            async def take() -> None:
                got.update(await call(b, "claim_next", channel=channel, actor="w", wait=10))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(take)
                await trio.sleep(0.3)
                assert not got
                posted = await call(a, "post_task", channel="lane", content="late")
            assert got["claimed"]["id"] == posted["message_id"]  # type: ignore[index]
            started = trio.current_time()
            timeout = await call(
                a,
                "await_result",
                channel=channel,
                message_id=posted["message_id"],
                timeout_seconds=1,
            )
            assert timeout["status"] == "timeout"
            assert 0.9 < trio.current_time() - started < 5
            released = await call(b, "release", message_id=posted["message_id"], actor="w")
            assert released["status"] == "released"
            again = await call(b, "claim_task", channel=channel, actor="w2")
            assert again["claimed"]["id"] == posted["message_id"]
            listed = await call(b, "list_channels")
            assert channel in [c["id"] for c in listed["data"]]
            minted = await call(b, "issue_key", agent_label="helper")
            assert minted["key"].startswith("bck_")


async def test_a_parked_await_result_is_answered_when_the_server_stops(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    settings = test_settings(tmp_path / "data")
    running = await start_server(nursery, settings)
    async with httpx.AsyncClient(base_url=running.url) as http:
        agent = await Server(running.url, http, settings).agent()
    answer: dict[str, object] = {}
    with trio.fail_after(20):
        async with http_session(running.url, {"X-API-Key": agent.key}) as session:
            posted = await call(session, "post_task", channel="jobs", content="never done")

            async def wait_for_result() -> None:
                answer.update(
                    await call(
                        session,
                        "await_result",
                        channel=posted["channel"],
                        message_id=posted["message_id"],
                        timeout_seconds=600,
                    )
                )

            async with trio.open_nursery() as waiting:
                waiting.start_soon(wait_for_result)
                await trio.sleep(0.3)
                started = trio.current_time()
                await running.stopped()  # wakes the park; HTTP drains, then the MCP task group ends
            assert answer["status"] == "timeout"
            assert trio.current_time() - started < settings.graceful_timeout_seconds + 2


async def test_waits_keep_a_gentle_pace_when_long_poll_is_off(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, longpoll_enabled=False, rate_limit=12) as server:
        agent = await server.agent()
        with trio.fail_after(20):
            async with http_session(server.url, {"X-API-Key": agent.key}) as session:
                channel = (await call(session, "create_channel", name="q", mode="claimable"))["id"]
                # with long-poll off a wait does not park: claim-next answers at once
                empty = await call(session, "claim_next", channel=channel, actor="w", wait=3)
                assert empty["claimed"] is None
                # await_result reads about once a second: not a spin (rate_limit=12 holds)
                posted = await call(session, "post_task", channel="q", content="x")
                started = trio.current_time()
                timeout = await call(
                    session,
                    "await_result",
                    channel=channel,
                    message_id=posted["message_id"],
                    timeout_seconds=2,
                )
                assert timeout["status"] == "timeout"
                assert 1.9 < trio.current_time() - started < 5


@asynccontextmanager
async def app_and_hub(tmp_path: Path) -> AsyncIterator[tuple[str, Hub, McpMount]]:
    """A served app whose hub the test can watch (tuned hypercorn, as in production)."""
    settings = test_settings(tmp_path / "data")
    tune_hypercorn()
    install_safe_recycle(settings.max_body_bytes * DRAIN_FACTOR)
    async with open_runtime(settings, in_memory=True) as hub:
        app = create_app(hub)
        endpoint: McpMount = app.extensions["backchannel.mcp"]
        async with endpoint.running(), trio.open_nursery() as nursery:
            config = hypercorn_config(settings)
            binds = await nursery.start(partial(hypercorn_serve, app, config))
            yield binds[0], hub, endpoint
            nursery.cancel_scope.cancel()


async def _parked_task(url: str) -> tuple[str, dict[str, object]]:
    """A fresh key and a JSON-RPC ``await_result`` call for a task nobody will ack."""
    async with httpx.AsyncClient(base_url=url) as http:
        key = (await http.post("/v1/keys", json={"agent_label": "gone"})).json()["key"]
        posted = await http.post(
            "/v1/tasks/post", json={"channel": "j", "content": "c"}, headers={"X-API-Key": key}
        )
    arguments = {
        "channel": posted.json()["channel"],
        "message_id": posted.json()["message"]["id"],
        "timeout_seconds": 600,
    }
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "await_result", "arguments": arguments},
    }
    return key, call


async def test_a_client_that_leaves_takes_its_parked_tool_call_with_it(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with app_and_hub(tmp_path) as (url, hub, endpoint):
            key, call = await _parked_task(url)
            headers = {"X-API-Key": key, "Accept": "application/json, text/event-stream"}
            async with httpx.AsyncClient(base_url=url, headers=headers) as http:
                async with trio.open_nursery() as client:
                    client.start_soon(partial(http.post, "/mcp", json=call))
                    await trio.testing.wait_all_tasks_blocked(0.1)
                    assert hub.parked == 1
                    client.cancel_scope.cancel()  # the client gives up and hangs up
            await trio.testing.wait_all_tasks_blocked(0.1)
            assert hub.parked == 0

            # on a server that does not report closed connections, http.disconnect does it
            body = json.dumps(call).encode()
            inbox: list[dict[str, object]] = [{"type": "http.request", "body": body}]
            left = trio.Event()

            async def receive() -> dict[str, object]:
                if inbox:
                    return inbox.pop()
                await left.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, object]) -> None:
                raise AssertionError(f"nothing is answered to a client that left: {message}")

            scope = {
                "type": "http",
                "method": "POST",
                "path": "/mcp",
                "query_string": b"",
                "headers": [
                    (b"x-api-key", key.encode()),
                    (b"content-type", b"application/json"),
                    (b"accept", b"application/json, text/event-stream"),
                    (b"content-length", b"%d" % len(body)),
                ],
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 2),
                "scheme": "http",
                "http_version": "1.1",
                "root_path": "",
                "raw_path": b"/mcp",
            }
            async with trio.open_nursery() as nursery:
                nursery.start_soon(endpoint.handle, scope, receive, send)
                await trio.testing.wait_all_tasks_blocked(0.1)
                assert hub.parked == 1
                left.set()
            await trio.testing.wait_all_tasks_blocked(0.1)  # the tool winds down in its own task
            assert hub.parked == 0


def test_starting_a_server_does_not_import_the_mcp_sdk() -> None:
    """The SDK costs about a second to import: it is loaded after serving begins."""
    probe = "import sys, backchannel.cli, backchannel.http.server; print('mcp' in sys.modules)"
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "False"


async def test_the_mcp_endpoint_is_built_once_for_concurrent_first_callers(
    tmp_path: Path,
) -> None:
    settings = test_settings(tmp_path / "data")
    async with open_runtime(settings, in_memory=True) as hub:
        mount: McpMount = create_app(hub).extensions["backchannel.mcp"]
        with pytest.raises(ApiError) as outside:
            await mount.endpoint()
        assert outside.value.status == 503
        got: list[object] = []

        async def first() -> None:
            got.append(await mount.endpoint())

        async with mount.running(warm=False), trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(first)
        assert len(got) == 5
        assert all(e is got[0] for e in got)


async def test_an_mcp_sdk_that_fails_to_load_leaves_the_server_up(tmp_path: Path) -> None:
    """Out of descriptors (say) while the SDK loads: /mcp is 503 and a later call retries."""
    settings = test_settings(tmp_path / "data")
    async with open_runtime(settings, in_memory=True) as hub:
        mount: McpMount = create_app(hub).extensions["backchannel.mcp"]
        mount.module = "backchannel.http.mcp.no_such_module"
        async with mount.running(warm=True, threaded=False):
            await trio.lowlevel.checkpoint()  # the warm-up runs and fails, logged
            with pytest.raises(ApiError) as failed:
                await mount.endpoint()
            assert failed.value.status == 503
            mount.module = "backchannel.http.mcp.endpoint"
            assert await mount.endpoint() is await mount.endpoint()
