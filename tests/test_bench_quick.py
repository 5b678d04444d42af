"""The benchmark must keep working: run ``tools/bench.py --quick`` and read its numbers.

This starts real processes (the floor app, the real server and the load
client) on loopback ports and runs every scenario in its smoke version, so
it takes a while; it checks that each ran and produced numbers, never how
fast they are (speed is read from ``make bench``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "tools" / "bench.py"
SCENARIOS = [
    "posts",
    "claim",
    "wake",
    "idle",
    "floor",
    "fsync",
    "metrics",
    "stock",
    "restart",
    "scale",
]
RUN_TIMEOUT_S = 240


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_quick_bench_runs_and_reports_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--scenarios", *SCENARIOS, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "floor posts/s" in proc.stdout

    report: dict[str, Any] = json.loads(out.read_text())
    assert report["settings"]["quick"] is True
    assert report["machine"]["cpu_count"] >= 1
    for name in SCENARIOS:
        scenario = report["scenarios"][name]
        assert scenario["status"] == "ok", scenario["note"]
        assert scenario["figures"], f"{name} produced no figures"
        for label, figure in scenario["figures"].items():
            assert math.isfinite(figure["median"]), (name, label, figure)
            assert figure["runs"], (name, label)

    floor = report["scenarios"]["floor"]["figures"]
    assert floor["floor posts/s"]["median"] > 0
    assert floor["floor latency p50"]["median"] > 0
    assert floor["floor non-201 replies"]["median"] == 0
    assert floor["our posts/s as % of floor"]["median"] > 0
