"""kill -9 with webhook deliveries pending: every answered post is delivered after restart.

Runs ``python -m backchannel serve`` as a child process (only a separate
process can be killed mid-write) against a real loopback receiver.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio

from tests.receiver import Receiver
from tests.storage.test_crash_recovery import ServerProcess

ENV = {
    "BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE": "true",
    "BACKCHANNEL_WEBHOOK_TIMEOUT_SECONDS": "30",
    "BACKCHANNEL_WEBHOOK_RETRY_SECONDS": "30,30,30,30",
}


async def test_kill_9_with_deliveries_in_flight_and_queued_loses_none(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    receiver = Receiver(hang=True)  # holds every attempt until the server dies
    url = await receiver.serve(nursery)
    data_dir = tmp_path / "data"
    first = await ServerProcess.start(data_dir, tmp_path / "first.log", ENV)
    posted: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
            minted = await http.post("/v1/keys", json={"agent_label": "crash"})
            headers = {"X-API-Key": minted.json()["key"]}
            channel = await http.post(
                "/v1/channels",
                json={"name": "hooked", "mode": "broadcast", "webhook_url": url},
                headers=headers,
            )
            assert channel.status_code == 201, channel.text
            for n in range(7):  # one in flight (slow start), six queued behind it
                answer = await http.post(
                    f"/v1/channels/{channel.json()['id']}/messages",
                    json={"content": f"m{n}"},
                    headers=headers,
                )
                assert answer.status_code == 201, answer.text
                posted.append(answer.json()["message"]["id"])
        await receiver.wait_for(1)
        await trio.sleep(0.2)
    finally:
        await first.kill()
    assert len(receiver.requests) == 1
    receiver.hang = False
    second = await ServerProcess.start(data_dir, tmp_path / "second.log", ENV)
    try:
        with trio.fail_after(5):
            while True:
                answered = {json.loads(r.body)["message"]["id"] for r in receiver.requests[1:]}
                if answered >= set(posted):
                    break
                await trio.sleep(0.05)
        assert "webhook outbox: 7 deliveries pending" in second.log.read_text()
    finally:
        await second.kill()
