"""``backchannel mcp`` over stdio, driven by the SDK's ``ClientSession`` on trio.

The bridge runs as a real subprocess against a real server on loopback.
Keys never touch the home directory: each test names its own key file.
"""

from __future__ import annotations

import stat
from pathlib import Path

import trio

from tests.conftest import Server
from tests.mcp_session import (
    base_env,
    call,
    check_membership_tools,
    fail,
    our_cli,
    parked_on,
    stdio_session,
)


def _env(server_url: str, key_file: Path, key: str | None = None) -> dict[str, str]:
    env = {
        **base_env(),
        "BACKCHANNEL_BASE_URL": server_url,
        "BACKCHANNEL_KEY_FILE": str(key_file),
        "BACKCHANNEL_AGENT_LABEL": f"stdio-{key_file.stem}",
    }
    if key is not None:
        env["BACKCHANNEL_API_KEY"] = key
    return env


async def test_a_whole_handoff_over_stdio(server: Server, tmp_path: Path) -> None:
    boss = await server.agent("boss")
    command, args = our_cli()
    worker_key_file = tmp_path / "worker.key"
    with trio.fail_after(60):
        async with (
            stdio_session(
                command,
                [*args, "mcp"],
                _env(server.url, tmp_path / "boss.key", boss.key),
                tmp_path / "boss.log",
            ) as a,
            stdio_session(
                command,
                [*args, "mcp"],
                _env(server.url, worker_key_file),
                tmp_path / "worker.log",
            ) as b,
        ):
            names = {t.name for t in (await b.list_tools()).tools}
            assert {"post_task", "await_result", "ack", "heartbeat", "claim_next"} <= names
            # the worker had no key: one was minted at first use and saved, private
            worker_key = worker_key_file.read_text()
            assert worker_key.startswith("bck_")
            assert stat.S_IMODE(worker_key_file.stat().st_mode) == 0o600
            me = await server.http.get("/v1/keys/me", headers={"X-API-Key": worker_key})
            assert me.json()["owner_id"] == "stdio-worker"

            posted = await call(a, "post_task", channel="jobs", content="translate")
            channel, task = posted["channel"], posted["message_id"]
            claimed = await call(b, "claim_next", channel=channel, actor="w", lease_seconds=30)
            assert claimed["claimed"]["id"] == task
            await call(b, "heartbeat", lease_token=claimed["lease_token"], lease_seconds=60)

            answer: dict[str, object] = {}

            async def wait_for_result() -> None:
                answer.update(await call(a, "await_result", channel=channel, message_id=task))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_for_result)
                await parked_on(server.http, boss.key, channel)
                assert not answer
                await call(b, "ack", message_id=task, actor="w")
            assert answer["status"] == "acknowledged"

            news = await call(a, "broadcast", channel="news", content="translated")
            seen = await call(b, "subscribe", channel=news["channel"], since="0")
            assert [m["content"] for m in seen["data"]] == ["translated"]
            await check_membership_tools(a, b, channel)
            code, _ = await fail(b, "release", message_id=task, actor="someone-else")
            assert code == "forbidden"


async def test_an_unreachable_server_is_a_tool_error(tmp_path: Path) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    command, args = our_cli()
    env = _env(f"http://127.0.0.1:{port}", tmp_path / "k.key", "bck_x.y")
    with trio.fail_after(30):
        async with stdio_session(command, [*args, "mcp"], env, tmp_path / "log") as session:
            code, text = await fail(session, "list_channels")
            assert code == "unavailable"
            assert f"127.0.0.1:{port}" in text


async def test_a_refused_key_is_the_servers_own_tool_error(server: Server, tmp_path: Path) -> None:
    command, args = our_cli()
    env = _env(server.url, tmp_path / "k.key", "bck_not.a-key")
    with trio.fail_after(30):
        async with stdio_session(command, [*args, "mcp"], env, tmp_path / "log") as session:
            code, text = await fail(session, "list_channels")
            assert code == "unauthorized", text
            assert text.startswith("Backchannel error [401 unauthorized]")
