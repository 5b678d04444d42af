"""The data directory and every file in it are created owner-only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import trio

from tests.conftest import serving


async def test_data_directory_and_files_are_owner_only(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    previous = os.umask(0o022)  # the usual umask, which would leave them world-readable
    try:
        async with serving(nursery, tmp_path) as server:
            agent = await server.agent()
            channel = (await agent.channel("modes"))["id"]
            await agent.send(channel, "secret")
    finally:
        os.umask(previous)
    data = server.settings.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    names = sorted(p.name for p in data.iterdir())
    assert any(n.endswith(".bcsnap") for n in names), names  # the final snapshot
    assert any(n.endswith(".bclog") for n in names), names
    for path in data.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
