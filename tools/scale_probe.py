"""Probes for issue 15: what an idle channel and a live message cost, and a restart.

    python tools/scale_probe.py channels --n 20000
    python tools/scale_probe.py messages [--count 100000]
    python tools/scale_probe.py restart --dir DIR [--profile]

``channels`` creates ``n`` channels through the Hub (in-memory journal, no
HTTP), lets virtual time pass beyond the passivation window
(``trio.testing.MockClock``, so the wait takes no real time) and prints the
cost per channel: bytes traced by ``tracemalloc`` that are still held, and
the growth of the process's resident set (RSS, measured in a pass without
tracemalloc). :func:`idle_channel_cost` is the entry point for other tools
(the bench's ``scale`` scenario); it returns the same figures as a dict.

Each subcommand runs the real runtime in-process (hub, channel actors, an
in-memory journal whose records are dropped before measuring) and prints
its figures. ``messages`` posts 300-byte messages through ``actor.call``
exactly as the HTTP handlers do, in two variants: empty metadata and no
actor, then small metadata (``{"n": i}``) and a named actor. It reports:

* ``tracemalloc_b``: Python allocations per message still held after the
  posts, with the top allocation sites (the breakdown);
* ``rss_b``: growth of the process RSS per message (a separate run,
  without tracemalloc);
* ``beyond_b``: ``tracemalloc_b`` minus the message's own content string
  and its non-empty metadata dict (what issue 15's 500-byte target counts;
  an empty metadata dict, if a message holds its own, is overhead).

``restart`` times ``backchannel serve`` on a data directory (one made by
``tools/gen_data.py``) from spawn to ``GET /health`` 200 (wall clock and the
server's own CPU time, the steadier figure on a shared machine) and reads
its RSS;
the server is then killed (SIGKILL), so the directory stays as it was. With
``--profile`` it instead runs the recovery function (``load_state``)
in-process under cProfile and prints the top entries, then times the
unpacking of every channel a format-3 snapshot left packed: the cost a
restart defers to each channel's first read (``core.packed``).

Figures vary by a few bytes between runs (allocator arenas, dict resizes).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import trio
import trio.lowlevel
import trio.testing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backchannel.config import Settings  # noqa: E402
from backchannel.runtime.hub import Hub  # noqa: E402
from backchannel.runtime.journal import MemoryJournal  # noqa: E402
from backchannel.runtime.service import load_state, open_runtime  # noqa: E402

CONTENT_BYTES = 300
TOP_SITES = 12


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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


def _content(index: int) -> str:
    """A distinct 300-byte string per message, as a parsed request body gives."""
    return f"{index:012d}".ljust(CONTENT_BYTES, "x")


def _metadata_size(metadata: dict[str, Any]) -> int:
    return sys.getsizeof(metadata) + sum(
        sys.getsizeof(k) + sys.getsizeof(v) for k, v in metadata.items()
    )


async def _post_many(
    n: int, with_actor: bool, measure: Callable[[str], None], workdir: Path
) -> None:
    settings = Settings(
        data_dir=workdir,
        rate_limit=0,
        key_mint_limit=0,
        sandbox_enabled=False,
        snapshot_interval_seconds=0,
        default_ttl_seconds=30 * 86_400,
        longpoll_max_waiters=10,
    )
    async with open_runtime(settings, in_memory=True) as hub:
        _raw, key = await hub.mint_key("probe")
        fields = hub.channel_defaults("open")
        fields.update(name="probe", mode="claimable")
        state = await hub.create_channel(key, fields, [])
        actor = hub.actors[state.config.id]
        actor_ref = None
        if with_actor:
            actor_ref = await hub.create_actor(key, "probe-worker", "", {})
        _drop_journal(hub)
        measure("before")
        for index in range(n):
            metadata: dict[str, Any] = {"n": index} if with_actor else {}
            await actor.call(actor.cmd_post, key, _content(index), metadata, actor_ref, None, None)
        _drop_journal(hub)
        measure("after")
        assert len(state.live) == n


class _ForgetfulJournal(MemoryJournal):
    """Durable at once and keeps nothing, like a file journal seen from memory."""

    def append_nowait(self, body: Any) -> int:
        self._last += 1
        return self._last


def _drop_journal(hub: Hub) -> None:
    """Swap in a journal that keeps no records (the in-memory one keeps them all)."""
    journal = hub.journal
    assert isinstance(journal, MemoryJournal)
    hub.journal = _ForgetfulJournal(next_seq=journal.last_seq + 1)


def live_message_cost(n: int, *, with_actor: bool = False) -> dict[str, float]:
    """Bytes per live message after ``n`` posts through the runtime.

    Returns ``tracemalloc_b``, ``rss_b``, ``content_b``, ``metadata_b`` and
    ``beyond_b`` (per message), plus ``site:<file>:<line>`` entries: bytes
    per message allocated at each of the top allocation sites.
    """
    out: dict[str, float] = {}
    with TemporaryDirectory() as tmp:
        rss: dict[str, int] = {}

        def measure_rss(label: str) -> None:
            gc.collect()
            rss[label] = _rss_bytes()

        trio.run(_post_many, n, with_actor, measure_rss, Path(tmp))
        out["rss_b"] = (rss["after"] - rss["before"]) / n

        snaps: dict[str, tracemalloc.Snapshot] = {}

        def measure_traces(label: str) -> None:
            gc.collect()
            snaps[label] = tracemalloc.take_snapshot()

        tracemalloc.start()
        try:
            trio.run(_post_many, n, with_actor, measure_traces, Path(tmp))
        finally:
            tracemalloc.stop()
    diff = snaps["after"].compare_to(snaps["before"], "lineno")
    total = sum(stat.size_diff for stat in diff)
    out["tracemalloc_b"] = total / n
    out["content_b"] = float(sys.getsizeof(_content(0)))
    # an empty metadata dict counts as overhead: the target allows only real metadata
    out["metadata_b"] = float(_metadata_size({"n": 12345})) if with_actor else 0.0
    out["beyond_b"] = out["tracemalloc_b"] - out["content_b"] - out["metadata_b"]
    for stat in sorted(diff, key=lambda s: -s.size_diff)[:TOP_SITES]:
        frame = stat.traceback[0]
        name = frame.filename
        if name.startswith(str(ROOT)):
            name = os.path.relpath(name, ROOT)
        out[f"site:{name}:{frame.lineno}"] = stat.size_diff / n
    return out


def _report(title: str, figures: dict[str, float]) -> None:
    print(title)
    for name in ("tracemalloc_b", "rss_b", "content_b", "metadata_b", "beyond_b"):
        print(f"  {name:<16} {figures[name]:8.1f}")
    print("  top allocation sites (bytes per message):")
    for name, value in figures.items():
        if name.startswith("site:"):
            print(f"    {value:8.1f}  {name[5:]}")


def _cmd_channels(args: argparse.Namespace) -> int:
    figures: dict[str, Any] = idle_channel_cost(args.n)
    print(json.dumps({k: round(v, 1) for k, v in figures.items()}))
    return 0


def _cmd_messages(args: argparse.Namespace) -> int:
    n = args.count
    _report(
        f"{n} live messages, 300-byte content, empty metadata, no actor:",
        live_message_cost(n),
    )
    _report(
        f"{n} live messages, 300-byte content, metadata {{'n': i}}, a named actor:",
        live_message_cost(n, with_actor=True),
    )
    return 0


def restart_time(directory: Path, timeout: float = 600.0) -> dict[str, float]:
    """Seconds from spawning ``backchannel serve`` on ``directory`` to /health 200, and RSS."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "backchannel", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--data-dir", str(directory)]
    env = {**os.environ, "BACKCHANNEL_SANDBOX_ENABLED": "false"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}: {proc.stderr}")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"server not ready after {timeout} s")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.02)
        ready = time.perf_counter() - started
        with open(f"/proc/{proc.pid}/status") as status:
            kib = {x.split(":")[0]: int(x.split()[1]) for x in status if x.startswith(_RSS_LINES)}
        with open(f"/proc/{proc.pid}/stat") as stat:  # CPU time: steadier on a busy machine
            ticks = stat.read().rsplit(")", 1)[1].split()
        cpu = (int(ticks[11]) + int(ticks[12])) / os.sysconf("SC_CLK_TCK")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return {
        "ready_s": ready,
        "cpu_s": cpu,
        "rss_mib": kib["VmRSS"] / 1024,
        # a restored snapshot's chunks are views of the mapped file: page cache, not heap
        "rss_anon_mib": kib["RssAnon"] / 1024,
        "rss_file_mib": kib["RssFile"] / 1024,
    }


_RSS_LINES = ("VmRSS:", "RssAnon:", "RssFile:")


def _cmd_restart(args: argparse.Namespace) -> int:
    if args.profile:
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        world, _next, _newest, report = load_state(args.dir, False)
        profile.disable()
        print(f"load_state {time.perf_counter() - started:.2f}s: {report.describe()}")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
        packed = [state for state in world.channels.values() if state.packed is not None]
        gc.disable()  # the collections a server's later traffic would pay for are not the unpack's
        started = time.perf_counter()
        for state in packed:  # what the first read of each channel costs (core.packed)
            state.unpack()
        gc.enable()
        print(
            f"first read of the {len(packed)} channels loaded packed: unpacking them all "
            f"took {time.perf_counter() - started:.2f}s"
        )
        return 0
    figures = restart_time(args.dir)
    print(
        f"{args.dir}: spawn -> /health 200 in {figures['ready_s']:.2f} s "
        f"({figures['cpu_s']:.2f} s of CPU), RSS {figures['rss_mib']:.0f} MiB "
        f"(anonymous {figures['rss_anon_mib']:.0f}, file {figures['rss_file_mib']:.0f})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    channels = commands.add_parser("channels", help="cost of an idle channel")
    channels.add_argument("--n", type=int, default=20_000)
    channels.set_defaults(run=_cmd_channels)
    messages = commands.add_parser("messages", help="cost of one live message")
    messages.add_argument("--count", type=int, default=100_000)
    messages.set_defaults(run=_cmd_messages)
    restart = commands.add_parser("restart", help="restart time on a data directory")
    restart.add_argument("--dir", type=Path, required=True)
    restart.add_argument("--profile", action="store_true", help="cProfile load_state in-process")
    restart.set_defaults(run=_cmd_restart)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
