"""Profile the server side of a long-poll fan-out: where do the seconds go?

    python tools/profile_fanout.py [--waiters 10000] [--top 40] [--out FILE.prof]
    python tools/profile_fanout.py --py-spy PATH/py-spy --out fanout.folded
    python tools/profile_fanout.py --measure
    python tools/profile_fanout.py --measure --steps

The real server (``backchannel.http.server.serve``, tuned hypercorn, a fresh
data directory, ``--fsync always``, its log in a file) runs in this process;
``tools/loadgen.py idle`` runs in another (pinned to the second core when
there is one, this process to the first) and parks ``--waiters`` long-polls
on one broadcast channel, posts once and times until every waiter has its
answer. The profiler runs only from the moment the last waiter is parked
until every waiter has left (and a quarter of a second more for the last
writes), so connecting is not in the profile.

cProfile (the default) costs several times the fan-out's own time; read
its shares, not its seconds. ``--py-spy`` samples instead (1,000 Hz, py-spy
installed anywhere, not a dependency) and writes collapsed stacks.
``--measure`` runs no profiler. Every mode prints the load client's figures
and the main thread's CPU seconds from the first waiter woken to the last
write, with the seconds the cyclic GC took per generation meanwhile.
``--steps`` also counts trio task steps (a task run from one checkpoint to
the next) over the same span, per woken waiter: how many times the
scheduler switches tasks to answer one (a trio instrument, which costs a
little CPU itself).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backchannel.config import load_settings  # noqa: E402
from backchannel.http.server import serve  # noqa: E402
from backchannel.logformat import configure  # noqa: E402
from backchannel.runtime.hub import Hub  # noqa: E402

WAIT_S = 120


class _StepCounter(trio.abc.Instrument):
    """Counts task steps (every task, the load's and the server's own)."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


GC_SECONDS = [0.0, 0.0, 0.0]  # per generation, during the fan-out
_gc_started = [0.0]


def _gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        GC_SECONDS[info["generation"]] += time.perf_counter() - _gc_started[0]


async def _watch(
    hub: Hub,
    waiters: int,
    profiler: cProfile.Profile | None,
    sampler: list[str],
    cpu: list[float],
    steps: _StepCounter | None,
) -> None:
    """Profile from "all parked" until "none parked" (+0.25 s for the writes).

    ``cpu`` receives the main thread's CPU seconds from the first waiter
    woken until the last write (the fan-out alone, profiled or not); then
    the task steps per waiter over the same span, when ``steps`` counts them.
    """
    # hub.parked is a plain counter with no event to wait on: poll it
    while hub.parked < waiters:  # noqa: ASYNC110
        await trio.sleep(0.01)
    if sampler:
        process = await trio.lowlevel.open_process([*sampler, "--pid", str(os.getpid())])
        await trio.sleep(1)  # the sampler attaches
    elif profiler is not None:
        profiler.enable()
    while hub.parked == waiters:  # noqa: ASYNC110
        await trio.sleep(0.001)
    started = time.thread_time()
    if steps is not None:
        trio.lowlevel.add_instrument(steps)
    gc.callbacks.append(_gc_timer)
    while hub.parked > 0:  # noqa: ASYNC110
        await trio.sleep(0.001)
    await trio.sleep(0.25)
    gc.callbacks.remove(_gc_timer)
    cpu.append(time.thread_time() - started)
    if steps is not None:
        trio.lowlevel.remove_instrument(steps)
        cpu.append(steps.steps / waiters)
    if sampler:
        process.send_signal(signal.SIGINT)
        await process.wait()
    elif profiler is not None:
        profiler.disable()


async def _run(
    args: argparse.Namespace, data_dir: str, profiler: cProfile.Profile | None
) -> dict[str, object]:
    settings = load_settings(
        {},
        host="127.0.0.1",
        port=0,
        data_dir=Path(data_dir),
        fsync="always",
        rate_limit=0,
        key_mint_limit=0,
        longpoll_max_wait_seconds=WAIT_S,
        longpoll_max_waiters=args.waiters + 1000,
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            lambda task_status: serve(settings, stop=stop, task_status=task_status)
        )
        hub = _find_hub()
        sampler = []
        if args.py_spy:
            sampler = [args.py_spy, "record", "--rate", "1000", "--format", "raw"]
            sampler += ["--output", str(args.out or "fanout.folded")]
        cpu: list[float] = []
        steps = _StepCounter() if args.steps else None
        nursery.start_soon(_watch, hub, args.waiters, profiler, sampler, cpu, steps)
        port = int(str(url).rsplit(":", 1)[1])
        pin = _client_pin()
        cmd = [
            *pin,
            sys.executable,
            str(ROOT / "tools" / "loadgen.py"),
            "idle",
            "--port",
            str(port),
            "--json-args",
            json.dumps({"waiters": args.waiters, "pid": os.getpid(), "wait": WAIT_S}),
            "--timeout",
            "300",
        ]
        proc = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
        stop.set()
    if proc.returncode != 0:
        raise SystemExit(f"loadgen failed:\n{proc.stderr.decode()[-3000:]}")
    result: dict[str, object] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    result["fanout_main_thread_cpu_s"] = cpu[0] if cpu else float("nan")
    if len(cpu) > 1:
        result["fanout_task_steps_per_waiter"] = round(cpu[1], 2)
    result["fanout_gc_s"] = [round(g, 3) for g in GC_SECONDS]
    return result


def _find_hub() -> Hub:
    """The running hub (the server builds it inside ``serve``; we only read it)."""
    hubs = [obj for obj in gc.get_objects() if isinstance(obj, Hub)]
    if len(hubs) != 1:
        raise SystemExit(f"expected one Hub in this process, found {len(hubs)}")
    return hubs[0]


def _client_pin() -> list[str]:
    cores = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if len(cores) >= 2 and taskset:
        os.sched_setaffinity(0, {cores[0]})
        return [taskset, "-c", str(cores[1])]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path, help="write the raw profile here (pstats format)")
    parser.add_argument(
        "--measure",
        action="store_true",
        help="no profiler: only the fan-out's figures and main-thread CPU seconds",
    )
    parser.add_argument(
        "--steps",
        action="store_true",
        help="also count trio task steps per woken waiter during the fan-out",
    )
    parser.add_argument(
        "--py-spy",
        metavar="BIN",
        help="sample with this py-spy executable instead of cProfile (far less overhead); "
        "--out receives its collapsed stacks",
    )
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="profile-fanout-")
    profiler = None if args.measure or args.py_spy else cProfile.Profile()
    # the server's log (access lines included, as in the benchmark) goes to a file
    saved_stderr = sys.stderr
    sys.stderr = (Path(data_dir) / "server.log").open("w")
    configure("INFO", "text")
    try:
        result = trio.run(_run, args, data_dir, profiler)
    finally:
        sys.stderr.close()
        sys.stderr = saved_stderr
        shutil.rmtree(data_dir, ignore_errors=True)
    keys: tuple[str, ...] = ("fanout_all_ms", "fanout_p50_ms", "fanout_server_cpu_s")
    keys += ("fanout_client_cpu_s",)
    keys += ("missing", "woken")
    keys += ("fanout_main_thread_cpu_s", "fanout_gc_s", "fanout_task_steps_per_waiter")
    figures = {k: result[k] for k in keys if k in result}
    print(json.dumps(figures) if profiler is None else f"load client (profiler on): {figures}")
    if profiler is None:
        return 0
    if args.out is not None:
        profiler.dump_stats(str(args.out))
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
