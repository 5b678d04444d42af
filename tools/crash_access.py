"""The crash test's access writer: channels, members, invitations, requests, PATCH, DELETE.

One writer (one request at a time, so the model stays exact) owns a few
restricted channels it creates during the run, and three guest keys. It
creates channels, adds and removes members, creates, resolves and revokes
invitations, asks for access and approves or denies, patches descriptions,
adds aliases and deletes channels. Every 2xx answer is recorded as an
answered write of the crash test with the state it implies. A write with
no answer may or may not have happened: its channel is retired (neither
written nor checked again), exactly like the message writers retire a
message.

After each restart the model must hold exactly, for every channel that is
not retired: a deleted channel is 404; a live one has the patched
description and every added alias; its member keys are exactly the owner's
plus the members the answered writes left; its pending access requests are
exactly the modelled ones; and its event log holds an entry for every
answered member, invitation and approval write (all within its 24 h life).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from crash_test import CrashTest, Verdict

GUESTS = 3
MAX_CHANNELS = 6


@dataclass
class Lane:
    """What the answered writes imply for one channel of the access writer."""

    id: str
    create_write: int
    name: str
    description: str = ""
    description_write: int | None = None
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> write
    members: dict[str, int | None] = field(default_factory=dict)  # key id -> write that set it
    removed: dict[str, int] = field(default_factory=dict)  # key id -> write that removed it
    invitations: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    pending: dict[str, tuple[str, int]] = field(default_factory=dict)  # request -> (key, write)
    logged: list[tuple[tuple[str, str | None], int]] = field(default_factory=list)
    deleted_write: int | None = None
    retired: bool = False


class AccessWriter:
    def __init__(self, test: CrashTest, rng: random.Random) -> None:
        self.test = test
        self.rng = rng
        self.owner: dict[str, str] = {}
        self.owner_id = ""
        self.guests: list[tuple[dict[str, str], str]] = []  # (headers, key id)
        self.lanes: list[Lane] = []
        self.pending: Lane | None = None
        self.counter = 0

    async def setup(self, client: httpx.AsyncClient) -> None:
        key, self.owner_id, _ = await self.test.mint(client, "crash-access-owner")
        self.owner = {"X-API-Key": key}
        for n in range(GUESTS):
            key, key_id, _ = await self.test.mint(client, f"crash-guest-{n}")
            self.guests.append(({"X-API-Key": key}, key_id))

    # -- writing ----------------------------------------------------------------

    async def run(self, client: httpx.AsyncClient, until: float, now: Any) -> None:
        while now() < until:
            try:
                await self.one_write(client)
            except httpx.TransportError:
                return

    def live(self) -> list[Lane]:
        return [lane for lane in self.lanes if not lane.retired and lane.deleted_write is None]

    async def one_write(self, client: httpx.AsyncClient) -> None:
        rng = self.rng
        lanes = self.live()
        if len(lanes) < 2 or (len(self.lanes) < MAX_CHANNELS and rng.random() < 0.05):
            await self.create(client)
            return
        lane = rng.choice(lanes)
        guest, guest_id = rng.choice(self.guests)
        kind = rng.choice(
            ["add", "add", "remove", "invite", "resolve", "revoke", "request", "decide"]
            + ["patch", "alias", "delete"] * (1 if rng.random() < 0.3 else 0)
        )
        self.pending = lane
        self.counter += 1
        base = f"/v1/channels/{lane.id}"
        if kind == "add":
            response = await client.post(
                f"{base}/members", json={"key_id": guest_id}, headers=self.owner
            )
            if self.ok(response):
                write = self.test.answered("member_add", f"{guest_id} to {lane.id}")
                lane.members[guest_id] = write
                lane.removed.pop(guest_id, None)
                lane.logged.append((("member_added", guest_id), write))
        elif kind == "remove":
            response = await client.delete(f"{base}/members/{guest_id}", headers=self.owner)
            if self.ok(response):
                write = self.test.answered("member_remove", f"{guest_id} from {lane.id}")
                lane.members.pop(guest_id, None)
                lane.removed[guest_id] = write
                lane.logged.append((("member_removed", guest_id), write))
        elif kind == "invite":
            response = await client.post(f"{base}/invitations", json={}, headers=self.owner)
            if self.ok(response):
                self.test.answered("invite", lane.id)
                lane.invitations.append(response.json()["id"])
        elif kind == "resolve" and lane.invitations:
            invitation = rng.choice(lane.invitations)
            response = await client.get(f"/v1/channel-invitations/{invitation}", headers=guest)
            if response.status_code == 410:
                self.pending = None  # revoked: an answered refusal changes nothing
                return
            if self.ok(response):
                write = self.test.answered("invitation_resolve", f"{invitation} by {guest_id}")
                lane.members.setdefault(guest_id, write)
                lane.removed.pop(guest_id, None)
                lane.logged.append((("invitation_resolved", guest_id), write))
        elif kind == "revoke" and lane.invitations:
            invitation = rng.choice(lane.invitations)
            path = f"/v1/channel-invitations/{invitation}"
            response = await client.delete(path, headers=self.owner)
            if self.ok(response):
                write = self.test.answered("invitation_revoke", invitation)
                if invitation not in lane.revoked:  # later revocations change nothing
                    lane.revoked.add(invitation)
                    lane.logged.append((("invitation_revoked", None), write))
        elif kind == "request":
            response = await client.post(f"{base}/access-requests", json={}, headers=guest)
            if self.ok(response):
                write = self.test.answered("access_request", f"{guest_id} to {lane.id}")
                if response.status_code == 202:
                    lane.pending[response.json()["request_id"]] = (guest_id, write)
        elif kind == "decide" and lane.pending:
            request_id = rng.choice(list(lane.pending))
            verb = rng.choice(["approve", "deny"])
            response = await client.post(
                f"{base}/access-requests/{request_id}/{verb}", headers=self.owner
            )
            if self.ok(response):
                write = self.test.answered(f"access_{verb}", request_id)
                requester, _ = lane.pending.pop(request_id)
                if verb == "approve":
                    lane.members.setdefault(requester, write)
                    lane.removed.pop(requester, None)
                    lane.logged.append((("member_added", requester), write))
        elif kind == "patch":
            text = f"d{self.counter}"
            response = await client.patch(base, json={"description": text}, headers=self.owner)
            if self.ok(response):
                lane.description = text
                lane.description_write = self.test.answered("channel_patch", lane.id)
        elif kind == "alias":
            alias = f"crash-alias-{self.counter}-{rng.getrandbits(32):08x}"
            response = await client.post(
                f"{base}/aliases", json={"alias": alias}, headers=self.owner
            )
            if self.ok(response):
                lane.aliases[alias] = self.test.answered("channel_alias", alias)
        elif kind == "delete":
            response = await client.delete(base, headers=self.owner)
            if self.ok(response):
                lane.deleted_write = self.test.answered("channel_delete", lane.id)
        self.pending = None

    async def create(self, client: httpx.AsyncClient) -> None:
        self.counter += 1
        name = f"lane-{self.counter}"
        self.pending = None
        response = await client.post(
            "/v1/channels",
            json={"name": name, "mode": "broadcast", "access": "restricted"},
            headers=self.owner,
        )
        if response.is_success:
            channel_id = response.json()["id"]
            write = self.test.answered("channel_create", channel_id)
            self.lanes.append(Lane(channel_id, write, name))

    def ok(self, response: httpx.Response) -> bool:
        if response.is_success:
            return True
        print(f"  access write refused: {response.status_code} {response.text[:200]}")
        self.unanswered()
        return False

    def unanswered(self) -> None:
        """A write in flight or refused: its channel may show either outcome; stop tracking it."""
        if self.pending is not None:
            self.pending.retired = True
            self.pending = None

    # -- checking -----------------------------------------------------------------

    async def verify(self, client: httpx.AsyncClient, verdict: Verdict) -> None:
        for lane in self.lanes:
            if lane.retired:
                continue
            verdict.checked += 1
            response = await client.get(f"/v1/channels/{lane.id}", headers=self.owner)
            if lane.deleted_write is not None:
                if response.status_code != 404:
                    self.test.lose(
                        lane.deleted_write, f"deleted channel -> {response.status_code}", verdict
                    )
                continue
            if response.status_code != 200:
                self.test.lose(lane.create_write, f"channel -> {response.status_code}", verdict)
                continue
            channel = response.json()
            if channel["description"] != lane.description:
                self.test.lose(
                    lane.description_write, f"description {channel['description']!r}", verdict
                )
            for alias, write in lane.aliases.items():
                if alias not in channel["aliases"]:
                    self.test.lose(write, f"alias {alias} missing", verdict)
            await self.verify_members(client, lane, verdict)
            await self.verify_requests(client, lane, verdict)
            await self.verify_log(client, lane, verdict)

    async def verify_members(self, client: httpx.AsyncClient, lane: Lane, verdict: Verdict) -> None:
        response = await client.get(f"/v1/channels/{lane.id}/members", headers=self.owner)
        found = {m["key_id"] for m in response.json()["data"]}
        for key_id, write in lane.members.items():
            if key_id not in found:
                self.test.lose(write, f"member {key_id} missing from {lane.id}", verdict)
        for key_id, write in lane.removed.items():
            if key_id in found:
                self.test.lose(write, f"removed member {key_id} still in {lane.id}", verdict)
        unexplained = found - set(lane.members) - {self.owner_id}
        for key_id in sorted(unexplained):
            self.test.lose(None, f"member {key_id} in {lane.id} nobody added", verdict)

    async def verify_requests(
        self, client: httpx.AsyncClient, lane: Lane, verdict: Verdict
    ) -> None:
        response = await client.get(f"/v1/channels/{lane.id}/access-requests", headers=self.owner)
        found = {r["id"] for r in response.json()["data"]}
        for request_id, (_key, write) in lane.pending.items():
            if request_id not in found:
                self.test.lose(write, f"pending request {request_id} missing", verdict)
        for request_id in sorted(found - set(lane.pending)):
            self.test.lose(
                None, f"request {request_id} in {lane.id} should not be pending", verdict
            )

    async def verify_log(self, client: httpx.AsyncClient, lane: Lane, verdict: Verdict) -> None:
        found: Counter[tuple[str, str | None]] = Counter()
        cursor: str | None = None
        while True:
            params = {"limit": "100", **({"since": cursor} if cursor else {})}
            response = await client.get(
                f"/v1/channels/{lane.id}/events", params=params, headers=self.owner
            )
            page = response.json()
            for entry in page["data"]:
                found[(entry["event_type"], entry["subject_key_id"])] += 1
            if len(page["data"]) < 100:
                break
            cursor = page["next_cursor"]
        wanted: Counter[tuple[str, str | None]] = Counter()
        for entry, write in lane.logged:
            wanted[entry] += 1
            if found[entry] < wanted[entry]:
                self.test.lose(write, f"event {entry} missing from {lane.id}", verdict)
