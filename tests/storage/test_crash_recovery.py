"""The real server process survives ``kill -9`` and restarts cleanly after SIGTERM.

These run ``python -m backchannel serve`` as a child process on the real
clock, because only a separate process can be killed mid-write. Every wait
is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx
import trio

REPO = Path(__file__).resolve().parents[2]
CRASH_TOOL = REPO / "tools" / "crash_test.py"
SERVER_ENV = {
    "BACKCHANNEL_RATE_LIMIT": "0",
    "BACKCHANNEL_KEY_MINT_LIMIT": "0",
    "BACKCHANNEL_SANDBOX_HEARTBEAT_SECONDS": "0",
}


def test_kill_9_loses_no_answered_write() -> None:
    result = subprocess.run(
        [sys.executable, str(CRASH_TOOL), "--kills", "3", "--duration-per-cycle", "1"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    last = result.stdout.strip().splitlines()[-1]
    assert re.match(r"crash test: seed=17 ", output), output  # fixed by default, printed
    found = re.fullmatch(r"kills=3 answered=(\d+) lost=0 phantom=0", last)
    assert found is not None, output
    assert int(found[1]) > 0, output
    assert result.stdout.count("recovered from") == 4, output


SERVING = re.compile(r"serving on (http://\S+)")


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


class ServerProcess:
    """``python -m backchannel serve`` on a loopback port, stderr in a file."""

    def __init__(self, process: trio.Process, url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    @classmethod
    async def start(
        cls, data_dir: Path, log: Path, env: dict[str, str] | None = None
    ) -> ServerProcess:
        output = _open_log(log)
        try:
            process = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "backchannel",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--data-dir",
                    str(data_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env={**os.environ, **SERVER_ENV, **(env or {})},
                cwd=str(REPO),
            )
        finally:
            output.close()
        server = cls(process, "", log)
        try:
            server.url = await server.wait_bound()
            await server.wait_healthy()
        except BaseException:
            await server.kill()
            raise
        return server

    async def wait_bound(self) -> str:
        """The URL from the ``serving on`` log line: the server binds port 0."""
        with trio.fail_after(30):
            while (found := SERVING.search(self.log.read_text())) is None:
                assert self.process.returncode is None, self.log.read_text()
                await trio.sleep(0.02)
        return found[1]

    async def wait_healthy(self) -> None:
        with trio.fail_after(30):
            async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
                for _ in range(600):
                    assert self.process.returncode is None, self.log.read_text()
                    try:
                        if (await client.get("/health")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)
        raise AssertionError("the server never answered /health")

    async def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            return await self.process.wait()

    async def kill(self) -> None:
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.kill()
            with trio.move_on_after(10):
                await self.process.wait()


async def test_sigterm_writes_a_snapshot_so_restart_replays_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = await ServerProcess.start(data_dir, tmp_path / "first.log")
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
            minted = await http.post("/v1/keys", json={"agent_label": "sigterm"})
            assert minted.status_code == 201, minted.text
            headers = {"X-API-Key": minted.json()["key"]}
            channel = await http.post(
                "/v1/channels", json={"name": "survives", "mode": "claimable"}, headers=headers
            )
            assert channel.status_code == 201, channel.text
            channel_id = channel.json()["id"]
            sent = []
            for n in range(3):
                posted = await http.post(
                    f"/v1/channels/{channel_id}/messages",
                    json={"content": f"message {n}"},
                    headers=headers,
                )
                assert posted.status_code == 201, posted.text
                sent.append((posted.json()["message"]["id"], f"message {n}"))
        code = await first.terminate()
    finally:
        await first.kill()
    first_log = first.log.read_text()
    assert code == 0, first_log
    assert "journal unavailable at shutdown" not in first_log, first_log
    assert "Traceback" not in first_log, first_log
    assert list(data_dir.glob("snapshot-*.bcsnap")), (sorted(data_dir.iterdir()), first_log)

    second = await ServerProcess.start(data_dir, tmp_path / "second.log")
    try:
        second_log = second.log.read_text()
        assert re.search(r"recovered from snapshot-\S+\.bcsnap: ", second_log), second_log
        assert " 0 log records replayed" in second_log, second_log
        async with httpx.AsyncClient(base_url=second.url, timeout=10) as http:
            listed = await http.get(
                f"/v1/channels/{channel_id}/messages", params={"since": "0"}, headers=headers
            )
        assert listed.status_code == 200, listed.text
        assert [(m["id"], m["content"]) for m in listed.json()["data"]] == sent
        assert await second.terminate() == 0, second.log.read_text()
    finally:
        await second.kill()
