"""Benchmark Backchannel end to end: real server process, separate load-client process.

Run ``make bench`` (or ``.venv/bin/python tools/bench.py``); ``--quick`` is a
smoke run of every scenario in about ten seconds of load (the test suite runs
it so the benchmark never rots). Each scenario starts its own server
(``python -m backchannel serve`` on a free 127.0.0.1 port with a fresh
``tempfile.mkdtemp`` data directory, ready when ``GET /health`` answers 200)
and drives it with ``tools/loadgen.py`` in another process. Where the machine
has two or more cores, the server is pinned to the first and the client to
the second (``taskset -c``). Each scenario is repeated (default 3) and the
table shows the median, min and max over the repetitions; latency figures are
the p50 and p99 within each run. The table goes to stdout and, with every
run's raw numbers, to ``bench-results/bench-<timestamp>.json``.

Scenarios (``--scenarios``, default all):

posts    50 keep-alive clients post 300-byte messages to 10 claimable channels:
         posts/s, post latency p50/p99 (target: p99 <= 3 x p50).
claim    producers keep 10 claimable channels stocked (40 unclaimed each, 4
         producer connections per channel, posting all through the window);
         50 workers take the next unclaimed message (``POST /v1/tasks/claim``,
         atomic claim-next) and ack it: cycles/s (a cycle is those two
         requests), 409s per successful claim (loadgen ``claim_next: false``
         lists, then claims) and, with ``floor`` in the same run, cycles/s
         as % of the floor's posts/s (target >= 40). With fewer producers the
         workers starve and the figure measures the producers, not the server.
claimwait 50 workers park on ``POST /v1/channels/{c}/claim-next {"wait": 10}`` on
         one claimable channel and ack what they get; 16 producers post, keeping
         at most 25 messages unclaimed, so each post is handed to a parked
         worker: claims/s and post -> claimed latency p50/p99 (from sending
         the post to the worker receiving the claim), next to ``claim``.
wake     100 long-polls (``since=<cursor>&wait=30``) on 100 channels; one post
         at a time to a random channel; wake latency = the waiter's response
         time minus the post's send time, against a plain ``GET /v1/keys/me``
         on the same server (targets: p50 <= 2x, p99 <= 5x).
idle     1,000 / 5,000 / 10,000 long-polls on one broadcast channel: server
         RSS per parked waiter (VmRSS before/after), then one post and the
         time until every waiter has its response (targets at 10,000:
         <= 36 KiB per waiter, all answered in <= 2 s).
stream   1,000 open event streams (``GET .../stream``) on one broadcast
         channel (200 with ``--quick``); one post and the time until every
         stream has its ``event: message``.
floor    the posts load against ``tools/floor_app.py`` (bare quart-trio on
         hypercorn, same Config and hypercorn tuning) in the same run: our
         posts/s as % of it (target >= 80).
fsync    the posts load with ``--fsync always`` and ``--fsync never``, same
         run, as a ratio (target >= 0.8).
metrics  the posts load with ``/metrics`` on (the default) and with
         ``BACKCHANNEL_METRICS_ENABLED=false``, same run, as a ratio
         (target >= 0.95: metrics cost at most 5 %).
stock    the posts load on stock hypercorn (``BACKCHANNEL_HTTP_TUNING=off``),
         same run: posts/s tuned and stock, and their ratio.
restart  time from spawn to ``/health`` 200 on data directories written by
         ``tools/gen_data.py`` (100,000 and 1,000,000 live messages; target
         <= 10 s for 1,000,000), and the worst request of a probe running
         while snapshots of 100,000 messages are written (target <= 50 ms).
scale    issue 15: C channels holding N live 300-byte messages, written by
         ``tools/gen_data.py`` (default 100,000 channels and 1,000,000
         messages; ``--quick`` 2,000 and 20,000; ``--scale-large`` 1,000,000
         and 10,000,000, minutes and many GiB; ``--scale-channels`` and
         ``--scale-messages`` pick any size). Per repetition: restart time
         (spawn -> ``/health`` 200; target 4 s per million messages), RSS
         after load, RSS per idle channel and per live message measured end
         to end (servers on an empty, a channels-only and the full data
         set, each read at ``/health`` 200) and by ``tools/scale_probe.py``
         next to the issue's figures of the day, and the posts load (50
         clients) on one hot channel while the C channels sit idle against
         the same load on an empty server, both up at once and the load
         alternating between them over 4 rounds (2 with ``--quick``), so
         drift in the machine's load falls on both (targets: the median of
         the rounds' posts/s and p99 ratios within 10 %). Servers on a data set are killed, not
         stopped (a clean stop writes a final snapshot of everything, which
         measures nothing here), and the directory is put back as generated.

The real server runs with ``BACKCHANNEL_RATE_LIMIT=0`` and
``BACKCHANNEL_KEY_MINT_LIMIT=0`` (the load would otherwise be refused) and a
long-poll waiter cap above the largest idle size (the idle scenario also
raises the long-poll wait cap to 120 s, so no parked waiter expires while
10,000 connect). Every wait here has a
deadline: server readiness, each load-client process, and shutdown
(SIGTERM, then SIGKILL after a grace period). The exit status is 1 if any
scenario crashed; skipped scenarios (with a printed note) do not fail it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scale_data import DataSet, Unavailable, mem_available_bytes, run_probe

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
PYTHON = sys.executable
HOST = "127.0.0.1"
ALL_SCENARIOS = (
    "posts",
    "claim",
    "claimwait",
    "wake",
    "idle",
    "stream",
    "floor",
    "fsync",
    "metrics",
    "stock",
    "restart",
    "scale",
)
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
SETUP_ALLOWANCE_S = 60.0
RESTART_MESSAGES = (100_000, 1_000_000)
STALL_PROBE_S = 7.0
JSON_HEADERS = {
    "Content-Type": "application/json"
}  # a server holding 100k messages snapshots every 2 s meanwhile
# Parking 10,000 waiters can take longer than the default 30 s long-poll cap on
# a busy 2-core machine; the idle scenario raises the cap so none expires early.
IDLE_WAIT_S = 120
IDLE_TARGET_WAITERS = 10_000  # the size the RSS and fan-out targets are set for
CLAIM_PRODUCERS_PER_CHANNEL = 4  # fewer cannot keep 50 workers stocked (they starve)
CLAIM_STOCK = 40  # unclaimed messages the producers keep per channel
# scale: (channels, messages) per size; the probes measure at most the issue's own sizes
SCALE_QUICK = (2_000, 20_000)
SCALE_DEFAULT = (100_000, 1_000_000)
SCALE_LARGE = (1_000_000, 10_000_000)
SCALE_PROBE_MAX = (20_000, 100_000)
# issue 15's figures of the day (through the API, fsync never), shown next to ours
TODAY_CHANNEL_B = 10 * 1024
TODAY_MESSAGE_B = 1.2 * 1024
# the memory guard's fallback costs when the probes are not available (today's, with margin)
GUARD_CHANNEL_B = 4 * 1024  # RSS per restored idle channel, with room (measured ~2.3 KiB)
# a restored message stays packed: its row in the mapped snapshot (~470 B for 300 B of
# content) and its id in the hub's index (~130 B); measured 8.1 GiB for 1M ch / 10M msg
GUARD_MESSAGE_B = 700


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    quick: bool
    repeat: int
    duration: float
    warmup: float
    scenarios: tuple[str, ...]
    out: Path
    idle_sizes: tuple[int, ...]
    stream_count: int = 1000
    post_clients: int = 50
    post_channels: int = 10
    message_bytes: int = 300
    claim_workers: int = 50
    claim_channels: int = 10
    wake_waiters: int = 100
    wake_gap_s: float = 0.01
    scale_channels: int = SCALE_DEFAULT[0]
    scale_messages: int = SCALE_DEFAULT[1]
    scale_rounds: int = 4  # hot-channel rounds per repetition, empty and full alternating

    def loadgen_timeout(self, extra: float = 0.0) -> float:
        return SETUP_ALLOWANCE_S + self.warmup + self.duration + extra


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        description="Benchmark the Backchannel server (see the module docstring)."
    )
    parser.add_argument("--quick", action="store_true", help="~10 s smoke run of every scenario")
    parser.add_argument("--repeat", type=int, help="repetitions per scenario (default 3; quick 1)")
    parser.add_argument(
        "--duration", type=float, help="measured seconds per run (default 10; quick 1)"
    )
    parser.add_argument("--out", type=Path, help="JSON output file")
    parser.add_argument(
        "--scale-large",
        action="store_true",
        help="scale scenario at 1,000,000 channels and 10,000,000 messages (minutes, GiBs)",
    )
    parser.add_argument("--scale-channels", type=int, help="scale scenario: channels")
    parser.add_argument("--scale-messages", type=int, help="scale scenario: live messages")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=list(ALL_SCENARIOS),
        help=f"subset of {', '.join(ALL_SCENARIOS)} (space or comma separated)",
    )
    ns = parser.parse_args(argv)
    scenarios = tuple(s for item in ns.scenarios for s in item.split(",") if s)
    unknown = sorted(set(scenarios) - set(ALL_SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    repeat = ns.repeat if ns.repeat is not None else (1 if ns.quick else 3)
    duration = ns.duration if ns.duration is not None else (1.0 if ns.quick else 10.0)
    if repeat < 1 or repeat > 20 or duration <= 0 or duration > 600:
        parser.error("--repeat must be 1..20 and --duration in (0, 600]")
    size = SCALE_LARGE if ns.scale_large else SCALE_QUICK if ns.quick else SCALE_DEFAULT
    scale_channels = ns.scale_channels if ns.scale_channels is not None else size[0]
    scale_messages = ns.scale_messages if ns.scale_messages is not None else size[1]
    if scale_channels < 1 or scale_messages < 0:
        parser.error("--scale-channels must be >= 1 and --scale-messages >= 0")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = ns.out if ns.out is not None else ROOT / "bench-results" / f"bench-{stamp}.json"
    return Settings(
        quick=ns.quick,
        repeat=repeat,
        duration=duration,
        warmup=min(2.0, max(0.3, duration / 5)),
        scenarios=tuple(s for s in ALL_SCENARIOS if s in scenarios),
        out=out,
        idle_sizes=(200,) if ns.quick else (1000, 5000, 10000),
        stream_count=200 if ns.quick else 1000,
        scale_channels=scale_channels,
        scale_messages=scale_messages,
        scale_rounds=2 if ns.quick else 4,
    )


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


@dataclass(frozen=True)
class Pinning:
    server: tuple[str, ...]
    client: tuple[str, ...]
    note: str


def choose_pinning() -> Pinning:
    cores = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if len(cores) >= 2 and taskset:
        return Pinning(
            (taskset, "-c", str(cores[0])),
            (taskset, "-c", str(cores[1])),
            f"server pinned to core {cores[0]}, client to core {cores[1]}",
        )
    why = "only one usable core" if len(cores) < 2 else "taskset not found"
    return Pinning((), (), f"not pinned ({why})")


def raise_nofile_limit() -> int:
    """Raise our soft RLIMIT_NOFILE to the hard limit; the child processes inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def somaxconn() -> int | None:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text().strip())
    except (OSError, ValueError):
        return None


# servers bind port 0 and log the address they got (ours: "serving on",
# hypercorn's own: "Running on"); reading it back leaves no window in which
# another process could take a port we picked and released
BOUND = re.compile(r"(?:serving on|Running on) http://[^\s:]+:(\d+)")


def bound_port(log_path: Path) -> int | None:
    try:
        found = BOUND.search(log_path.read_text(errors="replace"))
    except OSError:
        return None
    return int(found[1]) if found else None


# --------------------------------------------------------------------------- servers


class ScenarioError(RuntimeError):
    """A scenario could not produce its numbers (server or client failed)."""


class ScenarioSkipped(RuntimeError):
    """A scenario cannot run yet; the message says why."""


def real_server_check() -> None:
    """Raise ScenarioSkipped if the server is not written yet, ScenarioError if it is broken."""
    if not (ROOT / "backchannel" / "cli.py").exists():
        raise ScenarioSkipped("real server not available yet (backchannel/cli.py is missing)")
    try:
        proc = subprocess.run(
            [PYTHON, "-m", "backchannel", "serve", "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as exc:
        raise ScenarioError("`python -m backchannel serve --help` timed out") from exc
    if proc.returncode != 0:
        raise ScenarioError(
            f"`python -m backchannel serve --help` exited {proc.returncode}: "
            f"{proc.stderr.strip()[-500:]}"
        )


def server_command(kind: str, port: int, data_dir: str) -> list[str]:
    if kind == "floor":
        return [PYTHON, str(TOOLS / "floor_app.py"), "--host", HOST, "--port", str(port)]
    fsync = {
        "real": "always",
        "always": "always",
        "never": "never",
        "nometrics": "always",
        "stock": "always",
    }[kind]
    return [
        PYTHON,
        "-m",
        "backchannel",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--data-dir",
        data_dir,
        "--fsync",
        fsync,
    ]


NO_METRICS_ENV = {"BACKCHANNEL_METRICS_ENABLED": "false"}
EXTRA_ENV = {"nometrics": NO_METRICS_ENV, "stock": {"BACKCHANNEL_HTTP_TUNING": "off"}}


def server_env(max_waiters: int, max_wait_s: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BACKCHANNEL_RATE_LIMIT="0",
        BACKCHANNEL_KEY_MINT_LIMIT="0",
        BACKCHANNEL_LONGPOLL_ENABLED="1",
        BACKCHANNEL_LONGPOLL_MAX_WAIT_SECONDS=str(max_wait_s),
        BACKCHANNEL_LONGPOLL_MAX_WAITERS=str(max_waiters),
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Server:
    """A running server process: its port, pid, data directory and log."""

    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    data_dir: str
    log_path: Path
    ready_s: float
    stop_info: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _start(
    kind: str,
    pinning: Pinning,
    env: dict[str, str],
    data_dir: str | None,
    ready_timeout: float = READY_TIMEOUT_S,
) -> Server:
    own_dir = data_dir is None
    data_dir = data_dir or tempfile.mkdtemp(prefix=f"bench-{kind}-")
    log_path = Path(tempfile.mkstemp(prefix=f"bench-{kind}-", suffix=".log")[1])
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [*pinning.server, *server_command(kind, 0, data_dir)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(kind, 0, proc, data_dir, log_path, 0.0)
    server.stop_info["own_dir"] = own_dir
    deadline = started + ready_timeout
    while True:
        if proc.poll() is not None:
            tail = server.log_tail()
            _cleanup(server)
            raise ScenarioError(
                f"{kind} server exited with {proc.returncode} before it was ready:\n{tail}"
            )
        server.port = server.port or bound_port(log_path) or 0
        with contextlib.suppress(OSError, http.client.HTTPException):
            if not server.port:
                raise OSError("no port logged yet")
            status, body = http_get(server.port, "/health", timeout=1.0)
            if status == 200:
                with contextlib.suppress(ValueError):
                    server.health = json.loads(body)
                break
        if time.monotonic() > deadline:
            tail = server.log_tail()
            stop_server(server)
            raise ScenarioError(f"{kind} server not ready within {ready_timeout:.0f} s:\n{tail}")
        time.sleep(0.05)
    server.ready_s = time.monotonic() - started
    return server


def stop_server(server: Server) -> None:
    """SIGTERM, wait up to STOP_GRACE_S, then SIGKILL; remove the data directory."""
    proc = server.proc
    began = time.monotonic()
    killed = False
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            killed = True
            proc.kill()
            proc.wait(timeout=STOP_GRACE_S)
    server.stop_info.update(stop_s=time.monotonic() - began, killed=killed, rc=proc.returncode)
    if killed:
        log(f"{server.kind} server ignored SIGTERM for {STOP_GRACE_S:.0f} s; killed it")
    _cleanup(server)


def _cleanup(server: Server) -> None:
    if server.stop_info.get("own_dir"):
        shutil.rmtree(server.data_dir, ignore_errors=True)
    server.log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def running_server(
    kind: str,
    pinning: Pinning,
    *,
    max_waiters: int = 11_000,
    max_wait_s: int = 30,
    data_dir: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Start a server (``real``/``always``/``never``/``floor``); always stop it."""
    env = server_env(max_waiters, max_wait_s)
    env.update(extra_env or {})
    server = _start(kind, pinning, env, data_dir)
    log(f"{kind} server ready on port {server.port} (pid {server.pid}) in {server.ready_s:.2f} s")
    try:
        yield server
        if server.proc.poll() is not None:
            raise ScenarioError(f"{kind} server died during the run:\n{server.log_tail()}")
    finally:
        stop_server(server)


@contextlib.contextmanager
def server_on(data: DataSet, pinning: Pinning) -> Iterator[Server]:
    """A real server on a generated data set; killed afterwards, the set put back.

    Killed, not stopped: a clean stop writes a final snapshot of the whole
    data set (a minute at 10,000,000 messages), which no figure here needs.
    Periodic snapshots are off for the same reason.
    """
    env = server_env(11_000, 30)
    env["BACKCHANNEL_SNAPSHOT_INTERVAL_SECONDS"] = "0"
    # measured on main: 100,000 channels alone took 61 s to start on a loaded machine
    ready_timeout = READY_TIMEOUT_S + data.messages / 20_000 + data.channels / 1_000
    server = _start("real", pinning, env, str(data.directory), ready_timeout)
    log(
        f"server on {data.channels:,} channels / {data.messages:,} messages ready on port "
        f"{server.port} (pid {server.pid}) in {server.ready_s:.2f} s"
    )
    try:
        yield server
        if server.proc.poll() is not None:
            raise ScenarioError(f"scale server died during the run:\n{server.log_tail()}")
    finally:
        server.proc.kill()
        server.proc.wait(timeout=STOP_GRACE_S)
        _cleanup(server)
        data.restore()


def run_loadgen(
    scenario: str, server: Server, args: dict[str, Any], timeout: float, pinning: Pinning
) -> dict[str, Any]:
    """Run one load-client process against ``server``; return its JSON result."""
    cmd = [
        *pinning.client,
        PYTHON,
        str(TOOLS / "loadgen.py"),
        scenario,
        "--host",
        HOST,
        "--port",
        str(server.port),
        "--json-args",
        json.dumps(args),
        "--timeout",
        str(timeout),
    ]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout + 30)
    except subprocess.TimeoutExpired as exc:
        raise ScenarioError(
            f"load client `{scenario}` did not finish in {timeout + 30:.0f} s"
        ) from exc
    if proc.returncode != 0:
        raise ScenarioError(
            f"load client `{scenario}` exited {proc.returncode}:\n{proc.stderr[-3000:]}\n"
            f"--- server log ---\n{server.log_tail()}"
        )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise ScenarioError(f"load client `{scenario}` printed nothing")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Spec:
    """How a figure is read from a run's result dict, and its target if any."""

    key: str
    label: str
    unit: str
    target: str = ""
    limit: float | None = None  # the target is met when the median is <= limit
    at_least: float | None = None  # the target is met when the median is >= at_least


@dataclass
class Figure:
    label: str
    unit: str
    runs: list[float]
    target: str = ""
    met: bool | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.runs),
            "max": max(self.runs),
            "runs": self.runs,
            "target": self.target or None,
            "met": self.met,
        }


def figures(specs: Sequence[Spec], runs: Sequence[dict[str, Any]]) -> list[Figure]:
    out = []
    for spec in specs:
        values = [float(run[spec.key]) for run in runs if run.get(spec.key) is not None]
        if not values:
            continue
        fig = Figure(spec.label, spec.unit, values, spec.target)
        if spec.limit is not None:
            fig.met = fig.median <= spec.limit
        if spec.at_least is not None:
            fig.met = fig.median >= spec.at_least
        out.append(fig)
    return out


@dataclass
class Outcome:
    name: str
    status: str = "ok"  # ok | skipped | crashed
    note: str = ""
    figures: list[Figure] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "note": self.note or None,
            "figures": {f.label: f.to_json() for f in self.figures},
            "runs": self.runs,
        }


POST_SPECS = (
    Spec("posts_per_s", "posts/s", "req/s"),
    Spec("post_p50_ms", "post latency p50", "ms"),
    Spec("post_p99_ms", "post latency p99", "ms"),
    Spec("post_p99_over_p50", "post p99 / p50", "x", "<= 3", 3.0),
    Spec("server_cpu_us_per_post", "server CPU per post", "us"),
    Spec("server_cpu_util", "server CPU busy (1.0 = one core)", "cores"),
    Spec("errors", "non-201 replies", "count"),
)


# --------------------------------------------------------------------------- scenarios


class Bench:
    def __init__(self, settings: Settings, pinning: Pinning) -> None:
        self.s = settings
        self.pinning = pinning
        self._post_runs: dict[str, list[dict[str, Any]]] = {}
        self._post_errors: dict[str, BaseException] = {}

    # posts / floor / fsync share one set of interleaved runs --------------------------
    def post_targets(self) -> list[str]:
        wanted = set(self.s.scenarios)
        targets: list[str] = []
        if "floor" in wanted:
            targets.append("floor")
        if wanted & {"posts", "floor", "fsync", "metrics", "stock"}:
            targets.append("always")
        if "fsync" in wanted:
            targets.append("never")
        if "metrics" in wanted:
            targets.append("nometrics")
        if "stock" in wanted:
            targets.append("stock")
        return targets

    def collect_post_runs(self) -> None:
        """Run the posts load against every needed target, interleaved per repetition.

        Interleaving keeps the figures that are compared as ratios (floor %,
        fsync cost) measured under the same machine conditions.
        """
        targets = self.post_targets()
        real_targets = [t for t in targets if t != "floor"]
        if real_targets:
            try:
                real_server_check()
            except (ScenarioSkipped, ScenarioError) as exc:
                for t in real_targets:
                    self._post_errors[t] = exc
        args = {
            "clients": self.s.post_clients,
            "channels": self.s.post_channels,
            "size": self.s.message_bytes,
            "duration": self.s.duration,
            "warmup": self.s.warmup,
        }
        for rep in range(self.s.repeat):
            for target in targets:
                if target in self._post_errors:
                    continue
                log(f"posts load on {target} (repetition {rep + 1}/{self.s.repeat})")
                try:
                    extra = EXTRA_ENV.get(target)
                    with running_server(target, self.pinning, extra_env=extra) as server:
                        run_args = {
                            **args,
                            "target": "floor" if target == "floor" else "real",
                            "pid": server.pid,
                        }
                        result = run_loadgen(
                            "posts", server, run_args, self.s.loadgen_timeout(), self.pinning
                        )
                except ScenarioError as exc:
                    self._post_errors[target] = exc
                    continue
                if target == "floor":
                    result["hypercorn"] = server.health.get("hypercorn", "unknown")
                self._post_runs.setdefault(target, []).append(result)

    def _post_results(self, target: str) -> list[dict[str, Any]]:
        if target in self._post_errors:
            raise self._post_errors[target]
        return self._post_runs.get(target, [])

    def scenario_posts(self, out: Outcome) -> None:
        runs = self._post_results("always")
        out.runs = runs
        out.figures = figures(POST_SPECS, runs)

    def scenario_floor(self, out: Outcome) -> None:
        floor = self._post_results("floor")
        out.figures = figures(
            [
                Spec("posts_per_s", "floor posts/s", "req/s"),
                Spec("post_p50_ms", "floor latency p50", "ms"),
                Spec("post_p99_ms", "floor latency p99", "ms"),
                Spec("server_cpu_us_per_post", "floor CPU per post", "us"),
                Spec("errors", "floor non-201 replies", "count"),
            ],
            floor,
        )
        out.runs = [{"floor": f} for f in floor]
        modes = sorted({str(f.get("hypercorn")) for f in floor})
        out.note = f"floor app hypercorn: {', '.join(modes)}"
        try:
            ours = self._post_results("always")
        except ScenarioSkipped as exc:
            out.note += f"; {exc}; floor measured alone, no percentage"
            return
        paired = [
            {
                "pct": 100 * a["posts_per_s"] / f["posts_per_s"],
                "ours": a["posts_per_s"],
                "cpu_pct": _cpu_pct(f, a),
            }
            for f, a in zip(floor, ours, strict=False)
        ]
        out.figures += figures(
            [
                Spec("ours", "our posts/s (same run)", "req/s"),
                Spec("pct", "our posts/s as % of floor", "%", ">= 80", at_least=80.0),
                Spec("cpu_pct", "same, from server CPU per post", "%"),
            ],
            paired,
        )
        out.runs = [{"floor": f, "ours": a} for f, a in zip(floor, ours, strict=False)]

    def scenario_fsync(self, out: Outcome) -> None:
        always = self._post_results("always")
        never = self._post_results("never")
        paired = [
            {
                "always": a["posts_per_s"],
                "never": n["posts_per_s"],
                "ratio": a["posts_per_s"] / n["posts_per_s"],
                "always_p50": a["post_p50_ms"],
                "never_p50": n["post_p50_ms"],
            }
            for a, n in zip(always, never, strict=False)
        ]
        out.runs = paired
        out.figures = figures(
            [
                Spec("always", "posts/s --fsync always", "req/s"),
                Spec("never", "posts/s --fsync never", "req/s"),
                Spec("ratio", "always / never posts/s", "x", ">= 0.8", at_least=0.8),
                Spec("always_p50", "post p50 --fsync always", "ms"),
                Spec("never_p50", "post p50 --fsync never", "ms"),
            ],
            paired,
        )

    def scenario_metrics(self, out: Outcome) -> None:
        on = self._post_results("always")
        off = self._post_results("nometrics")
        paired = [
            {
                "on": a["posts_per_s"],
                "off": b["posts_per_s"],
                "ratio": a["posts_per_s"] / b["posts_per_s"],
                "on_p50": a["post_p50_ms"],
                "off_p50": b["post_p50_ms"],
            }
            for a, b in zip(on, off, strict=False)
        ]
        out.runs = paired
        out.figures = figures(
            [
                Spec("on", "posts/s, metrics on", "req/s"),
                Spec("off", "posts/s, metrics off", "req/s"),
                Spec("ratio", "on / off posts/s", "x", ">= 0.95", at_least=0.95),
                Spec("on_p50", "post p50, metrics on", "ms"),
                Spec("off_p50", "post p50, metrics off", "ms"),
            ],
            paired,
        )

    # scenarios with their own servers --------------------------------------------------

    def scenario_stock(self, out: Outcome) -> None:
        tuned = self._post_results("always")
        stock = self._post_results("stock")
        paired = [
            {
                "tuned": a["posts_per_s"],
                "stock": b["posts_per_s"],
                "ratio": a["posts_per_s"] / b["posts_per_s"],
                "stock_p99": b["post_p99_ms"],
                "tuned_cpu": a["server_cpu_us_per_post"],
                "stock_cpu": b["server_cpu_us_per_post"],
            }
            for a, b in zip(tuned, stock, strict=False)
        ]
        out.runs = paired
        out.figures = figures(
            [
                Spec("tuned", "posts/s, tuned hypercorn", "req/s"),
                Spec("stock", "posts/s, stock hypercorn (HTTP_TUNING=off)", "req/s"),
                Spec("ratio", "tuned / stock posts/s", "x"),
                Spec("stock_p99", "post p99, stock hypercorn", "ms"),
                Spec("tuned_cpu", "server CPU per post, tuned", "us"),
                Spec("stock_cpu", "server CPU per post, stock", "us"),
            ],
            paired,
        )

    # scenarios with their own servers --------------------------------------------------
    def _repeat(
        self, name: str, run_once: Callable[[Server], dict[str, Any]], **server_kw: Any
    ) -> list[dict[str, Any]]:
        real_server_check()
        runs = []
        for rep in range(self.s.repeat):
            log(f"{name} (repetition {rep + 1}/{self.s.repeat})")
            with running_server("real", self.pinning, **server_kw) as server:
                runs.append(run_once(server))
        return runs

    def scenario_claim(self, out: Outcome) -> None:
        args: dict[str, Any] = {
            "workers": self.s.claim_workers,
            "channels": self.s.claim_channels,
            "producers_per_channel": CLAIM_PRODUCERS_PER_CHANNEL,
            "stock": CLAIM_STOCK,
            "size": self.s.message_bytes,
            "duration": self.s.duration,
            "warmup": self.s.warmup,
        }
        out.runs = self._repeat(
            "claim",
            lambda srv: run_loadgen(
                "claim", srv, {**args, "pid": srv.pid}, self.s.loadgen_timeout(), self.pinning
            ),
        )
        out.figures = figures(
            [
                Spec("cycles_per_s", "claim+ack cycles/s", "cycles/s"),
                Spec("conflicts_per_claim", "409s per successful claim", "ratio"),
                Spec("server_cpu_ms_per_cycle", "server CPU per cycle (incl. restock)", "ms"),
                Spec("cycle_p50_ms", "cycle latency p50 (claim-next + ack)", "ms"),
                Spec("cycle_p99_ms", "cycle latency p99 (claim-next + ack)", "ms"),
                Spec("empty_lists_per_cycle", "empty claim-nexts per cycle (starved)", "ratio"),
                Spec("claim_p50_ms", "claim-next p50", "ms"),
                Spec("ack_p50_ms", "ack p50", "ms"),
                Spec("post_p50_ms", "producer post p50", "ms"),
                Spec("errors", "unexpected replies", "count"),
            ],
            out.runs,
        )
        floor = self._post_runs.get("floor", [])
        if floor:  # the floor's runs of this same invocation, paired by repetition
            paired = [
                {"pct": 100 * c["cycles_per_s"] / f["posts_per_s"]}
                for c, f in zip(out.runs, floor, strict=False)
            ]
            out.figures += figures(
                [Spec("pct", "claim+ack cycles/s as % of floor", "%", ">= 40", at_least=40.0)],
                paired,
            )

    def scenario_claimwait(self, out: Outcome) -> None:
        args: dict[str, Any] = {
            "workers": self.s.claim_workers,
            "producers": 16,
            "backlog": 25,
            "wait": 10,
            "size": self.s.message_bytes,
            "duration": self.s.duration,
            "warmup": self.s.warmup,
        }
        out.runs = self._repeat(
            "claimwait",
            lambda srv: run_loadgen(
                "claimwait", srv, args, self.s.loadgen_timeout(15), self.pinning
            ),
        )
        out.figures = figures(
            [
                Spec("claims_per_s", "claims/s, 50 parked claim-next workers", "claims/s"),
                Spec("handoff_p50_ms", "post -> claimed latency p50", "ms"),
                Spec("handoff_p99_ms", "post -> claimed latency p99", "ms"),
                Spec("post_p50_ms", "producer post p50", "ms"),
                Spec("ack_p50_ms", "ack p50", "ms"),
                Spec("errors", "unexpected replies", "count"),
            ],
            out.runs,
        )

    def scenario_wake(self, out: Outcome) -> None:
        args = {
            "waiters": self.s.wake_waiters,
            "duration": self.s.duration,
            "gap": self.s.wake_gap_s,
            "wait": 30,
        }
        out.runs = self._repeat(
            "wake",
            lambda srv: run_loadgen("wake", srv, args, self.s.loadgen_timeout(10), self.pinning),
        )
        out.figures = figures(
            [
                Spec("wake_p50_ms", "wake-up latency p50", "ms"),
                Spec("wake_p99_ms", "wake-up latency p99", "ms"),
                Spec("get_p50_ms", "GET /v1/keys/me p50", "ms"),
                Spec("get_p99_ms", "GET /v1/keys/me p99", "ms"),
                Spec("wake_p50_over_get_p50", "wake p50 / GET p50", "x", "<= 2", 2.0),
                Spec("wake_p99_over_get_p99", "wake p99 / GET p99", "x", "<= 5", 5.0),
                Spec("wake_count", "wake-ups measured", "count"),
                Spec("lost_wakes", "wake-ups lost (> 5 s)", "count"),
            ],
            out.runs,
        )

    def scenario_idle(self, out: Outcome) -> None:
        real_server_check()
        max_waiters = max(self.s.idle_sizes) + 1000
        runs: list[dict[str, Any]] = []
        for rep in range(self.s.repeat):
            merged: dict[str, Any] = {}
            for n in self.s.idle_sizes:
                log(f"idle {n} waiters (repetition {rep + 1}/{self.s.repeat})")
                with running_server(
                    "real", self.pinning, max_waiters=max_waiters, max_wait_s=IDLE_WAIT_S
                ) as srv:
                    args = {"waiters": n, "pid": srv.pid, "wait": IDLE_WAIT_S}
                    timeout = self.s.loadgen_timeout(60 + n / 100)
                    result = run_loadgen("idle", srv, args, timeout, self.pinning)
                merged.update({f"{k}@{n}": v for k, v in result.items()})
            runs.append(merged)
        out.runs = runs
        specs = []
        for n in self.s.idle_sizes:
            specs += [
                Spec(
                    f"rss_per_waiter_kib@{n}",
                    f"{n:,} waiters: RSS per waiter",
                    "KiB",
                    *(("<= 36", 36.0) if n == IDLE_TARGET_WAITERS else ()),
                ),
                Spec(
                    f"fanout_all_ms@{n}",
                    f"{n:,} waiters: post -> all answered",
                    "ms",
                    *(("<= 2000", 2000.0) if n == IDLE_TARGET_WAITERS else ()),
                ),
                Spec(f"fanout_p50_ms@{n}", f"{n:,} waiters: post -> half answered", "ms"),
                Spec(f"fanout_server_cpu_s@{n}", f"{n:,} waiters: server CPU for the fan-out", "s"),
                Spec(f"missing@{n}", f"{n:,} waiters: not woken", "count"),
                Spec(f"premature@{n}", f"{n:,} waiters: answered before the post", "count"),
            ]
        out.figures = figures(specs, runs)

    def scenario_stream(self, out: Outcome) -> None:
        real_server_check()
        n = self.s.stream_count
        runs: list[dict[str, Any]] = []
        for rep in range(self.s.repeat):
            log(f"stream {n} open streams (repetition {rep + 1}/{self.s.repeat})")
            with running_server("real", self.pinning, max_waiters=n + 1000, max_wait_s=30) as srv:
                args = {"streams": n}
                runs.append(
                    run_loadgen("stream", srv, args, self.s.loadgen_timeout(30), self.pinning)
                )
        out.runs = runs
        specs = [
            Spec("fanout_all_ms", f"{n:,} streams: post -> all delivered", "ms"),
            Spec("fanout_p50_ms", f"{n:,} streams: post -> half delivered", "ms"),
            Spec("missing", f"{n:,} streams: not delivered", "count"),
        ]
        out.figures = figures(specs, runs)

    # ------------------------------------------------------------------ restart (hook)
    def scenario_restart(self, out: Outcome) -> None:
        """HOOK: restart time on a generated data set. Skipped until tools/gen_data.py exists.

        The generator's interface: ``python tools/gen_data.py --dir DIR
        --messages N`` writes one snapshot holding N live messages in 10
        claimable channels (what a clean shutdown leaves). This hook then
        times ``backchannel serve`` from spawn to ``GET /health`` 200 on that
        directory and reads its RSS. N is RESTART_MESSAGES (quick: 10,000).
        """
        generator = TOOLS / "gen_data.py"
        if not generator.exists():
            raise ScenarioSkipped("not yet available (tools/gen_data.py does not exist)")
        real_server_check()
        sizes = (10_000,) if self.s.quick else RESTART_MESSAGES
        runs = []
        for rep in range(self.s.repeat):
            merged: dict[str, Any] = {}
            for messages in sizes:
                data_dir = tempfile.mkdtemp(prefix="bench-restart-")
                try:
                    log(f"restart: {messages:,} messages (repetition {rep + 1}/{self.s.repeat})")
                    cmd = [PYTHON, str(generator), "--dir", data_dir, "--messages", str(messages)]
                    gen = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
                    if gen.returncode != 0:
                        raise ScenarioError(
                            f"gen_data.py exited {gen.returncode}: {gen.stderr[-2000:]}"
                        )
                    with running_server("real", self.pinning, data_dir=data_dir) as srv:
                        merged[f"ready_s@{messages}"] = srv.ready_s
                        merged[f"rss_mib@{messages}"] = _rss_kib(srv.pid) / 1024
                    if messages == sizes[0]:
                        probe_env = {"BACKCHANNEL_SNAPSHOT_INTERVAL_SECONDS": "2"}
                        with running_server(
                            "real", self.pinning, data_dir=data_dir, extra_env=probe_env
                        ) as srv:
                            merged.update(_stall_probe(srv.port, STALL_PROBE_S))
                finally:
                    shutil.rmtree(data_dir, ignore_errors=True)
            runs.append(merged)
        out.runs = runs
        specs = []
        for messages in sizes:
            specs += [
                Spec(
                    f"ready_s@{messages}",
                    f"restart {messages:,}: spawn -> /health 200",
                    "s",
                    *(("<= 10", 10.0) if messages == 1_000_000 else ()),
                ),
                Spec(f"rss_mib@{messages}", f"restart {messages:,}: RSS after load", "MiB"),
            ]
        specs += [
            Spec("stall_max_ms", f"snapshots of {sizes[0]:,}: worst request", "ms", "<= 50", 50.0),
            Spec("stall_p50_ms", f"snapshots of {sizes[0]:,}: request p50", "ms"),
            Spec("stall_requests", "snapshot probe requests", "count"),
        ]
        out.figures = figures(specs, runs)

    # ------------------------------------------------------------------ scale (issue 15)
    def _hot_channel(self, server: Server) -> dict[str, Any]:
        """The posts load, all 50 clients on one new channel of ``server``."""
        args = {
            "clients": self.s.post_clients,
            "channels": 1,
            "size": self.s.message_bytes,
            "duration": self.s.duration,
            "warmup": self.s.warmup,
            "target": "real",
            "pid": server.pid,
        }
        return run_loadgen("posts", server, args, self.s.loadgen_timeout(), self.pinning)

    def _hot_rounds(
        self, empty_srv: Server, full_srv: Server
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The hot-channel load on both servers, alive together, in alternating rounds.

        The machine's background load drifts over a minute; rounds in the
        order empty, full, full, empty, ... give both servers the same
        share of it, so their ratio measures the idle channels, not the drift.
        """
        empty: list[dict[str, Any]] = []
        hot: list[dict[str, Any]] = []
        for n in range(self.s.scale_rounds):
            pair = [(empty_srv, empty), (full_srv, hot)]
            for srv, into in pair if n % 2 == 0 else reversed(pair):
                into.append(self._hot_channel(srv))
        return empty, hot

    def _probes(self, notes: list[str]) -> dict[str, float]:
        """The per-channel and per-message probes of tools/scale_probe.py, where they exist."""
        channels = min(self.s.scale_channels, SCALE_PROBE_MAX[0])
        messages = min(max(self.s.scale_messages, 1), SCALE_PROBE_MAX[1])
        found: dict[str, float] = {}
        for function, n, prefix in (
            ("idle_channel_cost", channels, "probe_channel"),
            ("live_message_cost", messages, "probe_message"),
        ):
            log(f"scale: {function}({n:,})")
            try:
                figures_ = run_probe(function, n, PYTHON)
            except Unavailable as exc:
                notes.append(f"{function}: {exc}")
                continue
            except RuntimeError as exc:
                raise ScenarioError(str(exc)) from exc
            found.update({f"{prefix}:{k}": v for k, v in figures_.items()})
        return found

    def _guard_memory(self, probes: dict[str, float]) -> None:
        """Skip rather than push a shared machine into the OOM killer."""
        probed = probes.get("probe_channel:rss_bytes_per_channel", 0.0)
        channel_b = max(GUARD_CHANNEL_B, probed)
        message_b = GUARD_MESSAGE_B  # the probe's figure is for live, decoded messages
        need = 1.5 * (self.s.scale_channels * channel_b + self.s.scale_messages * message_b)
        available = mem_available_bytes()
        if available is not None and need > available:
            raise ScenarioSkipped(
                f"{self.s.scale_channels:,} channels and {self.s.scale_messages:,} messages "
                f"need about {need / 2**30:.1f} GiB (1.5 x {channel_b:,.0f} B per channel and "
                f"{message_b:,.0f} B per message); {available / 2**30:.1f} GiB available"
            )

    def scenario_scale(self, out: Outcome) -> None:
        """Issue 15's scale scenario (module docstring): one data set, reused each repetition."""
        real_server_check()
        channels, messages = self.s.scale_channels, self.s.scale_messages
        notes: list[str] = []
        runs: list[dict[str, Any]] = []
        probes = self._probes(notes)
        self._guard_memory(probes)
        log(f"scale: generating {channels:,} channels with {messages:,} messages")
        try:
            full = DataSet.generate(channels, messages, PYTHON)
            bare = DataSet.generate(channels, 0, PYTHON)
        except Unavailable as exc:
            raise ScenarioSkipped(str(exc)) from exc
        except RuntimeError as exc:
            raise ScenarioError(str(exc)) from exc
        try:
            for rep in range(self.s.repeat):
                log(f"scale (repetition {rep + 1}/{self.s.repeat})")
                run: dict[str, Any] = {"gen_s": full.seconds, **probes}
                with server_on(bare, self.pinning) as srv:
                    run["rss_channels_mib"] = _settled_rss_kib(srv.pid) / 1024
                    run["ready_channels_s"] = srv.ready_s
                with (
                    running_server("real", self.pinning) as empty_srv,
                    server_on(full, self.pinning) as full_srv,
                ):
                    run["rss_empty_mib"] = _settled_rss_kib(empty_srv.pid) / 1024
                    run["ready_s"] = full_srv.ready_s
                    run["rss_full_mib"] = _settled_rss_kib(full_srv.pid) / 1024
                    empty, hot = self._hot_rounds(empty_srv, full_srv)
                    run["rss_after_hot_mib"] = _rss_kib(full_srv.pid) / 1024
                run.update(_scale_derived(run, empty, hot, channels, messages))
                run["empty"], run["hot"] = empty, hot
                runs.append(run)
                if rep == 0:  # the probes measure code, not load: once is enough
                    probes = {}
        finally:
            full.remove()
            bare.remove()
        out.runs = runs
        out.note = "; ".join(notes)
        out.figures = figures(_scale_specs(channels, messages), runs)

    def run(self) -> list[Outcome]:
        if self.post_targets():
            self.collect_post_runs()
        outcomes = []
        for name in self.s.scenarios:
            out = Outcome(name)
            method: Callable[[Outcome], None] = getattr(self, f"scenario_{name}")
            try:
                method(out)
            except ScenarioSkipped as exc:
                out.status, out.note = "skipped", str(exc)
            except Exception as exc:
                out.status, out.note = "crashed", f"{type(exc).__name__}: {exc}"
            if out.status == "ok" and not out.figures:
                out.status, out.note = "crashed", "no figures produced"
            if out.status != "ok":
                log(f"{name}: {out.status}: {out.note}")
            outcomes.append(out)
        return outcomes


def _scale_derived(
    run: dict[str, Any],
    empty: list[dict[str, Any]],
    hot: list[dict[str, Any]],
    channels: int,
    messages: int,
) -> dict[str, float]:
    """Per-channel and per-message RSS (end to end) and the hot/empty ratios of one run.

    Posts/s and p99 are medians over the rounds; each ratio is the median
    of the rounds' own ratios (each round's pair ran back to back).
    """

    def median(rounds: list[dict[str, Any]], name: str) -> float:
        return float(statistics.median(r[name] for r in rounds))

    def ratio(name: str) -> float:
        return float(statistics.median(h[name] / e[name] for h, e in zip(hot, empty, strict=True)))

    derived = {
        "channel_b": (run["rss_channels_mib"] - run["rss_empty_mib"]) * 2**20 / channels,
        "hot_posts_per_s": median(hot, "posts_per_s"),
        "empty_posts_per_s": median(empty, "posts_per_s"),
        "hot_p99_ms": median(hot, "post_p99_ms"),
        "empty_p99_ms": median(empty, "post_p99_ms"),
        "posts_ratio": ratio("posts_per_s"),
        "p99_ratio": ratio("post_p99_ms"),
        "hot_errors": sum(r["errors"] for r in hot + empty),
    }
    if messages:
        derived["message_b"] = (run["rss_full_mib"] - run["rss_channels_mib"]) * 2**20 / messages
    return derived


def _scale_specs(channels: int, messages: int) -> list[Spec]:
    size = f"{channels:,} ch / {messages:,} msg"
    restart_target: tuple[str, float] | tuple[()] = ()
    if messages >= 1_000_000:  # issue 15: 1M in under 4 s, 10M in under 40 s
        limit = 4.0 * messages / 1_000_000
        restart_target = (f"<= {limit:g}", limit)
    today_channel = f"today ~{TODAY_CHANNEL_B / 1024:g} KiB"
    today_message = f"today ~{TODAY_MESSAGE_B / 1024:g} KiB"
    return [
        Spec("ready_s", f"{size}: restart, spawn -> /health 200", "s", *restart_target),
        Spec("ready_channels_s", f"{channels:,} channels, no message: restart", "s"),
        Spec("rss_full_mib", f"{size}: RSS after load", "MiB"),
        Spec("rss_after_hot_mib", f"{size}: RSS after the hot-channel run", "MiB"),
        Spec("rss_empty_mib", "empty server: RSS", "MiB"),
        Spec(
            "channel_b", f"RSS per idle channel, end to end ({today_channel})", "B", "<= 2048", 2048
        ),
        Spec(
            "probe_channel:rss_bytes_per_channel",
            f"RSS per idle channel, probe ({today_channel})",
            "B",
            "<= 2048",
            2048,
        ),
        Spec("message_b", f"RSS per live message incl. content, end to end ({today_message})", "B"),
        Spec("probe_message:rss_b", f"RSS per live message, probe ({today_message})", "B"),
        Spec(
            "probe_message:beyond_b",
            "per live message beyond content+metadata, probe",
            "B",
            "<= 500",
            500,
        ),
        Spec("hot_posts_per_s", f"hot channel posts/s, {size} idle", "req/s"),
        Spec("empty_posts_per_s", "same load, empty server (same run)", "req/s"),
        Spec("posts_ratio", "hot / empty posts/s", "x", ">= 0.9", at_least=0.9),
        Spec("hot_p99_ms", f"hot channel post p99, {size} idle", "ms"),
        Spec("empty_p99_ms", "post p99, empty server (same run)", "ms"),
        Spec("p99_ratio", "hot / empty post p99", "x", "<= 1.1", 1.1),
        Spec("hot_errors", "non-201 replies (both servers)", "count"),
        Spec("gen_s", f"{size}: gen_data.py", "s"),
    ]


def _stall_probe(port: int, seconds: float) -> dict[str, float]:
    """Sequential authenticated GETs for ``seconds`` while the server snapshots.

    The worst latency is the longest stall a request saw; the server holds
    the generated messages and snapshots every 2 s, so several snapshots
    fall inside the window.
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    conn.request("POST", "/v1/keys", body=b'{"agent_label":"stall-probe"}', headers=JSON_HEADERS)
    key = json.loads(conn.getresponse().read())["key"]
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(latencies) < 1_000_000:
        started = time.perf_counter()
        conn.request("GET", "/v1/keys/me", headers={"X-API-Key": key})
        conn.getresponse().read()
        latencies.append((time.perf_counter() - started) * 1000)
    conn.close()
    latencies.sort()
    return {
        "stall_max_ms": latencies[-1],
        "stall_p50_ms": latencies[len(latencies) // 2],
        "stall_requests": float(len(latencies)),
    }


def _cpu_pct(floor: dict[str, Any], ours: dict[str, Any]) -> float | None:
    """Floor CPU per post / our CPU per post, in %: throughput share on an idle core."""
    f, o = floor.get("server_cpu_us_per_post"), ours.get("server_cpu_us_per_post")
    return 100 * f / o if f and o else None


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _settled_rss_kib(pid: int, timeout_s: float = 15.0) -> int:
    """RSS once the server has gone quiet (no CPU for half a second) after starting.

    A server answers ``/health`` before it has loaded the MCP SDK in the
    background (~30 MiB): RSS read at once would depend on that race.
    """
    deadline = time.monotonic() + timeout_s
    quiet, last = 0, _cpu_ticks(pid)
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(0.25)
        now = _cpu_ticks(pid)
        quiet = quiet + 1 if now - last <= 1 else 0
        last = now
    return _rss_kib(pid)


def _cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


# --------------------------------------------------------------------------- output


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(outcomes: Sequence[Outcome], header: str) -> None:
    rows = [("scenario", "figure", "median", "min", "max", "unit", "target")]
    notes = []
    for out in outcomes:
        if out.status != "ok":
            rows.append((out.name, f"[{out.status.upper()}]", "", "", "", "", ""))
            notes.append(
                f"{out.name}: {out.status}: {out.note.splitlines()[0] if out.note else ''}"
            )
            continue
        for fig in out.figures:
            target = ""
            if fig.target:
                target = f"{fig.target} {'ok' if fig.met else 'MISSED'}"
            rows.append(
                (
                    out.name,
                    fig.label,
                    fmt(fig.median),
                    fmt(min(fig.runs)),
                    fmt(max(fig.runs)),
                    fig.unit,
                    target,
                )
            )
        if out.note:
            notes.append(f"{out.name}: {out.note}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2, 3, 4}

    def line(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    print(header)
    print(line(rows[0]))
    print("  ".join("-" * w for w in widths))
    for row in rows[1:]:
        print(line(row))
    for note in notes:
        print(f"note: {note}")


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    nofile = raise_nofile_limit()
    pinning = choose_pinning()
    started = dt.datetime.now(dt.UTC)
    affinity = sorted(os.sched_getaffinity(0))
    machine: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "usable_cores": affinity,
        "pinning": pinning.note,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "somaxconn": somaxconn(),
        "nofile": nofile,
    }
    load_before = os.getloadavg()
    log(f"scenarios: {', '.join(settings.scenarios)}; {pinning.note}")
    if load_before[0] > 0.5:
        log(f"machine is not idle (load average {load_before[0]:.2f}): expect noisy figures")
    outcomes = Bench(settings, pinning).run()
    finished = dt.datetime.now(dt.UTC)
    load_after = os.getloadavg()
    machine["loadavg_1m_before"] = load_before[0]
    machine["loadavg_1m_after"] = load_after[0]

    header = (
        f"Backchannel benchmark {started:%Y-%m-%d %H:%M} UTC"
        f"{' (quick)' if settings.quick else ''}: {os.cpu_count()} cores "
        f"(usable {len(affinity)}), {pinning.note}; {settings.repeat} repetition(s) x "
        f"{settings.duration:g} s; median/min/max over repetitions, latencies are p50/p99 per run"
        f"; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print_table(outcomes, header)
    report = {
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "machine": machine,
        "settings": {
            "quick": settings.quick,
            "repeat": settings.repeat,
            "duration_s": settings.duration,
            "warmup_s": settings.warmup,
            "idle_sizes": list(settings.idle_sizes),
            "post_clients": settings.post_clients,
            "message_bytes": settings.message_bytes,
            "scale_channels": settings.scale_channels,
            "scale_messages": settings.scale_messages,
        },
        "scenarios": {out.name: out.to_json() for out in outcomes},
    }
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {settings.out}")
    crashed = [out.name for out in outcomes if out.status == "crashed"]
    for out in outcomes:
        if out.status == "crashed":
            print(f"\n--- {out.name} crashed ---\n{out.note}", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
