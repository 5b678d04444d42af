"""Measure what one idle channel costs in memory, in-process.

    python tools/scale_probe.py channels --n 20000

Creates ``n`` channels through the Hub (in-memory journal, no HTTP), lets
virtual time pass beyond the passivation window (``trio.testing.MockClock``,
so the wait takes no real time) and prints the cost per channel: bytes
traced by ``tracemalloc`` that are still held, and the growth of the
process's resident set (RSS, measured in a pass without tracemalloc).

:func:`idle_channel_cost` is the entry point for other tools (the bench's
``scale`` scenario); it returns the same figures as a dict.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel
import trio.testing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backchannel.config import Settings  # noqa: E402
from backchannel.runtime.journal import MemoryJournal  # noqa: E402
from backchannel.runtime.service import open_runtime  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


async def _create_idle(n: int, data_dir: Path, traced: bool) -> dict[str, float]:
    settings = Settings(
        data_dir=data_dir,
        sandbox_enabled=False,
        snapshot_interval_seconds=0,
        rate_limit=0,
        key_mint_limit=0,
        metrics_enabled=False,
    )
    async with open_runtime(settings, in_memory=True) as hub:
        _raw, key = await hub.mint_key("scale-probe")
        spec = {**hub.channel_defaults("open"), "mode": "broadcast"}
        await trio.lowlevel.checkpoint()
        gc.collect()
        rss0 = _rss_bytes()
        traced0 = tracemalloc.get_traced_memory()[0] if traced else 0
        journal = hub.journal
        for index in range(n):
            await hub.create_channel(key, {**spec, "name": f"probe-{index}"}, [])
            if isinstance(journal, MemoryJournal) and index % 1000 == 999:
                journal.records.clear()  # a test double that keeps every record; files do not
        # virtual time: every actor passes its idle window and settles
        await trio.sleep(2 * settings.passive_after_seconds + 1)
        if isinstance(journal, MemoryJournal):
            journal.records.clear()
        gc.collect()
        stats = hub.statistics()
        traced1 = tracemalloc.get_traced_memory()[0] if traced else 0
        return {
            "channels": float(n),
            "active_actors": float(stats.active_actors),
            "passive_channels": float(stats.passive_channels),
            "traced_bytes_per_channel": (traced1 - traced0) / n,
            "rss_bytes_per_channel": (_rss_bytes() - rss0) / n,
        }


def _run(n: int, traced: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        if traced:
            tracemalloc.start()
        try:
            clock = trio.testing.MockClock(autojump_threshold=0)
            result: dict[str, float] = trio.run(_create_idle, n, Path(tmp), traced, clock=clock)
            return result
        finally:
            if traced:
                tracemalloc.stop()


def idle_channel_cost(n: int) -> dict[str, float]:
    """Memory per idle channel for ``n`` channels created through the Hub.

    Returns ``channels``, ``active_actors`` and ``passive_channels`` once the
    idle window has passed, ``rss_bytes_per_channel`` (first pass, no
    tracing) and ``traced_bytes_per_channel`` (second pass, tracemalloc:
    Python allocations still held, the figure that does not depend on the
    allocator's arenas).
    """
    rss = _run(n, traced=False)
    traced = _run(n, traced=True)
    return {**rss, "traced_bytes_per_channel": traced["traced_bytes_per_channel"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    channels = sub.add_parser("channels", help="cost of an idle channel")
    channels.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args(argv)
    figures: dict[str, Any] = idle_channel_cost(args.n)
    print(json.dumps({k: round(v, 1) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
