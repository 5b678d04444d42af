"""The soak must keep working: one minute of ``tools/soak.py`` against a real server.

It fails on growth after warm-up, any 5xx, a lost or doubly claimed
message; the 30-minute figures are in the README.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_one_minute_soak_passes(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, str(ROOT / "tools" / "soak.py"), "--minutes", "1"]
    command += ["--sample-seconds", "2", "--generation-seconds", "20", "--snapshot-seconds", "3"]
    command += ["--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    judged = {v["figure"] for v in report["verdicts"]}
    assert judged >= {"rss_kib", "open_fds", "tasks", "idempotency_entries"}
    assert all(v["flat"] for v in report["verdicts"])
    assert len(report["samples"]) >= 20
    assert all(s["tasks"] > 0 for s in report["samples"])  # the vitals line was read
    assert all(s["idempotency_entries"] >= 0 for s in report["samples"])
    counts = report["counts"]
    assert counts["generations"] >= 6
    assert counts["messages through"] > 0
    assert counts["leases left to lapse"] > 0
    assert counts["polls abandoned"] > 0
    assert counts["idempotent retries"] > 0
    assert "failures" not in counts


def test_growth_is_judged_last_third_against_first_third() -> None:
    """A leak (RSS up 1 MiB a sample) fails; a flat, noisy series passes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("soak_tool", ROOT / "tools" / "soak.py")
    assert spec is not None
    assert spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    sys.modules["soak_tool"] = soak  # dataclasses look their module up
    spec.loader.exec_module(soak)
    flat = {
        "open_fds": 30,
        "tasks": 50,
        "parked_waiters": 4,
        "journal_bytes": 10_000,
        "idempotency_entries": 300,
    }
    leaking = [{"t": t, "rss_kib": 50_000 + 1024 * t, **flat} for t in range(60)]
    noisy = [{"t": t, "rss_kib": 50_000 + (t % 7) * 900, **flat} for t in range(60)]
    verdicts = {v["figure"]: v["flat"] for v in soak.growth(leaking, warmup_s=10)}
    assert verdicts == {
        "rss_kib": False,
        "open_fds": True,
        "tasks": True,
        "parked_waiters": True,
        "journal_bytes": True,
        "idempotency_entries": True,
    }
    assert all(v["flat"] for v in soak.growth(noisy, warmup_s=10))
