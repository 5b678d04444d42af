"""/metrics, /status, channel and account metrics, request logs (contract §2.11)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import httpx
import pytest
import trio

from backchannel.http.app import create_app
from backchannel.logformat import JsonFormatter
from backchannel.runtime.journal import MemoryJournal
from backchannel.runtime.service import open_runtime
from tests.conftest import Server, assert_error, serving, test_settings
from tests.storage.test_crash_recovery import ServerProcess


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        assert match is not None, line
        if match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if found == labels:
            return float(match[3])
    raise AssertionError(f"no sample {name} {labels}")


async def test_metrics_count_requests_by_route_template(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("counted")
    for _ in range(3):
        await alice.send(channel["id"])
    await server.http.get("/no/such/path/12345678")
    response = await server.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    post = {"method": "POST", "path": "/v1/channels/{identifier}/messages", "status": "201"}
    assert sample(text, "backchannel_requests_total", **post) == 3
    assert sample(text, "backchannel_requests_total", method="GET", path="other", status="404")
    assert "/no/such/path" not in text  # unmatched paths never become labels
    hist = {"method": "POST", "path": "/v1/channels/{identifier}/messages"}
    assert sample(text, "backchannel_request_duration_seconds_count", **hist) == 3
    assert sample(text, "backchannel_request_duration_seconds_bucket", le="+Inf", **hist) == 3
    assert "# TYPE backchannel_request_duration_seconds histogram" in text
    assert sample(text, "backchannel_key_mints_total") == 1
    assert sample(text, "backchannel_channel_actors") == 1  # ours, just used
    assert sample(text, "backchannel_passive_channels") == 1  # the idle sandbox
    assert sample(text, "backchannel_parked_waiters") == 0
    assert sample(text, "backchannel_actor_inbox_depth") == 0
    assert sample(text, "backchannel_journal_batch_records_count") >= 4
    assert sample(text, "backchannel_journal_fsync_seconds_count") >= 4
    assert sample(text, "backchannel_webhook_attempts_total", outcome="delivered") == 0
    assert sample(text, "backchannel_webhook_pending") == 0


async def test_parked_waiters_show_in_metrics(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("waiting")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: alice.get(f"/v1/channels/{channel['id']}/messages", params={"wait": "5"})
        )
        with trio.fail_after(5):
            while True:
                text = (await server.http.get("/metrics")).text
                if sample(text, "backchannel_parked_waiters") == 1:
                    break
                await trio.sleep(0.02)
        await alice.send(channel["id"])


async def test_metrics_can_be_turned_off(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, metrics_enabled=False) as server:
        assert_error(await server.http.get("/metrics"), 404, "not_found")


async def test_status_and_status_page(server: Server) -> None:
    status = await server.http.get("/status")
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "operational"
    assert body["health_url"] == f"{server.url}/health"
    assert set(body) == {
        "status",
        "version",
        "instance_kind",
        "updated_at",
        "availability",
        "health_url",
        "self_host_url",
        "public_minting_enabled",
        "channels",
        "live_messages",
        "parked_waiters",
        "active_channels",
        "passive_channels",
    }
    assert (body["channels"], body["live_messages"], body["parked_waiters"]) == (1, 0, 0)
    assert (body["active_channels"], body["passive_channels"]) == (0, 1)  # the idle sandbox
    agent = await server.agent()
    channel = await agent.channel("counted")
    await agent.send(channel["id"])
    counted = (await server.http.get("/status")).json()
    assert (counted["channels"], counted["live_messages"]) == (2, 1)
    assert (counted["active_channels"], counted["passive_channels"]) == (1, 1)  # used: running
    page = await server.http.get("/status.html")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "Operational" in page.text
    assert "Webhook sender" in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert page.headers["X-Frame-Options"] == "DENY"
    for path in ("/status.html", "/metrics", "/status"):
        response = await server.http.get(path)
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        preflight = await server.http.options(path)
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Methods"].startswith("GET, POST")


async def test_channel_metrics_count_by_state(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("work")
    first = await alice.send(channel["id"])
    second = await alice.send(channel["id"])
    await alice.send(channel["id"])
    claimed = await alice.post(f"/v1/messages/{first['id']}/claim-with-lease", {})
    assert claimed.status_code == 200, claimed.text
    await alice.post(f"/v1/messages/{second['id']}/claim", {})
    await alice.post(f"/v1/messages/{second['id']}/ack", {})
    bob = await server.agent("bob")
    response = await bob.get(f"/v1/channels/{channel['id']}/metrics")
    assert response.status_code == 200
    body = response.json()
    assert body["channel_id"] == channel["id"]
    assert body["message_counts"] == {"total": 3, "unclaimed": 1, "claimed": 2, "acknowledged": 1}
    assert (body["unclaimed"], body["claimed"], body["leased"], body["waiters"]) == (1, 2, 1, 0)
    assert isinstance(body["avg_claim_to_ack_ms"], int)
    assert body["computed_at"]


async def test_observability_metrics_and_account_usage(server: Server) -> None:
    alice = await server.agent("alice")
    channel = await alice.channel("mine")
    message = await alice.send(channel["id"])
    await alice.send(channel["id"])
    await alice.post(f"/v1/messages/{message['id']}/claim", {})
    body = (await alice.get("/v1/observability/metrics")).json()
    assert body == {
        "key_id": alice.key_id,
        "channels_owned": 1,
        "messages_in_owned_channels": 2,
        "messages_claimed_in_owned_channels": 1,
        "active_sessions": 0,
    }
    usage = (await alice.get("/account/usage")).json()
    assert usage["key_id"] == alice.key_id
    assert usage["plan"] == "free"
    assert usage["rate_limit"] == {"requests_per_window": 0, "window_seconds": 60}
    assert usage["note"].startswith("Watch X-RateLimit-Remaining")
    assert_error(await server.http.get("/account/usage"), 401, "unauthorized")


async def test_one_log_line_per_request(
    nursery: trio.Nursery,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="backchannel.access")
    for fmt in ("text", "json"):
        async with serving(nursery, tmp_path / fmt, log_format=fmt) as server:
            alice = await server.agent("alice")
            capsys.readouterr()
            response = await alice.get("/v1/keys/me")
            await server.http.get("/llms.txt")
            lines: list[str] = []
            for _ in range(100):  # written in batches, within 0.2 s
                lines += [x for x in capsys.readouterr().err.splitlines() if "access" in x]
                if any("/llms.txt" in x for x in lines):
                    break
                await trio.sleep(0.05)
        request_id = response.headers["X-Request-Id"]
        lines = [x for x in lines if request_id in x or "/llms.txt" in x]
        assert len(lines) == 2, lines
        if fmt == "text":
            assert re.fullmatch(
                r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO backchannel.access: "
                rf"GET /v1/keys/me 200 \d+\.\dms {request_id}",
                lines[0],
            ), lines[0]
            assert " GET /llms.txt 200 " in lines[1]
        else:
            first = json.loads(lines[0])
            assert first["logger"] == "backchannel.access"
            assert first["level"] == "info"
            assert first["method"] == "GET"
            assert first["route"] == "/v1/keys/me"
            assert first["status"] == 200
            assert first["request_id"] == request_id
            assert first["duration_ms"] >= 0
            assert json.loads(lines[1])["route"] == "/llms.txt"


def test_json_log_lines_for_other_records() -> None:
    record = logging.LogRecord("backchannel.x", logging.WARNING, "f", 1, "hello %s", ("you",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello you"
    assert line["level"] == "warning"
    assert line["logger"] == "backchannel.x"


async def test_status_says_degraded_when_the_journal_failed(tmp_path: Path) -> None:
    async with open_runtime(test_settings(tmp_path), in_memory=True) as hub:
        app = create_app(hub)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            assert (await (await client.get("/status")).get_json())["status"] == "operational"
            assert isinstance(hub.journal, MemoryJournal)
            hub.journal.fail("disk full")
            assert (await (await client.get("/status")).get_json())["status"] == "degraded"
            page = await client.get("/status.html")
            assert "Degraded" in (await page.get_data(as_text=True))


async def test_serve_writes_json_log_lines(tmp_path: Path) -> None:
    env = {"BACKCHANNEL_LOG_FORMAT": "json"}
    server = await ServerProcess.start(tmp_path / "data", tmp_path / "server.log", env)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            answer = await http.get("/v1/keys/me")
        assert await server.terminate() == 0
    finally:
        await server.kill()
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert any(m.startswith("serving on http://127.0.0.1:") for m in messages), messages
    assert any(m.startswith("HTTP stopped after") for m in messages), messages
    (request,) = [x for x in lines if x.get("request_id") == answer.headers["X-Request-Id"]]
    assert request["route"] == "/v1/keys/me"
    assert request["status"] == 401
