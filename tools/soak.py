"""Soak: mixed load for N minutes against a real server; fail on growth, 5xx, loss.

``python tools/soak.py --minutes N`` starts ``python -m backchannel serve`` on
a free loopback port with a fresh data directory and drives it from this
process (trio + httpx):

- three *lanes*, each a succession of claimable channels ("generations" of
  ``--generation-seconds``): two producers post (one post in 20 carries an
  ``Idempotency-Key`` and is sent twice: the retry must replay the same
  message), three workers claim with 1 s leases and then ack (60 %),
  release (15 %) or walk away and let the lease lapse (25 %); at the end
  of a generation the lane stops posting, drains, checks its ledger and
  deletes the channel;
- four long-polls on an idle channel that time out (``wait=2``);
- two clients that start a long-poll and disconnect after 0.3 s;
- channel churn: create a broadcast channel, post three times, delete it.

Every ``--sample-seconds`` it samples the server's RSS and open file
descriptors (``/proc/<pid>``), its trio task count and parked waiters (the
server's ``vitals`` log line, ``BACKCHANNEL_VITALS_LOG_SECONDS``) and the
size of the log segments in the data directory.

It fails (exit status 1) when:

- any figure grows after warm-up: the median of the last third of the
  samples after warm-up exceeds the median of the first third by more than
  the stated tolerance (``TOLERANCES``: relative + absolute);
- any request is answered 5xx, or fails in transport (except the
  deliberate disconnects);
- a ledger check finds a message lost (posted, answered 201, never acked
  once its lane drained, and not listed by the server either; one still
  listed when the 60 s drain ends is counted ``undrained``), acked twice,
  or claimed by a second worker while another's lease was still live (by
  the client's clock, with a 250 ms margin).

The one post in 20 that carries a key leaves a stored reply (about
1.5 KiB) for the replay window, 24 h by default: a growth bounded only by
a day of traffic, which no run of minutes could tell from a leak. The soak
runs the server with a two-minute window purged every 30 s, so the stored
replies reach their bound within the warm-up and their count is judged
like the rest (and the purge itself is soaked). The samples also carry the
server's count of Python memory blocks (``py_blocks``), reported but not
judged, so a rise in RSS can be told apart: objects we keep, or the
allocator's fragmentation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

TOLERANCES: dict[str, tuple[float, float]] = {
    # figure: (relative, absolute) growth allowed, last third vs first third
    "rss_kib": (0.05, 6144.0),  # was (0.10, 8192) before the heap was trimmed
    "open_fds": (0.0, 16.0),
    "tasks": (0.25, 40.0),
    "parked_waiters": (0.0, 20.0),
    "journal_bytes": (0.5, 1 << 20),
    "idempotency_entries": (0.5, 200.0),  # a sawtooth of window + purge interval
}
LEASE_SECONDS = 1
IDEMPOTENCY_WINDOW_S = 120  # the server's replay window during a soak
PURGE_INTERVAL_S = 30


@dataclass
class Ledger:
    """What one claimable channel of one generation saw."""

    posted: set[str] = field(default_factory=set)
    acked: dict[str, int] = field(default_factory=dict)
    leases: dict[str, tuple[str, float, bool]] = field(default_factory=dict)
    ready: list[str] = field(default_factory=list)


@dataclass
class Soak:
    url: str
    pid: int
    data_dir: Path
    log_path: Path
    deadline: float
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def fail(self, text: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(text)
        self.count("failures")


async def call(
    soak: Soak, http: httpx.AsyncClient, method: str, path: str, **kw: Any
) -> httpx.Response | None:
    try:
        response = await http.request(method, path, **kw)
    except httpx.HTTPError as exc:
        soak.fail(f"{method} {path}: transport error {exc!r}")
        return None
    soak.count(f"{method} {response.status_code}")
    if response.status_code >= 500:
        soak.fail(f"{method} {path}: {response.status_code} {response.text[:200]}")
    return response


async def lane(soak: Soak, http: httpx.AsyncClient, index: int, generation_s: float) -> None:
    generation = 0
    while trio.current_time() < soak.deadline:
        generation += 1
        name = f"soak-{index}-{generation}"
        made = await call(
            soak, http, "POST", "/v1/channels", json={"name": name, "mode": "claimable"}
        )
        if made is None or made.status_code != 201:
            soak.fail(f"creating {name}: {made.text[:200] if made else 'no answer'}")
            await trio.sleep(1)
            continue
        cid = made.json()["id"]
        ledger = Ledger()
        posting = trio.Event()  # set when producers must stop
        end = min(trio.current_time() + generation_s, soak.deadline)
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(produce, soak, http, cid, ledger, posting)
            for worker in range(3):
                nursery.start_soon(work, soak, http, ledger, posting, f"w{index}.{worker}")
            await trio.sleep_until(end)
            posting.set()
        await check_ledger(soak, http, name, cid, ledger)
        gone = await call(soak, http, "DELETE", f"/v1/channels/{cid}")
        if gone is None or gone.status_code not in (200, 204):
            soak.fail(f"deleting {name}: {gone.status_code if gone else 'no answer'}")
        soak.count("generations")


async def produce(
    soak: Soak, http: httpx.AsyncClient, cid: str, ledger: Ledger, stop: trio.Event
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        body = {"content": f"job {n} " + "x" * random.randrange(10, 300)}
        headers = {"Idempotency-Key": str(uuid.uuid4())} if n % 20 == 0 else {}
        answer = await call(
            soak, http, "POST", f"/v1/channels/{cid}/messages", json=body, headers=headers
        )
        if answer is None or answer.status_code != 201:
            continue
        mid = answer.json()["message"]["id"]
        ledger.posted.add(mid)
        ledger.ready.append(mid)
        if headers:
            again = await call(
                soak, http, "POST", f"/v1/channels/{cid}/messages", json=body, headers=headers
            )
            if again is not None and (
                again.status_code != 201 or again.json()["message"]["id"] != mid
            ):
                soak.fail(f"idempotent retry of {mid} answered {again.status_code}")
            soak.count("idempotent retries")
        await trio.sleep(0.002)


def _requeue_later(nursery: trio.Nursery, ledger: Ledger, mid: str, delay: float) -> None:
    async def later() -> None:
        await trio.sleep(delay)
        ledger.ready.append(mid)

    nursery.start_soon(later)


async def work(
    soak: Soak, http: httpx.AsyncClient, ledger: Ledger, posting: trio.Event, actor: str
) -> None:
    drain_until = None
    async with trio.open_nursery() as later:
        while True:
            if posting.is_set():
                drain_until = drain_until or trio.current_time() + 60
                if len(ledger.acked) >= len(ledger.posted) or trio.current_time() > drain_until:
                    break
            if not ledger.ready:
                await trio.sleep(0.02)
                continue
            mid = ledger.ready.pop(0)
            if ledger.acked.get(mid):
                continue
            claimed = await call(
                soak,
                http,
                "POST",
                f"/v1/messages/{mid}/claim-with-lease",
                json={"actor": actor, "lease_seconds": LEASE_SECONDS},
            )
            if claimed is None or claimed.status_code != 200:
                if claimed is not None and claimed.status_code not in (409,):
                    soak.fail(f"claim {mid}: {claimed.status_code} {claimed.text[:120]}")
                _requeue_later(later, ledger, mid, 0.3)
                continue
            now = time.monotonic()
            held = ledger.leases.get(mid)
            if held is not None and not held[2] and now < held[1] - 0.25:
                soak.fail(f"{mid} claimed by {actor} while {held[0]}'s lease was live")
            ledger.leases[mid] = (actor, now + LEASE_SECONDS, False)
            roll = random.random()
            if roll < 0.6:
                acked = await call(
                    soak, http, "POST", f"/v1/messages/{mid}/ack", json={"actor": actor}
                )
                if acked is not None and acked.status_code == 200:
                    ledger.acked[mid] = ledger.acked.get(mid, 0) + 1
                    ledger.leases[mid] = (actor, 0.0, True)
                else:
                    _requeue_later(later, ledger, mid, LEASE_SECONDS + 0.3)
            elif roll < 0.75:
                released = await call(
                    soak, http, "POST", f"/v1/messages/{mid}/release", json={"actor": actor}
                )
                if released is not None and released.status_code == 200:
                    ledger.leases[mid] = (actor, 0.0, True)
                    ledger.ready.append(mid)
                else:
                    _requeue_later(later, ledger, mid, LEASE_SECONDS + 0.3)
            else:
                soak.count("leases left to lapse")
                _requeue_later(later, ledger, mid, LEASE_SECONDS + 0.3)
        later.cancel_scope.cancel()


async def listed(soak: Soak, http: httpx.AsyncClient, cid: str) -> set[str]:
    """Ids of the channel's live messages, as the server lists them."""
    ids: set[str] = set()
    cursor = "0"
    for _ in range(10_000):
        page = await call(
            soak,
            http,
            "GET",
            f"/v1/channels/{cid}/messages",
            params={"cursor": cursor, "limit": 100},
        )
        if page is None or page.status_code != 200 or not page.json()["data"]:
            break
        ids.update(m["id"] for m in page.json()["data"])
        cursor = page.json()["next_cursor"]
    return ids


async def check_ledger(
    soak: Soak, http: httpx.AsyncClient, name: str, cid: str, ledger: Ledger
) -> None:
    """Lost: answered 201, never acked, and not listed by the server either.

    A message still listed when the drain's deadline passed (a busy machine
    drains slowly) is counted as ``undrained``, not lost.
    """
    unacked = ledger.posted - set(ledger.acked)
    if unacked:
        still_there = unacked & await listed(soak, http, cid)
        soak.counts["undrained"] = soak.counts.get("undrained", 0) + len(still_there)
        lost = unacked - still_there
        if lost:
            soak.fail(
                f"{name}: {len(lost)} answered posts neither acked nor listed: {sorted(lost)[:3]}"
            )
    twice = [m for m, n in ledger.acked.items() if n > 1]
    if twice:
        soak.fail(f"{name}: {len(twice)} messages acked twice, e.g. {twice[:3]}")
    soak.counts["messages through"] = soak.counts.get("messages through", 0) + len(ledger.acked)


async def long_polls(soak: Soak, http: httpx.AsyncClient, cid: str, leave: bool) -> None:
    path = f"/v1/channels/{cid}/messages"
    while trio.current_time() < soak.deadline:
        if leave:
            with trio.move_on_after(0.3):
                await http.get(path, params={"wait": 5, "cursor": "0"})
            soak.count("polls abandoned")
            continue
        answer = await call(soak, http, "GET", path, params={"wait": 2, "cursor": "0"})
        if answer is not None and (answer.status_code != 200 or answer.json()["data"]):
            soak.fail(f"idle long-poll answered {answer.status_code} {answer.text[:100]}")


async def churn(soak: Soak, http: httpx.AsyncClient) -> None:
    n = 0
    while trio.current_time() < soak.deadline:
        n += 1
        made = await call(
            soak, http, "POST", "/v1/channels", json={"name": f"churn-{n}", "mode": "broadcast"}
        )
        if made is None or made.status_code != 201:
            continue
        cid = made.json()["id"]
        for i in range(3):
            await call(soak, http, "POST", f"/v1/channels/{cid}/messages", json={"content": str(i)})
        await call(soak, http, "DELETE", f"/v1/channels/{cid}")
        soak.count("channels churned")
        await trio.sleep(0.3)


_VITALS = re.compile(rb"vitals (\{.*\})")


def sample(soak: Soak, started: float) -> dict[str, Any]:
    status = Path(f"/proc/{soak.pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fds = len(os.listdir(f"/proc/{soak.pid}/fd"))
    journal = sum(p.stat().st_size for p in soak.data_dir.glob("log-*.bclog"))
    lines = _VITALS.findall(soak.log_path.read_bytes()[-8192:])
    vitals = json.loads(lines[-1]) if lines else {}
    return {
        "t": round(time.monotonic() - started, 1),
        "rss_kib": rss,
        "open_fds": fds,
        "tasks": vitals.get("tasks", -1),
        "parked_waiters": vitals.get("parked_waiters", -1),
        "journal_bytes": journal,
        "py_blocks": vitals.get("py_blocks", -1),
        "idempotency_entries": vitals.get("idempotency_entries", -1),
    }


async def sampler(soak: Soak, every: float, started: float) -> None:
    while trio.current_time() < soak.deadline:
        await trio.sleep(every)
        soak.samples.append(await trio.to_thread.run_sync(sample, soak, started))


def growth(samples: Sequence[dict[str, Any]], warmup_s: float) -> list[dict[str, Any]]:
    """Per figure: median of the first and last third after warm-up, and the verdict."""
    after = [s for s in samples if s["t"] >= warmup_s]
    third = max(1, len(after) // 3)
    verdicts = []
    for name, (rel, absolute) in TOLERANCES.items():
        first = statistics.median(s[name] for s in after[:third])
        last = statistics.median(s[name] for s in after[-third:])
        limit = first * (1 + rel) + absolute
        verdicts.append(
            {
                "figure": name,
                "first": first,
                "last": last,
                "max": max(s[name] for s in after),
                "limit": limit,
                "flat": last <= limit,
            }
        )
    return verdicts


async def drive(soak: Soak, sample_s: float, generation_s: float) -> None:
    started = time.monotonic()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with (
        httpx.AsyncClient(base_url=soak.url, timeout=30, limits=limits) as http,
        httpx.AsyncClient(base_url=soak.url, timeout=30) as leaving,
    ):
        key = (await http.post("/v1/keys", json={"agent_label": "soak"})).json()["key"]
        http.headers["X-API-Key"] = leaving.headers["X-API-Key"] = key
        idle = (await http.post("/v1/channels", json={"name": "idle", "mode": "broadcast"})).json()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler, soak, sample_s, started)
            for index in range(3):
                nursery.start_soon(lane, soak, http, index, generation_s)
            for _ in range(4):
                nursery.start_soon(long_polls, soak, http, idle["id"], False)
            for _ in range(2):
                nursery.start_soon(long_polls, soak, leaving, idle["id"], True)
            nursery.start_soon(churn, soak, http)
    soak.samples.append(sample(soak, started))


def start_server(
    data_dir: Path, log_path: Path, sample_s: float, snapshot_s: float
) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        **os.environ,
        "BACKCHANNEL_RATE_LIMIT": "0",
        "BACKCHANNEL_KEY_MINT_LIMIT": "0",
        "BACKCHANNEL_LEASE_MIN_SECONDS": "1",
        "BACKCHANNEL_LONGPOLL_MAX_WAIT_SECONDS": "5",
        "BACKCHANNEL_SNAPSHOT_INTERVAL_SECONDS": str(snapshot_s),
        "BACKCHANNEL_SANDBOX_HEARTBEAT_SECONDS": "0",
        "BACKCHANNEL_VITALS_LOG_SECONDS": str(max(1.0, sample_s / 2)),
        # no per-request log lines: they would bury the vitals line in the log's tail
        "BACKCHANNEL_ACCESS_LOG": "false",
        # a two-minute replay window, purged every 30 s: the stored replies reach their
        # bound within the warm-up instead of growing for the whole run (24 h by default)
        "BACKCHANNEL_IDEMPOTENCY_TTL_SECONDS": str(IDEMPOTENCY_WINDOW_S),
        "BACKCHANNEL_PURGE_INTERVAL_SECONDS": str(PURGE_INTERVAL_S),
    }
    command = [sys.executable, "-m", "backchannel", "serve", "--port", "0"]
    command += ["--data-dir", str(data_dir)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(rb"serving on (http://\S+)", log_path.read_bytes())
        if found:
            return proc, found.group(1).decode()
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log_path.read_text()[-2000:]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--warmup-seconds", type=float, default=None)
    parser.add_argument("--generation-seconds", type=float, default=30.0)
    parser.add_argument(
        "--snapshot-seconds",
        type=float,
        default=15.0,
        help="the server's snapshot interval: the log is a sawtooth of about two of them, "
        "so a short soak needs a short interval to reach its steady state",
    )
    parser.add_argument("--json", type=Path, help="write samples and verdicts here")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    warmup = args.warmup_seconds if args.warmup_seconds is not None else max(15.0, seconds / 5)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        data_dir, log_path = Path(tmp) / "data", Path(tmp) / "server.log"
        proc, url = start_server(data_dir, log_path, args.sample_seconds, args.snapshot_seconds)
        soak = Soak(url, proc.pid, data_dir, log_path, deadline=0.0)
        print(f"soak: {args.minutes} min against {url} (pid {proc.pid}), warm-up {warmup:.0f} s")
        try:

            async def run() -> None:
                soak.deadline = trio.current_time() + seconds
                await drive(soak, args.sample_seconds, args.generation_seconds)

            trio.run(run)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                exit_code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                exit_code = -9
        if exit_code != 0:
            soak.fail(f"server exited with {exit_code}: {log_path.read_text()[-1000:]}")
        if any(b"Traceback" in line for line in log_path.read_bytes().splitlines()):
            soak.fail("the server logged a traceback")
    verdicts = growth(soak.samples, warmup)
    for verdict in verdicts:
        if not verdict["flat"]:
            soak.fail(f"{verdict['figure']} grew: {verdict}")
    print(f"{'figure':<16}{'first third':>14}{'last third':>14}{'max':>12}{'limit':>14}  flat")
    for v in verdicts:
        print(
            f"{v['figure']:<16}{v['first']:>14,.0f}{v['last']:>14,.0f}{v['max']:>12,.0f}"
            f"{v['limit']:>14,.0f}  {'yes' if v['flat'] else 'NO'}"
        )
    print("counts: " + ", ".join(f"{k}={v}" for k, v in sorted(soak.counts.items())))
    if args.json:
        report = {"samples": soak.samples, "verdicts": verdicts, "counts": soak.counts}
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    for failure in soak.failures:
        print(f"FAIL {failure}")
    print("soak: " + ("FAILED" if soak.failures else "passed"))
    return 1 if soak.failures else 0


if __name__ == "__main__":
    sys.exit(main())
