"""The published ``backchannel-mcp`` 0.1.2 drives our server unchanged.

Its server runs as a real stdio MCP server from its own venv (``.venv-mcp1``,
built by ``make`` from ``requirements-mcp1.txt``): it needs ``mcp<2``, while
this venv has mcp 2.x for our own server. Our mcp 2.x ``ClientSession``
talks to it (protocol 2025-11-25 both sides). Its HTTP client
(``BackchannelClient``) is also driven directly, on asyncio in a worker
thread. Nothing is read from or written to the real home directory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
import trio
from backchannel_mcp.client import BackchannelClient, BackchannelError
from mcp.client.session import ClientSession

from tests.conftest import Server
from tests.mcp_session import base_env, stdio_session

MCP1_VENV = Path(__file__).resolve().parents[2] / ".venv-mcp1"
PUBLISHED_TOOLS = {
    "post_task",
    "broadcast",
    "claim_task",
    "subscribe",
    "await_result",
    "list_channels",
    "request_access",
    "issue_key",
}


def published_server() -> str:
    """The published server's command, from ``.venv-mcp1`` (``make`` builds it)."""
    command = MCP1_VENV / "bin" / "backchannel-mcp"
    if not command.exists():
        pytest.fail(f"{command} is missing: run `make .venv-mcp1/.installed-stamp`")
    return str(command)


async def _text(session: ClientSession, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def _tool(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A published tool's JSON answer (it reports errors as plain text, not JSON)."""
    text = await _text(session, tool, **arguments)
    assert not text.startswith("Backchannel error"), text
    payload: dict[str, Any] = json.loads(text)
    return payload


async def _in_asyncio(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return await trio.to_thread.run_sync(lambda: asyncio.run(scenario()))  # type: ignore[arg-type]


async def test_the_published_server_in_a_real_stdio_session(server: Server, tmp_path: Path) -> None:
    """Ten tool calls, as an MCP client makes them, against our server.

    The published server runs from ``.venv-mcp1`` (mcp<2, see
    ``requirements-mcp1.txt``); the client is our mcp 2.x ``ClientSession``.
    The boss has no key: the published server mints one at first use and
    saves it under ``$HOME``, which is a temporary directory here.
    """
    worker = await server.agent("compat-worker")
    env = {
        **base_env(),
        "HOME": str(tmp_path),
        "BACKCHANNEL_BASE_URL": server.url,
        "BACKCHANNEL_AGENT_LABEL": "compat-boss",
    }
    with trio.fail_after(90):
        async with stdio_session(published_server(), [], env, tmp_path / "mcp1.log") as boss:
            assert {t.name for t in (await boss.list_tools()).tools} == PUBLISHED_TOOLS
            posted = await _tool(boss, "post_task", channel="compat-jobs", content="summarise")
            channel, task = posted["channel"], posted["message_id"]
            assert posted["envelope"]["message"]["content"] == "summarise"
            assert (tmp_path / ".config/backchannel/key").read_text().startswith("bck_")

            worker_env = {**env, "BACKCHANNEL_API_KEY": worker.key}
            async with stdio_session(
                published_server(), [], worker_env, tmp_path / "worker.log"
            ) as work:
                claimed = await _tool(work, "claim_task", channel=channel, actor="compat-w")
                assert claimed["claimed"]["status"] == "claimed"
                assert claimed["claimed"]["message"]["claimed_by"]["name"] == "compat-w"
                empty = await _tool(work, "claim_task", channel=channel, actor="compat-x")
                assert empty["claimed"] is None
            # the published server has no ack tool: the worker acks over REST
            acked = await worker.post(f"/v1/messages/{task}/ack", {"actor": "compat-w"})
            assert acked.json()["status"] == "acknowledged"

            awaited = await _tool(
                boss, "await_result", channel=channel, message_id=task, timeout_seconds=10
            )
            assert awaited["status"] == "acknowledged"
            seen = await _tool(boss, "subscribe", channel=channel, since="0")
            assert [m["id"] for m in seen["data"]] == [task]
            listed = await _tool(boss, "list_channels")
            assert channel in [c["id"] for c in listed["data"]]
            shout = await _tool(boss, "broadcast", channel="compat-news", content="hello all")
            assert shout["message"]["content"] == "hello all"
            minted = await _tool(boss, "issue_key", agent_label="compat-helper")
            assert minted["key"].startswith("bck_")

            text = await _text(boss, "request_access", channel=channel, reason="please")
            assert json.loads(text)["status"] == "open", text  # an open channel needs none


async def test_mcp_client_idempotent_retries_and_conflicts(server: Server) -> None:
    producer = await server.agent("mcp-producer")
    rival = await server.agent("mcp-rival")
    channel = await producer.channel("mcp-queue", "claimable")
    message = await producer.send(channel["id"], "one job")

    async def scenario() -> dict[str, Any]:
        async with (
            BackchannelClient(api_key=producer.key, base_url=server.url) as mine,
            BackchannelClient(api_key=rival.key, base_url=server.url) as theirs,
        ):
            me = await mine.keys_me()
            first = await mine.ensure_actor("mcp-bot")
            second = await mine.ensure_actor("mcp-bot")  # replayed by Idempotency-Key
            claimed = await mine.claim_message(message["id"], actor="mcp-bot")
            retried = await mine.claim_message(message["id"], actor="mcp-bot")
            try:
                await theirs.claim_message(message["id"], actor="mcp-thief")
            except BackchannelError as exc:
                conflict = (exc.status, exc.payload["error"])
            both = await mine.ack_message(message["id"], actor="mcp-bot")
            return {
                "me": me,
                "ids": (first, second),
                "claimed": claimed,
                "retried": retried,
                "conflict": conflict,
                "acked": both,
            }

    result = await _in_asyncio(scenario)
    assert result["me"]["key_id"] == producer.key_id
    assert result["ids"][0] == result["ids"][1]
    assert result["claimed"]["status"] == "claimed"
    assert result["retried"] == result["claimed"]
    assert result["conflict"] == (409, "already_claimed")
    assert result["acked"]["status"] == "acknowledged"
