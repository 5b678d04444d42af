"""``tools/gen_data.py`` writes a data directory a real server loads and serves.

The restart benchmarks (issue 15) time a server on generated data, so the
generator must write exactly what a server reads: one snapshot through the
storage module's own writer. Here a small one is served over real HTTP:
every message (from the snapshot, then the log) is listed in order,
claimable by id, and acknowledged.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from backchannel.storage.recovery import recover
from backchannel.storage.state import load_snapshot_payload
from tests.conftest import serving

ROOT = Path(__file__).resolve().parents[2]


async def test_generated_data_loads_in_a_real_server_and_is_served(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    cmd = [sys.executable, str(ROOT / "tools" / "gen_data.py"), "--dir", str(data)]
    cmd += ["--messages", "30", "--channels", "3", "--content-bytes", "40", "--log-messages", "6"]
    await trio.run_process(cmd, capture_stdout=True)
    recovered = recover(data, allow_truncate=False)
    assert recovered.snapshot_payload is not None
    world, _clock = load_snapshot_payload(recovered.snapshot_payload)
    expected = {cid: [m.id for m in state.iter_live()] for cid, state in world.channels.items()}
    assert sorted(len(ids) for ids in expected.values()) == [10, 10, 10]

    async with serving(nursery, tmp_path, sandbox_enabled=False) as server:
        agent = await server.agent("reader")
        for channel_id, ids in expected.items():
            response = await agent.get(f"/v1/channels/{channel_id}/messages", params={"limit": 100})
            assert response.status_code == 200, response.text
            listed = response.json()["data"]
            assert [m["id"] for m in listed[:10]] == ids
            assert len(listed) == 12  # two more per channel replayed from the log
            assert {m["content"] for m in listed} == {"x" * 40}
            assert all(m["claimed_by"] is None and m["acknowledged_by"] == [] for m in listed)
        first = next(iter(expected.values()))[0]
        claimed = await agent.post(f"/v1/messages/{first}/claim", {"actor": "worker"})
        assert claimed.status_code == 200, claimed.text
        acked = await agent.post(f"/v1/messages/{first}/ack", {"actor": "worker"})
        assert acked.status_code == 200, acked.text
        assert acked.json()["message"]["acknowledged_by"][0]["name"] == "worker"
