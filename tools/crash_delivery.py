"""The crash test's delivery writer: delayed posts, dead-letter moves, redrive.

One writer (one request at a time) owns two claimable channels: ``jobs``
(``max_deliveries`` 1, dead-lettering into ``dead``) and ``dead``. It posts
jobs (some with ``delay_seconds``), claims the next job and releases it
(which moves it to ``dead``: the move spans two channel actors), and
redrives ``dead`` back to ``jobs``. Each job has a unique content, so a job
is followed across moves (each move gives it a new message id).

After each restart, for every job whose post was answered:

- it is live in exactly one of the two channels (a move never loses it and
  never leaves it in both places), whatever was in flight at the kill;
- it is in the channel its answered writes imply, unless a write that could
  move it went unanswered (then either channel is accepted);
- a delayed job is checked once its ``visible_at`` has passed.

A job nobody posted (or whose post went unanswered) must not appear twice.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from crash_test import CrashTest, Verdict

JOBS, DEAD = "jobs", "dead"


@dataclass
class Job:
    content: str
    post_write: int
    visible_at: float  # epoch seconds
    where: str = JOBS
    where_write: int | None = None
    uncertain: bool = False  # a move of it went unanswered


class DeliveryWriter:
    def __init__(self, test: CrashTest, rng: random.Random) -> None:
        self.test = test
        self.rng = rng
        self.owner: dict[str, str] = {}
        self.channel: dict[str, str] = {}
        self.jobs: dict[str, Job] = {}  # content -> job
        self.maybe: set[str] = set()  # contents of unanswered posts
        self.pending: list[Job] = []  # jobs a write in flight may move
        self.counter = 0

    async def setup(self, client: httpx.AsyncClient) -> None:
        key, _owner, _ = await self.test.mint(client, "crash-delivery-owner")
        self.owner = {"X-API-Key": key}
        response = await client.post(
            "/v1/channels", json={"name": "crash-dead", "mode": "claimable"}, headers=self.owner
        )
        response.raise_for_status()
        self.channel[DEAD] = response.json()["id"]
        response = await client.post(
            "/v1/channels",
            json={
                "name": "crash-jobs",
                "mode": "claimable",
                "max_deliveries": 1,
                "dead_letter_channel": self.channel[DEAD],
            },
            headers=self.owner,
        )
        response.raise_for_status()
        self.channel[JOBS] = response.json()["id"]

    # -- writing ----------------------------------------------------------------

    async def run(self, client: httpx.AsyncClient, until: float, now: Any) -> None:
        while now() < until:
            try:
                await self.one_write(client)
            except httpx.TransportError:
                return

    async def one_write(self, client: httpx.AsyncClient) -> None:
        kind = self.rng.choice(["post", "post", "delayed", "fail", "fail", "redrive"])
        if kind in ("post", "delayed"):
            await self.post(client, delay=self.rng.choice([1, 2]) if kind == "delayed" else 0)
        elif kind == "fail":
            await self.fail_one(client)
        else:
            await self.redrive(client)

    async def post(self, client: httpx.AsyncClient, delay: int) -> None:
        self.counter += 1
        content = f"delivery-{self.counter}-{self.rng.getrandbits(32):08x}"
        self.maybe.add(content)
        body: dict[str, Any] = {"content": content}
        if delay:
            body["delay_seconds"] = delay
        response = await client.post(
            f"/v1/channels/{self.channel[JOBS]}/messages", json=body, headers=self.owner
        )
        if response.status_code == 201:
            self.maybe.discard(content)
            visible = datetime.fromisoformat(response.json()["message"]["visible_at"]).timestamp()
            write = self.test.answered("delivery_post", content)
            self.jobs[content] = Job(content, write, visible)

    async def fail_one(self, client: httpx.AsyncClient) -> None:
        """Claim the next job and release it: one delivery is the limit, so it moves."""
        response = await client.post(
            f"/v1/channels/{self.channel[JOBS]}/claim-next", json={}, headers=self.owner
        )
        if response.status_code != 200 or response.json()["claimed"] is None:
            return
        claimed = response.json()["claimed"]
        job = self.jobs.get(claimed["content"])
        if job is not None:
            self.pending = [job]
        response = await client.post(
            f"/v1/messages/{claimed['id']}/release", json={}, headers=self.owner
        )
        if response.status_code == 200 and job is not None:
            job.where, job.where_write = DEAD, self.test.answered("dead_letter", job.content)
        elif job is not None:
            job.uncertain = True
        self.pending = []

    async def redrive(self, client: httpx.AsyncClient) -> None:
        self.pending = [job for job in self.jobs.values() if job.where == DEAD]
        response = await client.post(
            f"/v1/channels/{self.channel[DEAD]}/redrive", json={"limit": 1000}, headers=self.owner
        )
        if response.status_code == 200:
            write = self.test.answered("redrive", f"moved {response.json()['moved']}")
            for job in self.pending:
                job.where, job.where_write = JOBS, write
        else:
            for job in self.pending:
                job.uncertain = True
        self.pending = []

    def unanswered(self) -> None:
        """The write in flight at the kill may or may not have happened."""
        for job in self.pending:
            job.uncertain = True
        self.pending = []

    # -- verifying ----------------------------------------------------------------

    async def verify(self, client: httpx.AsyncClient, verdict: Verdict) -> None:
        copies: Counter[str] = Counter()
        place: dict[str, str] = {}
        for where in (JOBS, DEAD):
            path = f"/v1/channels/{self.channel[where]}/messages"
            for item in await self.test.pages(client, path):
                copies[item["content"]] += 1
                place[item["content"]] = where
        now = time.time()
        for content, count in copies.items():
            if count > 1:
                self.test.lose(None, f"job {content} is live {count} times", verdict)
            elif content not in self.jobs and content not in self.maybe:
                self.test.lose(None, f"job {content} appeared from nowhere", verdict)
        for job in self.jobs.values():
            if job.visible_at > now - 0.5:
                continue  # may still be hidden: checked after a later restart
            verdict.checked += 1
            found = place.get(job.content)
            if found is None:
                self.test.lose(job.post_write, f"job {job.content} is in neither channel", verdict)
            elif found != job.where and not job.uncertain:
                self.test.lose(
                    job.where_write if job.where_write is not None else job.post_write,
                    f"job {job.content} is in {found}, expected {job.where}",
                    verdict,
                )
            elif job.uncertain:
                job.where, job.uncertain = found, False  # settled by what recovery kept
