"""Crash test: ``kill -9`` the real server under concurrent writes; no answered write may be lost.

Theory of operation
-------------------
"Durable when answered" (design.md § Durability) is a promise about what a
client saw, so this tool checks it from the client's side. It runs the real
server (``python -m backchannel serve``) as a child process on a fresh data
directory, drives it over HTTP with concurrent writers (posts, claims,
lease claims, heartbeats, releases, acks over a few claimable channels,
session creates and patches, an operator toggling public minting, and
one access writer: channels, members, invitations, access requests, PATCH,
aliases, DELETE; see ``crash_access.py``; and one delivery writer: delayed
posts, dead-letter moves between two channel actors, redrive; see
``crash_delivery.py``) and
records every write that got a 2xx answer with the state that answer
implies. At a random moment it sends SIGKILL, restarts the server on the
same directory and checks every answered write of every cycle so far.
Cycles repeat on the same directory, so later restarts recover state that
was itself recovered (and snapshots are taken during the cycles, so kills
also land while a snapshot is being written).

Rules that keep the expected state exact:

- Each writer touches only the messages it posted, with its own key and
  actors, one request at a time; so the state of a message follows from its
  writer's answered writes, in order.
- A write with no answer (in flight at the kill, cut by a transport error,
  or refused with a non-2xx status) may or may not have happened. It is
  never counted; the message it touched is retired from further writes and
  may show either outcome.
- Leases are 3600 s and the default TTL is a day, so nothing lapses during a
  run; a message is still accepted from ``/history`` if it did expire.

What a restart must show, per answered write: a minted key still
authenticates; a created channel still resolves; a posted message is listed
in its channel with its content (a post sent with an ``Idempotency-Key``
also replays the same message id); the holder of a message is the actor of
the last answered claim/release (with the claiming key); a lease token from
the last answered lease claim/heartbeat still heartbeats, and a token ended
by an answered release or holder ack does not; every answered ack is in
``acknowledged_by``; a created session still exists with the state of its
last answered write; ``/health`` reports the last answered minting toggle.
Every restart must also log ``recovered from ...``.

Usage::

    .venv/bin/python tools/crash_test.py --kills 5 --seed 7

The seed is fixed by default (``--seed -1`` draws one) and printed first and
last, so a failing run can be repeated; the kill moments still depend on
the machine's timing. Each server binds port 0 and the tool reads the port
from the server's ``serving on`` log line. The last line is
``kills=N answered=M lost=L phantom=P``; the exit status is 0 iff nothing was
lost, nothing unexplained appeared (a ``phantom``: a message or ack nobody
asked for) and every restart came up.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import trio
from crash_access import AccessWriter
from crash_delivery import DeliveryWriter

REPO = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 3600
CHANNELS = 3
DEFAULT_SEED = 17
STARTUP_TIMEOUT = 60.0
HEALTH_POLL = 0.05
STOP_TIMEOUT = 20.0
REQUEST_TIMEOUT = 10.0
STALL_TIMEOUT = 1.0  # a /health on a live server is answered in milliseconds
MAX_OPS_PER_WORKER = 100_000
MAX_REFUSALS_SHOWN = 20
SERVING = re.compile(r"serving on (http://\S+)")
RECOVERED = re.compile(
    r"recovered from (?P<source>.+?): (?P<channels>\d+) channels, (?P<messages>\d+) live "
    r"messages, (?P<replayed>\d+) log records replayed"
)
WEIGHTS = {
    "post": 3.0,
    "claim": 2.0,
    "lease": 2.0,
    "heartbeat": 1.0,
    "release": 1.5,
    "ack": 1.5,
    "session_new": 0.3,
    "session_patch": 1.0,
}
ADMIN_TOKEN = "crash-admin-token"
MINTING_TOGGLE_PAUSE = 0.05


def server_python() -> str:
    """The venv's interpreter: ``sys.executable`` when it runs inside that venv."""
    venv = REPO / ".venv"
    if Path(sys.prefix).resolve() == venv.resolve():
        return sys.executable
    return str(venv / "bin" / "python")


async def bound_url(process: trio.Process, log_path: Path) -> str | None:
    """The URL the server logs once its socket listens (it binds port 0); None if it
    exits or says nothing within ``STARTUP_TIMEOUT``."""
    with trio.move_on_after(STARTUP_TIMEOUT):
        while process.returncode is None:
            found = SERVING.search(await trio.to_thread.run_sync(read_log, log_path))
            if found is not None:
                return found[1]
            await trio.sleep(HEALTH_POLL)
    return None


def open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@dataclass
class Write:
    """One write that got a 2xx answer."""

    kind: str
    cycle: int
    what: str
    lost: bool = False


@dataclass
class Msg:
    """The state a writer's answered writes imply for one of its messages."""

    id: str
    channel_id: str
    content: str
    idem: str | None
    post_write: int
    cycle: int
    holder: str | None = None
    claim_write: int | None = None  # last answered write that set the holder
    token: str | None = None
    token_write: int | None = None  # last answered write that set or extended the lease
    dead_tokens: dict[str, int] = field(default_factory=dict)  # token -> write that ended it
    acks: dict[str, int] = field(default_factory=dict)  # actor name -> ack write
    maybe_acks: set[str] = field(default_factory=set)
    retired: bool = False
    allowed_holders: set[str | None] = field(default_factory=set)  # when retired


@dataclass
class Sess:
    """The state a writer's answered session writes imply for one session."""

    id: str
    create_write: int
    state: dict[str, Any]
    write: int  # last answered write that set ``state``
    retired: bool = False
    allowed: list[dict[str, Any]] = field(default_factory=list)  # when retired


@dataclass
class Pending:
    """A write sent and not (yet) answered."""

    kind: str
    msg: Msg | None = None
    actor: str | None = None
    content: str | None = None
    sess: Sess | None = None
    state: dict[str, Any] | None = None


@dataclass
class Worker:
    index: int
    key: str
    key_id: str
    mint_write: int
    actors: tuple[str, str]
    msgs: list[Msg] = field(default_factory=list)
    sessions: list[Sess] = field(default_factory=list)
    counter: int = 0
    pending: Pending | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@dataclass
class Verdict:
    lost_before: int
    checked: int = 0
    phantoms: list[str] = field(default_factory=list)


class Server:
    """One run of the server process."""

    def __init__(self, process: trio.Process, url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path


class CrashTest:
    """The run: the model of answered writes, the server process, the cycles."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = root
        self.data_dir = root / "data"
        self.log_dir = root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writes: list[Write] = []
        self.workers: list[Worker] = []
        self.channels: list[tuple[str, int]] = []  # (channel id, create write)
        self.owner_headers: dict[str, str] = {}
        self.maybe_contents: set[str] = set()
        self.refusals = 0
        self.stalls = 0  # keep-alive requests left unanswered (issue 8)
        self.starts = 0
        self.kills = 0
        self.restarts_ok = True
        self.phantoms = 0
        self.cycle = 0
        self.server: Server | None = None
        self.access = AccessWriter(self, random.Random(self.rng.random()))
        self.delivery = DeliveryWriter(self, random.Random(self.rng.random()))
        self.minting_value = True  # the setting's default until a toggle is answered
        self.minting_write: int | None = None
        self.minting_maybe: set[bool] = set()

    # -- bookkeeping ---------------------------------------------------------

    def answered(self, kind: str, what: str) -> int:
        self.writes.append(Write(kind, self.cycle, what))
        return len(self.writes) - 1

    def lose(self, index: int | None, why: str, verdict: Verdict) -> None:
        if index is None:
            verdict.phantoms.append(why)
            return
        write = self.writes[index]
        if not write.lost:
            write.lost = True
            print(f"  LOST {write.kind} (cycle {write.cycle}, {write.what}): {why}")

    @property
    def lost(self) -> int:
        return sum(1 for write in self.writes if write.lost)

    # -- the server process --------------------------------------------------

    async def start(self) -> Server | None:
        """Start the server and wait for ``/health``; None if it did not come up."""
        self.starts += 1
        log_path = self.log_dir / f"server-{self.starts}.log"
        env = dict(os.environ)
        env.update(
            BACKCHANNEL_RATE_LIMIT="0",
            BACKCHANNEL_KEY_MINT_LIMIT="0",
            BACKCHANNEL_SANDBOX_HEARTBEAT_SECONDS="0",
            BACKCHANNEL_ADMIN_TOKEN=ADMIN_TOKEN,
        )
        command = [
            server_python(),
            "-m",
            "backchannel",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
        ]
        if self.args.snapshot_interval > 0:
            command += ["--snapshot-interval", str(self.args.snapshot_interval)]
        log = open_log(log_path)
        try:
            process = await trio.lowlevel.open_process(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=str(REPO),
                start_new_session=True,
            )
        finally:
            log.close()
        started = time.monotonic()
        url = await bound_url(process, log_path)
        server = self.server = Server(process, url or "http://127.0.0.1:0", log_path)
        if url is None or not await self.wait_health(server):
            print(f"  server start {self.starts} did not come up; log tail:")
            for line in read_log(log_path).splitlines()[-20:]:
                print(f"    {line}")
            await self.kill()
            return None
        text = await trio.to_thread.run_sync(read_log, log_path)
        found = RECOVERED.search(text)
        up = time.monotonic() - started
        if found is None:
            print(f"  server start {self.starts}: no 'recovered from ...' line in its log")
            self.restarts_ok = False
            return server
        warnings = [line for line in text.splitlines() if "recovery:" in line]
        print(
            f"  start {self.starts}: up in {up:.2f}s; recovered from {found['source']}, "
            f"{found['channels']} channels, {found['messages']} live messages, "
            f"replayed={found['replayed']} log records"
            + (f", {len(warnings)} recovery warnings" if warnings else "")
        )
        for line in warnings:
            print(f"    {line}")
        return server

    async def wait_health(self, server: Server) -> bool:
        with trio.move_on_after(STARTUP_TIMEOUT):
            async with httpx.AsyncClient(base_url=server.url, timeout=2.0) as client:
                for _ in range(int(STARTUP_TIMEOUT / HEALTH_POLL) + 1):
                    if server.process.returncode is not None:
                        break
                    try:
                        response = await client.get("/health")
                        if response.status_code == 200:
                            return True
                    except httpx.TransportError:
                        pass
                    await trio.sleep(HEALTH_POLL)
        return False

    async def kill(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        with trio.CancelScope(shield=True):
            if server.process.returncode is None:
                server.process.kill()
            with trio.move_on_after(STOP_TIMEOUT):
                await server.process.wait()

    async def stop(self) -> int | None:
        """SIGTERM the server and wait (bounded); its exit status, None if it hung."""
        server = self.server
        if server is None:
            return None
        server.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_TIMEOUT):
            code = await server.process.wait()
            self.server = None
            return code
        await self.kill()
        return None

    # -- setup ---------------------------------------------------------------

    async def setup(self, client: httpx.AsyncClient) -> None:
        owner = await self.mint(client, "crash-owner")
        self.owner_headers = {"X-API-Key": owner[0]}
        for n in range(CHANNELS):
            response = await client.post(
                "/v1/channels",
                json={"name": f"crash-{n}", "mode": "claimable", "access": "open"},
                headers=self.owner_headers,
            )
            response.raise_for_status()
            channel_id = response.json()["id"]
            self.channels.append((channel_id, self.answered("create_channel", channel_id)))
        for index in range(self.args.workers):
            key, key_id, write = await self.mint(client, f"crash-w{index}")
            actors = (f"w{index}-a", f"w{index}-b")
            self.workers.append(Worker(index, key, key_id, write, actors))
        await self.access.setup(client)
        await self.delivery.setup(client)

    async def mint(self, client: httpx.AsyncClient, label: str) -> tuple[str, str, int]:
        response = await client.post("/v1/keys", json={"agent_label": label})
        response.raise_for_status()
        body = response.json()
        return body["key"], body["key_id"], self.answered("mint_key", body["key_id"])

    # -- writers -------------------------------------------------------------

    async def run_worker(self, client: httpx.AsyncClient, worker: Worker, until: float) -> None:
        """Write until the server goes away (a transport error), or a bound is hit."""
        for _ in range(MAX_OPS_PER_WORKER):
            if trio.current_time() >= until:
                return
            try:
                await self.one_write(client, worker)
            except httpx.TransportError:
                return

    async def one_write(self, client: httpx.AsyncClient, worker: Worker) -> None:
        rng = self.rng
        recent = [m for m in worker.msgs[-40:] if not m.retired]
        options: dict[str, list[tuple[Msg, str]]] = {}
        for m in recent:
            if m.holder is None:
                options.setdefault("claim", []).append((m, rng.choice(worker.actors)))
                options.setdefault("lease", []).append((m, rng.choice(worker.actors)))
            else:
                options.setdefault("release", []).append((m, m.holder))
                if m.token is not None:
                    options.setdefault("heartbeat", []).append((m, m.holder))
            for name in worker.actors:
                if name not in m.acks:
                    options.setdefault("ack", []).append((m, name))
        if any(not s.retired for s in worker.sessions[-10:]):
            options["session_patch"] = []
        kinds = ["post", "session_new", *options]
        (kind,) = rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])
        if kind == "post":
            await self.post(client, worker)
            return
        if kind.startswith("session"):
            await self.session_write(client, worker, kind)
            return
        msg, actor = rng.choice(options[kind])
        worker.pending = Pending(kind, msg, actor)
        headers = worker.headers
        body: dict[str, Any]
        if kind == "claim":
            path, body = f"/v1/messages/{msg.id}/claim", {"actor": actor}
        elif kind == "lease":
            path = f"/v1/messages/{msg.id}/claim-with-lease"
            body = {"actor": actor, "lease_seconds": LEASE_SECONDS}
        elif kind == "release":
            path, body = f"/v1/messages/{msg.id}/release", {"actor": actor}
        elif kind == "heartbeat":
            path, body = f"/v1/leases/{msg.token}/heartbeat", {"lease_seconds": LEASE_SECONDS}
        else:
            path, body = f"/v1/messages/{msg.id}/ack", {"actor": actor}
        response = await client.post(path, json=body, headers=headers)
        if not response.is_success:
            self.refused(worker, response)
            return
        worker.pending = None
        reply = response.json()
        what = f"{kind} {msg.id} by {actor}"
        index = self.answered(kind, what)
        if kind == "claim":
            msg.holder, msg.claim_write = actor, index
        elif kind == "lease":
            msg.holder, msg.claim_write = actor, index
            msg.token, msg.token_write = reply["lease_token"], index
        elif kind == "heartbeat":
            msg.token_write = index
        elif kind == "release":
            if msg.token is not None:
                msg.dead_tokens[msg.token] = index
            msg.holder, msg.claim_write, msg.token, msg.token_write = None, index, None, None
        else:
            msg.acks[actor] = index
            if actor == msg.holder and msg.token is not None:
                msg.dead_tokens[msg.token] = index
                msg.token, msg.token_write = None, None

    async def post(self, client: httpx.AsyncClient, worker: Worker) -> None:
        worker.counter += 1
        channel_id = self.rng.choice(self.channels)[0]
        content = f"c{self.cycle}-w{worker.index}-{worker.counter}-{self.rng.getrandbits(32):08x}"
        idem = f"idem-{content}" if self.rng.random() < 0.5 else None
        headers = worker.headers
        if idem is not None:
            headers["Idempotency-Key"] = idem
        worker.pending = Pending("post", content=content)
        response = await client.post(
            f"/v1/channels/{channel_id}/messages", json={"content": content}, headers=headers
        )
        if not response.is_success:
            self.refused(worker, response)
            return
        worker.pending = None
        message_id = response.json()["message"]["id"]
        index = self.answered("post", f"{message_id} in {channel_id}")
        worker.msgs.append(Msg(message_id, channel_id, content, idem, index, self.cycle))

    async def session_write(self, client: httpx.AsyncClient, worker: Worker, kind: str) -> None:
        """Create a session, or patch one of the worker's with a new counter value."""
        worker.counter += 1
        value = {f"k{worker.counter % 5}": worker.counter}
        if kind == "session_new":
            worker.pending = Pending(kind)
            response = await client.post(
                "/v1/sessions", json={"name": "crash", "state": value}, headers=worker.headers
            )
        else:
            sess = self.rng.choice([s for s in worker.sessions[-10:] if not s.retired])
            worker.pending = Pending(kind, sess=sess, state={**sess.state, **value})
            response = await client.patch(
                f"/v1/sessions/{sess.id}", json={"state": value}, headers=worker.headers
            )
        if not response.is_success:
            self.refused(worker, response)
            return
        pending, worker.pending = worker.pending, None
        body = response.json()
        index = self.answered(kind, f"session {body['id']}")
        if pending.sess is None:
            worker.sessions.append(Sess(body["id"], index, body["state"], index))
        else:
            pending.sess.state, pending.sess.write = body["state"], index

    async def toggle_minting(self, client: httpx.AsyncClient, until: float) -> None:
        """The operator flips public minting until the server goes away."""
        while trio.current_time() < until:
            value = not self.minting_value
            try:
                response = await client.post(
                    "/v1/admin/minting",
                    json={"enabled": value},
                    headers={"X-Admin-Token": ADMIN_TOKEN},
                )
            except httpx.TransportError:
                self.minting_maybe.add(value)
                return
            if not response.is_success:
                print(f"  refused minting toggle: {response.status_code} {response.text[:200]}")
                self.minting_maybe.add(value)
                return
            self.minting_value = value
            self.minting_write = self.answered("minting", f"enabled={value}")
            self.minting_maybe.clear()
            await trio.sleep(MINTING_TOGGLE_PAUSE)

    def refused(self, worker: Worker, response: httpx.Response) -> None:
        pending = worker.pending
        self.refusals += 1
        if self.refusals > MAX_REFUSALS_SHOWN:
            self.unanswered(worker)
            return
        print(
            f"  refused {pending.kind if pending else '?'}: {response.status_code} "
            f"{response.text[:200]}"
        )
        self.unanswered(worker)

    def unanswered(self, worker: Worker) -> None:
        """The pending write may or may not have happened: allow both, retire the message."""
        pending, worker.pending = worker.pending, None
        if pending is None:
            return
        if pending.kind == "post":
            assert pending.content is not None
            self.maybe_contents.add(pending.content)
            return
        if pending.kind.startswith("session"):
            sess = pending.sess
            if sess is not None and pending.state is not None:  # a patch may have landed
                if not sess.retired:
                    sess.retired, sess.allowed = True, [sess.state]
                sess.allowed.append(pending.state)
            return
        msg = pending.msg
        assert msg is not None
        after = msg.holder
        if pending.kind in ("claim", "lease"):
            after = pending.actor
        elif pending.kind == "release":
            after = None
        elif pending.kind == "ack":
            assert pending.actor is not None
            msg.maybe_acks.add(pending.actor)
        if msg.retired:
            msg.allowed_holders |= {msg.holder, after}
        else:
            msg.retired = True
            msg.allowed_holders = {msg.holder, after}

    # -- a cycle ---------------------------------------------------------------

    async def crash_cycle(self, server: Server) -> None:
        """Writers run until SIGKILL at a random moment; then the process is reaped."""
        duration = self.args.duration_per_cycle
        delay = self.rng.uniform(0.25, 1.0) * duration
        before, refused_before = len(self.writes), self.refusals
        async with httpx.AsyncClient(
            base_url=server.url,
            timeout=REQUEST_TIMEOUT,
            limits=httpx.Limits(max_connections=self.args.workers * 2),
        ) as client:
            if not self.workers:
                await self.setup(client)
            until = trio.current_time() + duration * 3 + STOP_TIMEOUT
            with trio.move_on_at(until + REQUEST_TIMEOUT):
                async with trio.open_nursery() as nursery:
                    for worker in self.workers:
                        nursery.start_soon(self.run_worker, client, worker, until)
                    nursery.start_soon(self.late_bodies, server.url, until)
                    nursery.start_soon(self.access.run, client, until, trio.current_time)
                    nursery.start_soon(self.delivery.run, client, until, trio.current_time)
                    nursery.start_soon(self.toggle_minting, client, until)
                    await trio.sleep(delay)
                    await self.kill()
                    self.kills += 1
        refused = self.refusals - refused_before
        in_flight = sum(1 for worker in self.workers if worker.pending is not None)
        for worker in self.workers:
            self.unanswered(worker)
        self.access.unanswered()
        self.delivery.unanswered()
        print(
            f"cycle {self.cycle}: SIGKILL after {delay:.2f}s; "
            f"answered={len(self.writes) - before} in_flight={in_flight} refused={refused}"
        )

    async def late_bodies(self, url: str, until: float) -> None:
        """One keep-alive connection that POSTs to an unrouted path with the body
        sent after the headers, then GETs ``/health``: every request must be
        answered while the server lives (the stall of issue 8 left the next one
        unanswered). A closed connection ends it; a silent one counts a stall."""
        port = int(url.rsplit(":", 1)[1])
        head = b"POST /v1/no-such-route HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n"
        get = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            return
        async with stream:
            for _ in range(MAX_OPS_PER_WORKER):
                if trio.current_time() >= until:
                    return
                try:
                    await stream.send_all(head)
                    received = b""
                    with trio.move_on_after(0.05):  # answered before the body, or not
                        received = await stream.receive_some(65536)
                    await stream.send_all(b"{}" + get)
                    with trio.move_on_after(STALL_TIMEOUT) as waited:
                        while received.count(b"HTTP/1.1 ") < 2 or not received.endswith(b"}"):
                            chunk = await stream.receive_some(65536)
                            if not chunk:
                                return  # the server is gone (the kill)
                            received += chunk
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if waited.cancelled_caught:
                    self.stalls += 1
                    print(f"cycle {self.cycle}: a keep-alive request after a late body stalled")
                    return

    # -- verification ----------------------------------------------------------

    async def verify(self, server: Server) -> None:
        verdict = Verdict(self.lost)
        async with httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT) as client:
            for worker in self.workers:
                response = await client.get("/v1/keys/me", headers=worker.headers)
                verdict.checked += 1
                if response.status_code != 200:
                    self.lose(worker.mint_write, f"/v1/keys/me -> {response.status_code}", verdict)
            live: dict[str, dict[str, Any]] = {}
            for channel_id, write in self.channels:
                verdict.checked += 1
                response = await client.get(
                    f"/v1/channels/{channel_id}", headers=self.owner_headers
                )
                if response.status_code != 200:
                    self.lose(write, f"channel -> {response.status_code}", verdict)
                    continue
                for item in await self.pages(client, f"/v1/channels/{channel_id}/messages"):
                    live[item["id"]] = item
            self.check_phantom_posts(live, verdict)
            await self.check_access_state(client, verdict)
            archived: dict[str, dict[str, Any]] | None = None
            for worker in self.workers:
                for msg in worker.msgs:
                    view = live.get(msg.id)
                    if view is None:
                        if archived is None:
                            archived = {}
                            for channel_id, _ in self.channels:
                                path = f"/v1/channels/{channel_id}/history"
                                for item in await self.pages(client, path):
                                    archived[item["id"]] = item
                        view = archived.get(msg.id)
                        if view is not None:  # expired: the post survived, claims are moot
                            self.check_post(msg, view, verdict)
                            continue
                    self.check_message(worker, msg, view, verdict)
            await self.access.verify(client, verdict)
            await self.delivery.verify(client, verdict)
            limiter = trio.CapacityLimiter(8)
            async with trio.open_nursery() as nursery:
                for worker in self.workers:
                    for msg in worker.msgs:
                        nursery.start_soon(self.check_tokens, client, limiter, worker, msg, verdict)
                        if msg.idem is not None and (
                            msg.cycle == self.cycle - 1 or self.rng.random() < 0.1
                        ):
                            nursery.start_soon(
                                self.check_replay, client, limiter, worker, msg, verdict
                            )
        lost_now = self.lost - verdict.lost_before
        print(
            f"restart {self.kills}: verified {verdict.checked} checks over {len(self.writes)} "
            f"answered writes; newly lost={lost_now} phantom={len(verdict.phantoms)}"
        )
        for why in verdict.phantoms[:20]:
            print(f"  phantom: {why}")
        self.phantoms += len(verdict.phantoms)

    async def check_access_state(self, client: httpx.AsyncClient, verdict: Verdict) -> None:
        """Sessions hold their last answered state; minting shows the last answered toggle."""
        for worker in self.workers:
            for sess in worker.sessions:
                verdict.checked += 1
                response = await client.get(f"/v1/sessions/{sess.id}", headers=worker.headers)
                if response.status_code != 200:
                    self.lose(sess.create_write, f"session -> {response.status_code}", verdict)
                    continue
                state = response.json()["state"]
                if state == sess.state:
                    continue
                if sess.retired and state in sess.allowed:
                    sess.state = state  # what survived is what later checks expect
                    continue
                self.lose(sess.write, f"session state {state} != {sess.state}", verdict)
        verdict.checked += 1
        observed = (await client.get("/health")).json()["public_minting_enabled"]
        if observed in self.minting_maybe:
            self.minting_value = observed
        elif observed != self.minting_value:
            self.lose(self.minting_write, f"public_minting_enabled={observed}", verdict)
        self.minting_maybe.clear()

    async def pages(self, client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
        """Every item of a paged listing (bounded); what was read before an error."""
        items: list[dict[str, Any]] = []
        params = {"limit": "100"}
        for _ in range(10_000):
            response = await client.get(path, params=params, headers=self.owner_headers)
            if response.status_code != 200:
                print(f"  GET {path} -> {response.status_code} {response.text[:120]}")
                break
            body = response.json()
            items.extend(body["data"])
            if not body["data"] or not body.get("next_cursor"):
                break
            params = {"limit": "100", "cursor": body["next_cursor"]}
        return items

    def check_phantom_posts(self, live: dict[str, dict[str, Any]], verdict: Verdict) -> None:
        known = {m.content: m.id for w in self.workers for m in w.msgs}
        for item in live.values():
            content = item["content"]
            if content in known:
                if known[content] != item["id"]:
                    verdict.phantoms.append(f"duplicate of {known[content]}: {item['id']}")
            elif content not in self.maybe_contents:
                verdict.phantoms.append(f"unknown message {item['id']} {content!r}")

    def check_post(self, msg: Msg, view: dict[str, Any] | None, verdict: Verdict) -> bool:
        verdict.checked += 1
        if view is None:
            self.lose(msg.post_write, "message not listed, not in history", verdict)
            return False
        if view["content"] != msg.content or view["channel_id"] != msg.channel_id:
            self.lose(
                msg.post_write, f"listed as {view['content']!r} in {view['channel_id']}", verdict
            )
            return False
        return True

    def check_message(
        self, worker: Worker, msg: Msg, view: dict[str, Any] | None, verdict: Verdict
    ) -> None:
        if not self.check_post(msg, view, verdict):
            return
        assert view is not None
        claimed_by = view["claimed_by"]
        holder = claimed_by["name"] if claimed_by else None
        verdict.checked += 1
        if msg.retired:
            if holder not in msg.allowed_holders:
                self.lose(
                    msg.claim_write,
                    f"held by {holder}, expected one of {sorted(map(str, msg.allowed_holders))}",
                    verdict,
                )
        elif holder != msg.holder:
            self.lose(msg.claim_write, f"held by {holder}, expected {msg.holder}", verdict)
        elif holder is not None and view["claimed_by_key_id"] != worker.key_id:
            self.lose(msg.claim_write, f"claimed by key {view['claimed_by_key_id']}", verdict)
        names = {ack["name"] for ack in view["acknowledged_by"]}
        for actor, write in msg.acks.items():
            verdict.checked += 1
            if actor not in names:
                self.lose(write, f"ack by {actor} missing from acknowledged_by", verdict)
        for name in names - set(msg.acks) - msg.maybe_acks:
            verdict.phantoms.append(f"ack by {name} on {msg.id} that nobody sent")

    async def check_tokens(
        self,
        client: httpx.AsyncClient,
        limiter: trio.CapacityLimiter,
        worker: Worker,
        msg: Msg,
        verdict: Verdict,
    ) -> None:
        async with limiter:
            body = {"lease_seconds": LEASE_SECONDS}
            if msg.token is not None and not msg.retired:
                verdict.checked += 1
                response = await client.post(
                    f"/v1/leases/{msg.token}/heartbeat", json=body, headers=worker.headers
                )
                if response.status_code != 200:
                    why = f"lease token heartbeat -> {response.status_code} {response.text[:120]}"
                    self.lose(msg.token_write, why, verdict)
            for token, write in msg.dead_tokens.items():
                verdict.checked += 1
                response = await client.post(
                    f"/v1/leases/{token}/heartbeat", json=body, headers=worker.headers
                )
                if response.is_success:
                    self.lose(write, "ended lease token still heartbeats", verdict)

    async def check_replay(
        self,
        client: httpx.AsyncClient,
        limiter: trio.CapacityLimiter,
        worker: Worker,
        msg: Msg,
        verdict: Verdict,
    ) -> None:
        assert msg.idem is not None
        async with limiter:
            verdict.checked += 1
            response = await client.post(
                f"/v1/channels/{msg.channel_id}/messages",
                json={"content": msg.content},
                headers={**worker.headers, "Idempotency-Key": msg.idem},
            )
            replayed = response.headers.get("X-Idempotent-Replay") == "true"
            if not response.is_success or not replayed:
                why = f"Idempotency-Key retry -> {response.status_code}, replay={replayed}"
                if response.is_success:
                    self.maybe_contents.add(msg.content)  # the retry made a new message
                self.lose(msg.post_write, why, verdict)
            elif response.json()["message"]["id"] != msg.id:
                self.lose(msg.post_write, "Idempotency-Key replay names another message", verdict)

    # -- the run ---------------------------------------------------------------

    async def run(self) -> int:
        try:
            for cycle in range(1, self.args.kills + 1):
                self.cycle = cycle
                server = await self.start()
                if server is None:
                    self.restarts_ok = False
                    break
                if cycle > 1:
                    await self.verify(server)
                await self.crash_cycle(server)
            else:
                self.cycle += 1
                server = await self.start()
                if server is None:
                    self.restarts_ok = False
                else:
                    await self.verify(server)
                    code = await self.stop()
                    print(f"final SIGTERM: exit status {code}")
        finally:
            await self.kill()
        answered = len(self.writes)
        kinds: dict[str, int] = {}
        for write in self.writes:
            kinds[write.kind] = kinds.get(write.kind, 0) + 1
        print("answered by kind: " + " ".join(f"{k}={n}" for k, n in sorted(kinds.items())))
        if self.args.keep_dir:
            print(f"data dir kept: {self.data_dir} (server logs in {self.log_dir})")
        print(f"keep-alive stalls: {self.stalls}")
        print(f"seed={self.args.seed} kills={self.kills} answered={answered}")
        print(f"kills={self.kills} answered={answered} lost={self.lost} phantom={self.phantoms}")
        ok = self.lost == 0 and self.phantoms == 0 and self.stalls == 0
        return 0 if ok and self.restarts_ok else 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kills", type=int, default=5, help="SIGKILL/restart cycles")
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"random seed (default {DEFAULT_SEED}, so a run repeats; -1: a random one)",
    )
    parser.add_argument(
        "--duration-per-cycle",
        type=float,
        default=3.0,
        help="seconds; the kill lands at a random moment in [0.25, 1] of it",
    )
    parser.add_argument("--workers", type=int, default=8, help="concurrent writers")
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=1.0,
        help="server snapshot interval in seconds (0: server default)",
    )
    parser.add_argument("--keep-dir", action="store_true", help="keep the data dir and logs")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.workers < 1 or args.duration_per_cycle <= 0:
        parser.error("--kills and --workers must be >= 1, --duration-per-cycle > 0")
    if args.seed == -1:
        args.seed = random.randrange(2**32)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="backchannel-crash-"))
    print(f"crash test: seed={args.seed} kills={args.kills} workers={args.workers} dir={root}")
    try:
        return trio.run(CrashTest(args, root).run)
    finally:
        if not args.keep_dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
