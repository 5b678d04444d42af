"""When the journal fails, writes get 503 and reads still work; bad data dirs fail fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backchannel.http.app import create_app
from backchannel.runtime.journal import MemoryJournal
from backchannel.runtime.service import open_runtime
from tests.conftest import test_settings


async def test_writes_answer_503_after_a_journal_failure_and_reads_still_work(
    tmp_path: Path,
) -> None:
    async with open_runtime(test_settings(tmp_path), in_memory=True) as hub:
        app = create_app(hub)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            minted = await client.post("/v1/keys", json={"agent_label": "a"})
            key = {"X-API-Key": (await minted.get_json())["key"]}
            created = await client.post(
                "/v1/channels", json={"name": "c", "mode": "claimable"}, headers=key
            )
            channel = (await created.get_json())["id"]
            first = await client.post(
                f"/v1/channels/{channel}/messages", json={"content": "kept"}, headers=key
            )
            assert first.status_code == 201

            assert isinstance(hub.journal, MemoryJournal)
            hub.journal.fail("disk full")

            refused = await client.post(
                f"/v1/channels/{channel}/messages", json={"content": "lost"}, headers=key
            )
            assert refused.status_code == 503
            assert (await refused.get_json())["error"] == "unavailable"
            again = await client.post("/v1/keys", json={"agent_label": "b"})
            assert again.status_code == 503

            listed = await client.get(f"/v1/channels/{channel}/messages", headers=key)
            assert listed.status_code == 200
            assert [m["content"] for m in (await listed.get_json())["data"]] == ["kept"]


def test_a_data_dir_that_cannot_be_created_fails_fast_with_a_clear_message(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "backchannel",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(blocker / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "data directory" in result.stderr
