"""Load client for ``tools/bench.py``: one scenario per process, one JSON line out.

Usage::

    python tools/loadgen.py SCENARIO --port PORT [--host 127.0.0.1] --json-args '{...}'

Scenarios: ``posts`` (also used against ``tools/floor_app.py`` with
``"target": "floor"``), ``claim``, ``wake``, ``idle`` and ``check`` (a
self-test of the HTTP client against a running server). The result is
printed as a single JSON object on the last line of stdout; a failure exits
non-zero with a traceback on stderr.

Why not httpx: the server under test answers ~2,000 requests/s on one core,
and the client has one core too, so the client must spend far less per
request than the server. ``HttpConnection`` is a minimal HTTP/1.1 keep-alive
client on an ``asyncio.Protocol``: requests are pre-serialized bytes, the
parser reads the status line, ``Content-Length`` / chunked bodies and
``Connection: close``, and one connection serves one virtual client with one
request in flight. The response time is taken in ``data_received`` the
moment the last body byte arrives (``time.perf_counter_ns``), so it does not
include the time the event loop takes to resume the waiting coroutine.

Every loop here is bounded: each scenario runs for its given duration, and
``main`` wraps the whole scenario in a hard timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import resource
import sys
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SETUP_CONCURRENCY = 32
CONNECT_CONCURRENCY = 256


# --------------------------------------------------------------------------- HTTP client


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    sent_ns: int
    done_ns: int
    close: bool

    @property
    def latency_ns(self) -> int:
        return self.done_ns - self.sent_ns

    def json(self) -> Any:
        return json.loads(self.body)


class HttpError(ConnectionError):
    """The connection broke or the server sent something we cannot parse."""


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.future: asyncio.Future[Response] | None = None
        self.sent_ns = 0
        self.closed = False

    # asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.future is not None and not self.future.done():
            try:
                self._try_complete(eof=False)
            except Exception as exc:  # a parse error fails the request, not the loop
                self.future.set_exception(HttpError(f"bad response: {exc!r}"))
                self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.future is not None and not self.future.done():
            try:
                self._try_complete(eof=True)
            except Exception as parse_exc:
                self.future.set_exception(HttpError(f"bad response: {parse_exc!r}"))
            if not self.future.done():
                self.future.set_exception(HttpError(f"connection lost: {exc!r}"))

    # parsing ----------------------------------------------------------------------------
    def _try_complete(self, *, eof: bool) -> None:
        buf = self.buf
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(buf[:head_end]).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        length: int | None = None
        chunked = False
        close = False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                close = "close" in value.lower()
        start = head_end + 4
        if chunked:
            parsed = _parse_chunked(buf, start)
            if parsed is None:
                return
            body, end = parsed
        elif length is not None:
            end = start + length
            if len(buf) < end:
                return
            body = bytes(buf[start:end])
        elif status in (204, 304) or 100 <= status < 200:
            body, end = b"", start
        elif eof:
            body, end, close = bytes(buf[start:]), len(buf), True
        else:
            return  # body delimited by connection close
        done = time.perf_counter_ns()
        del buf[:end]
        assert self.future is not None
        self.future.set_result(Response(status, body, self.sent_ns, done, close))

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # public -----------------------------------------------------------------------------
    def send(self, raw: bytes) -> asyncio.Future[Response]:
        """Write one request and return the future of its response."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise HttpError("connection closed")
        if self.future is not None and not self.future.done():
            raise RuntimeError("one request at a time per connection")
        self.future = asyncio.get_running_loop().create_future()
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(raw)
        return self.future

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    out = bytearray()
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", pos - 2)
            if trailer_end < 0:
                return None
            return bytes(out), trailer_end + 4
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        pos += size + 2


class Client:
    """One virtual client: a connection that reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.conn: HttpConnection | None = None
        self.reconnects = -1  # the first connect is not a reconnect

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(HttpConnection, self.host, self.port)
        self.conn = proto
        self.reconnects += 1

    async def send(self, raw: bytes) -> asyncio.Future[Response]:
        """Write a request (connecting first if needed); return its response future."""
        if self.conn is None or self.conn.closed:
            await self.connect()
        assert self.conn is not None
        return self.conn.send(raw)

    async def request(self, raw: bytes) -> Response:
        response = await (await self.send(raw))
        if response.close and self.conn is not None:
            self.conn.close()
        return response

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def build_request(
    method: str,
    path: str,
    host: str,
    port: int,
    *,
    key: str | None = None,
    body: bytes | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    if key is not None:
        lines.append(f"X-API-Key: {key}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body is not None else head


def json_body(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- helpers


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


def latency_summary(prefix: str, latencies_ns: list[int]) -> dict[str, float]:
    values = sorted(v / 1e6 for v in latencies_ns)
    return {
        f"{prefix}_p50_ms": percentile(values, 50),
        f"{prefix}_p99_ms": percentile(values, 99),
        f"{prefix}_max_ms": values[-1] if values else float("nan"),
        f"{prefix}_count": float(len(values)),
    }


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def gather_limited(
    factories: Sequence[Callable[[], Awaitable[Any]]], limit: int
) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(factory: Callable[[], Awaitable[Any]]) -> Any:
        async with sem:
            return await factory()

    return await asyncio.gather(*(one(f) for f in factories))


@dataclass
class Api:
    """Setup calls (minting keys, creating channels) on a small connection pool."""

    host: str
    port: int
    pool: list[Client] = field(default_factory=list)

    async def call(self, method: str, path: str, key: str | None, body: Any = None) -> Any:
        client = self.pool.pop() if self.pool else Client(self.host, self.port)
        try:
            raw = build_request(
                method,
                path,
                self.host,
                self.port,
                key=key,
                body=None if body is None else json_body(body),
            )
            response = await client.request(raw)
        except BaseException:
            client.close()
            raise
        self.pool.append(client)
        if response.status >= 300:
            raise RuntimeError(
                f"setup {method} {path} -> {response.status}: {response.body[:300]!r}"
            )
        return response.json()

    async def mint_keys(self, count: int, label: str) -> list[str]:
        run = f"{os.getpid()}-{random.randrange(16**6):06x}"

        async def mint(i: int) -> str:
            reply = await self.call("POST", "/v1/keys", None, {"agent_label": f"{label}-{run}-{i}"})
            return str(reply["key"])

        return await gather_limited(
            [functools.partial(mint, i) for i in range(count)], SETUP_CONCURRENCY
        )

    async def create_channels(self, key: str, count: int, mode: str, name: str) -> list[str]:
        async def create(i: int) -> str:
            reply = await self.call(
                "POST", "/v1/channels", key, {"name": f"{name}-{i}", "mode": mode}
            )
            return str(reply["id"])

        return await gather_limited(
            [functools.partial(create, i) for i in range(count)], SETUP_CONCURRENCY
        )

    def close(self) -> None:
        for client in self.pool:
            client.close()
        self.pool.clear()


def content_of(size: int, tag: str) -> str:
    """A message text of exactly ``size`` bytes that starts with ``tag``."""
    return (tag + " " + "x" * size)[:size]


class PostTemplate:
    """Pre-serialized post requests that differ only in a fixed-width counter.

    Every body is unique (no two posts are byte-identical) and exactly as
    long as the others, so the ``Content-Length`` header is fixed too.
    """

    WIDTH = 12

    def __init__(self, path: str, host: str, port: int, key: str | None, size: int) -> None:
        marker = "#" * self.WIDTH
        body = json_body({"content": content_of(size, marker)})
        raw = build_request("POST", path, host, port, key=key, body=body)
        before, _, after = raw.partition(marker.encode())
        self.before = before
        self.after = after

    def render(self, counter: int) -> bytes:
        return self.before + b"%012d" % counter + self.after


def server_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def server_cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def server_fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def cpu_in_window(pid: int | None, start_ns: int, end_ns: int) -> float | None:
    """Server CPU seconds (user + system) between two perf_counter_ns instants.

    Unlike wall-clock throughput, CPU per request barely moves when other
    processes compete for the server's core, so it compares well across runs.
    """
    if pid is None:
        return None
    await asyncio.sleep(max(0.0, (start_ns - time.perf_counter_ns()) / 1e9))
    before = server_cpu_ticks(pid)
    await asyncio.sleep(max(0.0, (end_ns - time.perf_counter_ns()) / 1e9))
    return (server_cpu_ticks(pid) - before) / os.sysconf("SC_CLK_TCK")


async def wait_server_quiet(pid: int, deadline: float, min_fds: int = 0) -> bool:
    """Wait until the server holds ``min_fds`` descriptors and stops using CPU.

    Returns False when ``deadline`` (time.monotonic) passed first.
    """
    quiet = 0
    last = server_cpu_ticks(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = server_cpu_ticks(pid)
        busy = now - last > 1
        last = now
        if busy or (min_fds and server_fd_count(pid) < min_fds):
            quiet = 0
            continue
        quiet += 1
        if quiet >= 2:
            return True
    return False


# --------------------------------------------------------------------------- scenarios


async def scenario_posts(host: str, port: int, args: dict[str, Any]) -> dict[str, Any]:
    """N clients post fixed-size messages round-robin over claimable channels."""
    clients_n = int(args.get("clients", 50))
    channels_n = int(args.get("channels", 10))
    size = int(args.get("size", 300))
    warmup = float(args.get("warmup", 1.0))
    duration = float(args["duration"])
    target = str(args.get("target", "real"))
    pid = int(args["pid"]) if "pid" in args else None

    api = Api(host, port)
    if target == "floor":
        keys = ["floor.key"] * clients_n
        channels = [f"floor-{i}" for i in range(channels_n)]
    else:
        keys = await api.mint_keys(clients_n, "bench-post")
        channels = await api.create_channels(keys[0], channels_n, "claimable", "bench-posts")
    api.close()

    latencies: list[int] = []
    errors: Counter[str] = Counter()
    clients = [Client(host, port) for _ in range(clients_n)]
    await gather_limited([c.connect for c in clients], CONNECT_CONCURRENCY)
    t0 = time.perf_counter_ns()
    measure_from = t0 + int(warmup * 1e9)
    measure_to = measure_from + int(duration * 1e9)

    async def run(i: int) -> None:
        client = clients[i]
        templates = [
            PostTemplate(f"/v1/channels/{ch}/messages", host, port, keys[i], size)
            for ch in channels
        ]
        n = 0
        while time.perf_counter_ns() < measure_to:
            raw = templates[(i + n) % channels_n].render(i * 10**9 + n)
            n += 1
            try:
                r = await client.request(raw)
            except HttpError:
                errors["connection"] += 1
                continue
            if r.sent_ns >= measure_from and r.done_ns <= measure_to:
                if r.status == 201:
                    latencies.append(r.latency_ns)
                else:
                    errors[str(r.status)] += 1

    cpu_task = asyncio.create_task(cpu_in_window(pid, measure_from, measure_to))
    await asyncio.gather(*(run(i) for i in range(clients_n)))
    server_cpu_s = await cpu_task
    reconnects = sum(c.reconnects for c in clients)
    for c in clients:
        c.close()
    if not latencies:
        raise RuntimeError(f"no successful post in the window; errors={dict(errors)}")
    result: dict[str, Any] = {
        "posts_per_s": len(latencies) / duration,
        **latency_summary("post", latencies),
        "errors": sum(errors.values()),
        "error_detail": dict(errors),
        "reconnects": reconnects,
    }
    result["post_p99_over_p50"] = result["post_p99_ms"] / result["post_p50_ms"]
    if server_cpu_s is not None:
        result["server_cpu_util"] = server_cpu_s / duration
        result["server_cpu_us_per_post"] = server_cpu_s / len(latencies) * 1e6
    return result


async def scenario_claim(host: str, port: int, args: dict[str, Any]) -> dict[str, Any]:
    """Workers list unclaimed messages, claim one and ack it; producers restock."""
    workers_n = int(args.get("workers", 50))
    channels_n = int(args.get("channels", 10))
    stock = int(args.get("stock", 20))
    # Two producer connections per channel: one alone, queued behind 50 workers'
    # requests, posts about as fast as the workers claim and lets them starve.
    producers_per_channel = int(args.get("producers_per_channel", 2))
    pid = int(args["pid"]) if "pid" in args else None
    list_limit = int(args.get("list_limit", 10))
    claim_next = bool(args.get("claim_next", True))  # POST /v1/tasks/claim, else list+claim
    size = int(args.get("size", 300))
    warmup = float(args.get("warmup", 1.0))
    duration = float(args["duration"])

    api = Api(host, port)
    keys = await api.mint_keys(workers_n + 1, "bench-claim")
    producer_key, worker_keys = keys[0], keys[1:]
    channels = await api.create_channels(producer_key, channels_n, "claimable", "bench-claim")
    # Stock every channel before the clock starts, so the window measures steady state.
    await gather_limited(
        [
            functools.partial(
                api.call,
                "POST",
                f"/v1/channels/{channels[c]}/messages",
                producer_key,
                {"content": content_of(size, f"stock-{c}-{n}")},
            )
            for c in range(channels_n)
            for n in range(stock)
        ],
        SETUP_CONCURRENCY,
    )
    api.close()

    outstanding = [stock] * channels_n  # posted and not yet claimed by us
    in_flight = [0] * channels_n  # posts sent and not yet answered
    op_latency: dict[str, list[int]] = {"list": [], "claim": [], "ack": [], "post": []}
    restock = [asyncio.Event() for _ in range(channels_n)]
    stop = asyncio.Event()
    cycles: list[int] = []
    claims = 0
    conflicts = 0
    empty_lists = 0
    errors: Counter[str] = Counter()
    t_start = time.perf_counter_ns()
    measure_from = t_start + int(warmup * 1e9)
    measure_to = measure_from + int(duration * 1e9)

    async def produce(c: int, lane: int) -> None:
        client = Client(host, port)
        template = PostTemplate(
            f"/v1/channels/{channels[c]}/messages", host, port, producer_key, size
        )
        n = 0
        try:
            while not stop.is_set():
                if outstanding[c] + in_flight[c] >= stock:
                    restock[c].clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(restock[c].wait(), 0.5)
                    continue
                n += 1
                in_flight[c] += 1
                try:
                    r = await client.request(template.render((c * 100 + lane) * 10**9 + n))
                finally:
                    in_flight[c] -= 1
                if r.status == 201:
                    outstanding[c] += 1
                    if r.sent_ns >= measure_from:
                        op_latency["post"].append(r.latency_ns)
                else:
                    errors[f"post {r.status}"] += 1
                    await asyncio.sleep(0.01)
        finally:
            client.close()

    async def work(w: int) -> None:
        nonlocal claims, conflicts, empty_lists
        c = w % channels_n
        client = Client(host, port)
        key = worker_keys[w]
        listing = build_request(
            "GET",
            f"/v1/channels/{channels[c]}/messages?status=unclaimed&limit={list_limit}",
            host,
            port,
            key=key,
        )
        actor = json_body({"actor": f"w{w}"})
        take_next = build_request(
            "POST",
            "/v1/tasks/claim",
            host,
            port,
            key=key,
            body=json_body({"channel": channels[c], "actor": f"w{w}"}),
        )

        async def ack_held(message_id: str, began: int) -> None:
            """Ack a message this worker holds; count the cycle begun at ``began``."""
            nonlocal claims
            outstanding[c] -= 1
            restock[c].set()
            in_window = began >= measure_from
            if in_window:
                claims += 1
            path = f"/v1/messages/{message_id}/ack"
            r = await client.request(build_request("POST", path, host, port, key=key, body=actor))
            if in_window:
                op_latency["ack"].append(r.latency_ns)
            if r.status != 200:
                errors[f"ack {r.status}"] += 1
            elif in_window and r.done_ns <= measure_to:
                cycles.append(r.done_ns - began)

        try:
            while claim_next and time.perf_counter_ns() < measure_to:
                r = await client.request(take_next)
                began = r.sent_ns
                if began >= measure_from:
                    op_latency["claim"].append(r.latency_ns)
                if r.status != 200:
                    errors[f"claim-next {r.status}"] += 1
                    await asyncio.sleep(0.01)
                    continue
                taken = r.json()["claimed"]
                if taken is None:
                    empty_lists += 1
                    await asyncio.sleep(0.002)
                    continue
                await ack_held(str(taken["id"]), began)
            while time.perf_counter_ns() < measure_to:
                r = await client.request(listing)
                began = r.sent_ns
                if began >= measure_from:
                    op_latency["list"].append(r.latency_ns)
                if r.status != 200:
                    errors[f"list {r.status}"] += 1
                    await asyncio.sleep(0.01)
                    continue
                ids = [str(m["id"]) for m in r.json()["data"]]
                if not ids:
                    if began >= measure_from:
                        empty_lists += 1
                    await asyncio.sleep(0.002)
                    continue
                random.shuffle(ids)
                held = None
                for mid in ids:
                    path = f"/v1/messages/{mid}/claim"
                    r = await client.request(
                        build_request("POST", path, host, port, key=key, body=actor)
                    )
                    if r.sent_ns >= measure_from:
                        op_latency["claim"].append(r.latency_ns)
                    if r.status == 200 and r.json().get("status") == "claimed":
                        held = mid
                        break
                    if r.status == 409:
                        if r.sent_ns >= measure_from:
                            conflicts += 1
                        continue
                    errors[f"claim {r.status}"] += 1
                if held is not None:
                    await ack_held(held, began)
        finally:
            client.close()

    producers = [
        asyncio.create_task(produce(c, lane))
        for c in range(channels_n)
        for lane in range(producers_per_channel)
    ]
    cpu_task = asyncio.create_task(cpu_in_window(pid, measure_from, measure_to))
    await asyncio.gather(*(work(w) for w in range(workers_n)))
    server_cpu_s = await cpu_task
    stop.set()
    await asyncio.gather(*producers)
    if not cycles:
        raise RuntimeError(f"no claim+ack cycle completed; errors={dict(errors)}")
    return {
        "cycles_per_s": len(cycles) / duration,
        "server_cpu_util": None if server_cpu_s is None else server_cpu_s / duration,
        "server_cpu_ms_per_cycle": (
            None if server_cpu_s is None else server_cpu_s / len(cycles) * 1e3
        ),
        "conflicts_per_claim": conflicts / max(claims, 1),
        **latency_summary("cycle", cycles),
        "claims": claims,
        "conflicts": conflicts,
        **{k: v for op, lat in op_latency.items() for k, v in latency_summary(op, lat).items()},
        "empty_lists": empty_lists,
        "empty_lists_per_cycle": empty_lists / len(cycles),
        "errors": sum(errors.values()),
        "error_detail": dict(errors),
    }


async def scenario_claimwait(host: str, port: int, args: dict[str, Any]) -> dict[str, Any]:
    """Workers park on claim-next with ``wait`` on one channel; producers post.

    Each worker loops ``POST /v1/channels/{c}/claim-next {"wait": W}`` then
    acks what it got. Producers keep at most ``backlog`` posted-but-unclaimed
    messages, so most workers are parked and each post is handed straight to
    one of them. Figures: claims/s, and post -> claimed latency (from the
    producer sending the post to the worker receiving the claim).
    """
    workers_n = int(args.get("workers", 50))
    producers_n = int(args.get("producers", 4))
    backlog = int(args.get("backlog", 10))
    size = int(args.get("size", 300))
    wait_s = float(args.get("wait", 10))
    warmup = float(args.get("warmup", 1.0))
    duration = float(args["duration"])

    api = Api(host, port)
    keys = await api.mint_keys(workers_n + 1, "bench-claimwait")
    producer_key, worker_keys = keys[0], keys[1:]
    [channel] = await api.create_channels(producer_key, 1, "claimable", "bench-claimwait")
    api.close()

    sent: dict[int, int] = {}  # post counter -> perf_counter_ns when sent
    outstanding = 0
    room = asyncio.Event()
    room.set()
    stop = asyncio.Event()
    handoffs: list[int] = []
    claims = 0
    nulls = 0
    op_latency: dict[str, list[int]] = {"post": [], "ack": []}
    errors: Counter[str] = Counter()
    measure_from = time.perf_counter_ns() + int(warmup * 1e9)
    measure_to = measure_from + int(duration * 1e9)
    marker = "#" * PostTemplate.WIDTH

    async def produce(lane: int) -> None:
        nonlocal outstanding
        client = Client(host, port)
        template = PostTemplate(f"/v1/channels/{channel}/messages", host, port, producer_key, size)
        n = 0
        try:
            while not stop.is_set():
                if outstanding >= backlog:
                    room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(room.wait(), 0.5)
                    continue
                n += 1
                counter = lane * 10**9 + n
                outstanding += 1
                sent[counter] = time.perf_counter_ns()
                r = await client.request(template.render(counter))
                if r.status != 201:
                    outstanding -= 1
                    errors[f"post {r.status}"] += 1
                    await asyncio.sleep(0.01)
                elif r.sent_ns >= measure_from:
                    op_latency["post"].append(r.latency_ns)
        finally:
            client.close()

    async def work(w: int) -> None:
        nonlocal claims, nulls, outstanding
        client = Client(host, port)
        key = worker_keys[w]
        take = build_request(
            "POST",
            f"/v1/channels/{channel}/claim-next",
            host,
            port,
            key=key,
            body=json_body({"actor": f"w{w}", "wait": wait_s}),
        )
        try:
            while time.perf_counter_ns() < measure_to:
                r = await client.request(take)
                if r.status != 200:
                    errors[f"claim-next {r.status}"] += 1
                    await asyncio.sleep(0.01)
                    continue
                taken = r.json()["claimed"]
                if taken is None:
                    nulls += 1
                    continue
                got_ns = r.done_ns
                outstanding -= 1
                room.set()
                text = str(taken["content"])
                counter = int(text[: len(marker)])
                began = sent.pop(counter, None)
                if began is not None and began >= measure_from and got_ns <= measure_to:
                    claims += 1
                    handoffs.append(got_ns - began)
                path = f"/v1/messages/{taken['id']}/ack"
                body = json_body({"actor": f"w{w}"})
                a = await client.request(
                    build_request("POST", path, host, port, key=key, body=body)
                )
                if a.status != 200:
                    errors[f"ack {a.status}"] += 1
                elif a.sent_ns >= measure_from:
                    op_latency["ack"].append(a.latency_ns)
        finally:
            client.close()

    producers = [asyncio.create_task(produce(lane)) for lane in range(producers_n)]
    await asyncio.gather(*(work(w) for w in range(workers_n)))
    stop.set()
    room.set()
    await asyncio.gather(*producers)
    if not handoffs:
        raise RuntimeError(f"no post was claimed; errors={dict(errors)}")
    return {
        "claims_per_s": claims / duration,
        **latency_summary("handoff", handoffs),
        **{k: v for op, lat in op_latency.items() for k, v in latency_summary(op, lat).items()},
        "null_answers": nulls,
        "errors": sum(errors.values()),
        "error_detail": dict(errors),
    }


async def scenario_wake(host: str, port: int, args: dict[str, Any]) -> dict[str, Any]:
    """Long-poll wake-up latency vs a plain authenticated GET, on the same server."""
    waiters_n = int(args.get("waiters", 100))
    warmup_posts = int(args.get("warmup_posts", 5))
    duration = float(args["duration"])
    gap = float(args.get("gap", 0.01))
    wait_s = int(args.get("wait", 30))
    max_posts = int(args.get("max_posts", 100_000))

    api = Api(host, port)
    key = (await api.mint_keys(1, "bench-wake"))[0]
    channels = await api.create_channels(key, waiters_n, "broadcast", "bench-wake")
    api.close()

    pending: dict[str, tuple[int, asyncio.Event, bool]] = {}  # tag -> sent, woken, measured
    wakes: list[int] = []
    errors: Counter[str] = Counter()
    stop = asyncio.Event()

    async def wait_loop(c: int) -> None:
        client = Client(host, port)
        cursor = "0"
        base = f"/v1/channels/{channels[c]}/messages"
        try:
            while not stop.is_set():
                query = urllib.parse.urlencode({"since": cursor, "wait": wait_s})
                r = await client.request(
                    build_request("GET", f"{base}?{query}", host, port, key=key)
                )
                if r.status != 200:
                    errors[f"poll {r.status}"] += 1
                    await asyncio.sleep(0.05)
                    continue
                page = r.json()
                for message in page["data"]:
                    entry = pending.pop(str(message["content"]).split(" ", 1)[0], None)
                    if entry is not None:
                        sent_ns, woken, measured = entry
                        if measured:
                            wakes.append(r.done_ns - sent_ns)
                        woken.set()
                if page.get("next_cursor") is not None:
                    cursor = str(page["next_cursor"])
        finally:
            client.close()

    waiter_tasks = [asyncio.create_task(wait_loop(c)) for c in range(waiters_n)]
    await asyncio.sleep(min(0.5 + waiters_n / 1000, 3.0))  # let every waiter park

    producer = Client(host, port)
    probe = Client(host, port)
    probe_raw = build_request("GET", "/v1/keys/me", host, port, key=key)
    gets: list[int] = []
    lost = 0
    seq = 0
    deadline = time.perf_counter_ns() + int(duration * 1e9)
    try:
        while (time.perf_counter_ns() < deadline or seq <= warmup_posts) and seq < max_posts:
            r = await probe.request(probe_raw)
            if r.status != 200:
                errors[f"get {r.status}"] += 1
            elif seq >= warmup_posts:
                gets.append(r.latency_ns)
            await asyncio.sleep(gap / 2)

            seq += 1
            c = random.randrange(waiters_n)
            tag = f"wake-{seq}"
            woken = asyncio.Event()
            raw = build_request(
                "POST",
                f"/v1/channels/{channels[c]}/messages",
                host,
                port,
                key=key,
                body=json_body({"content": f"{tag} bench"}),
            )
            pending[tag] = (time.perf_counter_ns(), woken, seq > warmup_posts)
            r = await producer.request(raw)
            if r.status != 201:
                errors[f"post {r.status}"] += 1
                pending.pop(tag, None)
                continue
            try:
                await asyncio.wait_for(woken.wait(), 5.0)
            except TimeoutError:
                lost += 1
                pending.pop(tag, None)
            await asyncio.sleep(gap / 2)
    finally:
        stop.set()
        for task in waiter_tasks:
            task.cancel()
        await asyncio.gather(*waiter_tasks, return_exceptions=True)
        producer.close()
        probe.close()
    if not wakes or not gets:
        raise RuntimeError(f"no wake-up measured; lost={lost} errors={dict(errors)}")
    result: dict[str, Any] = {
        **latency_summary("wake", wakes),
        **latency_summary("get", gets),
        "lost_wakes": lost,
        "errors": sum(errors.values()),
        "error_detail": dict(errors),
    }
    result["wake_p50_over_get_p50"] = result["wake_p50_ms"] / result["get_p50_ms"]
    result["wake_p99_over_get_p99"] = result["wake_p99_ms"] / result["get_p99_ms"]
    return result


async def scenario_idle(host: str, port: int, args: dict[str, Any]) -> dict[str, Any]:
    """Park N long-polls on one broadcast channel, read the server's RSS, wake them all."""
    waiters_n = int(args["waiters"])
    pid = int(args["pid"])
    wait_s = int(args.get("wait", 30))
    settle_timeout = float(args.get("settle_timeout", 20.0 + waiters_n / 500))
    fanout_timeout = float(args.get("fanout_timeout", 60.0))

    api = Api(host, port)
    key = (await api.mint_keys(1, "bench-idle"))[0]
    (channel,) = await api.create_channels(key, 1, "broadcast", "bench-idle")
    api.close()
    await wait_server_quiet(pid, time.monotonic() + 10)
    fds_before = server_fd_count(pid)
    rss_before = server_rss_kib(pid)

    query = urllib.parse.urlencode({"since": "0", "wait": wait_s})
    raw = build_request("GET", f"/v1/channels/{channel}/messages?{query}", host, port, key=key)
    clients = [Client(host, port) for _ in range(waiters_n)]
    futures: list[asyncio.Future[Response]] = []
    connect_started = time.perf_counter()

    async def park(client: Client) -> None:
        futures.append(await client.send(raw))

    try:
        await gather_limited([functools.partial(park, c) for c in clients], CONNECT_CONCURRENCY)
        connect_s = time.perf_counter() - connect_started
        settled = await wait_server_quiet(
            pid, time.monotonic() + settle_timeout, min_fds=fds_before + waiters_n
        )
        rss_after = server_rss_kib(pid)
        premature = sum(1 for f in futures if f.done())

        poster = Client(host, port)
        body = json_body({"content": "wake everyone"})
        post_raw = build_request(
            "POST", f"/v1/channels/{channel}/messages", host, port, key=key, body=body
        )
        server_cpu0 = server_cpu_ticks(pid)
        client_cpu0 = time.process_time()
        sent = time.perf_counter_ns()
        post = await poster.request(post_raw)
        poster.close()
        if post.status != 201:
            raise RuntimeError(f"post -> {post.status}: {post.body[:200]!r}")
        done, not_done = await asyncio.wait(futures, timeout=fanout_timeout)
        server_cpu_s = (server_cpu_ticks(pid) - server_cpu0) / os.sysconf("SC_CLK_TCK")
        client_cpu_s = time.process_time() - client_cpu0
        answered = [f.result() for f in done if f.exception() is None]
        woken = [r for r in answered if r.status == 200 and b"wake everyone" in r.body]
        if not woken:
            raise RuntimeError("no waiter received the message")
        finish = sorted(r.done_ns - sent for r in woken)
    finally:
        for client in clients:
            client.close()
    return {
        "waiters": waiters_n,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_waiter_kib": (rss_after - rss_before) / waiters_n,
        "fanout_all_ms": finish[-1] / 1e6,
        "fanout_p50_ms": percentile(finish, 50) / 1e6,
        "post_ms": post.latency_ns / 1e6,
        "fanout_server_cpu_s": server_cpu_s,
        "fanout_client_cpu_s": client_cpu_s,
        "woken": len(woken),
        "missing": waiters_n - len(woken),
        "not_answered": len(not_done),
        "premature": premature,
        "connect_s": connect_s,
        "settled": settled,
    }


async def scenario_stream(host: str, port: int, args: dict[str, Any]) -> dict[str, Any]:
    """Open N event streams on one broadcast channel, post once, time until all have it."""
    streams_n = int(args["streams"])
    fanout_timeout = float(args.get("fanout_timeout", 60.0))
    api = Api(host, port)
    key = (await api.mint_keys(1, "bench-stream"))[0]
    (channel,) = await api.create_channels(key, 1, "broadcast", "bench-stream")
    api.close()
    raw = build_request("GET", f"/v1/channels/{channel}/stream", host, port, key=key)
    readers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open_one() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(raw)
        seen = b""
        while b"stream open" not in seen:  # the start and first chunk: subscribed
            chunk = await reader.read(65536)
            if not chunk:
                raise RuntimeError(f"stream closed before it opened: {seen[:200]!r}")
            seen += chunk
        readers.append((reader, writer))

    connect_started = time.perf_counter()
    try:
        await gather_limited([open_one] * streams_n, CONNECT_CONCURRENCY)
        connect_s = time.perf_counter() - connect_started

        async def delivered(reader: asyncio.StreamReader) -> int:
            seen = b""
            while b"event: message" not in seen:
                chunk = await reader.read(65536)
                if not chunk:
                    raise RuntimeError("stream ended before the message")
                seen += chunk
            return time.perf_counter_ns()

        waits = [asyncio.ensure_future(delivered(r)) for r, _ in readers]
        poster = Client(host, port)
        body = json_body({"content": "to every stream"})
        post_raw = build_request(
            "POST", f"/v1/channels/{channel}/messages", host, port, key=key, body=body
        )
        sent = time.perf_counter_ns()
        post = await poster.request(post_raw)
        poster.close()
        if post.status != 201:
            raise RuntimeError(f"post -> {post.status}: {post.body[:200]!r}")
        done, not_done = await asyncio.wait(waits, timeout=fanout_timeout)
        for future in not_done:
            future.cancel()
        finish = sorted(f.result() - sent for f in done if f.exception() is None)
        if not finish:
            raise RuntimeError("no stream received the message")
    finally:
        for _, writer in readers:
            writer.close()
    return {
        "streams": streams_n,
        "fanout_all_ms": finish[-1] / 1e6,
        "fanout_p50_ms": percentile(finish, 50) / 1e6,
        "post_ms": post.latency_ns / 1e6,
        "missing": streams_n - len(finish),
        "connect_s": connect_s,
    }


async def scenario_check(host: str, port: int, args: dict[str, Any]) -> dict[str, Any]:
    """Self-test of the HTTP client: keep-alive reuse, status lines and JSON bodies."""
    path = str(args.get("path", "/health"))
    n = int(args.get("n", 200))
    client = Client(host, port)
    raw = build_request("GET", path, host, port)
    statuses: Counter[int] = Counter()
    sizes: set[int] = set()
    for _ in range(n):
        r = await client.request(raw)
        statuses[r.status] += 1
        sizes.add(len(r.body))
        r.json()
    client.close()
    return {
        "statuses": dict(statuses),
        "body_sizes": sorted(sizes),
        "reconnects": client.reconnects,
    }


SCENARIOS: dict[str, Callable[[str, int, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "posts": scenario_posts,
    "claim": scenario_claim,
    "claimwait": scenario_claimwait,
    "wake": scenario_wake,
    "idle": scenario_idle,
    "stream": scenario_stream,
    "check": scenario_check,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Backchannel load client (one scenario).")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--json-args", default="{}", help="scenario parameters as JSON")
    parser.add_argument("--timeout", type=float, default=300.0, help="hard cap, seconds")
    ns = parser.parse_args(argv)
    if ns.host != HOST:
        parser.error("the load client only talks to 127.0.0.1")
    args = json.loads(ns.json_args)
    nofile = raise_nofile_limit()

    async def run() -> dict[str, Any]:
        return await asyncio.wait_for(SCENARIOS[ns.scenario](ns.host, ns.port, args), ns.timeout)

    try:
        result = asyncio.run(run())
    except BaseException:
        traceback.print_exc()
        return 1
    result["client_nofile"] = nofile
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
