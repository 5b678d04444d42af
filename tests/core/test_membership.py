"""A Hypothesis model of channel access: who may read, after any sequence of changes.

The machine drives a :class:`World` with one restricted channel the way a
channel actor does: each command decides with ``core.membership`` and the
resulting event is applied through ``World.apply`` with the next seq. A
plain model (a set of member keys, invitations with their expiry and
revocation, access requests with their status) says what the rules of
contract §2.5 / §3.4 / §0.7 allow; the machine checks each answer against
it.

Invariants:

- the set of keys that can read the channel is exactly the owner, plus the
  modelled members while the channel is restricted, plus everyone while it
  is open;
- a refused command changes nothing (the channel's snapshot bytes are equal);
- replaying the log into a fresh world equals the live world (snapshot
  bytes and the invitation index), and so does a snapshot taken at a random
  point, loaded and replayed with the whole log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from backchannel.core import membership
from backchannel.core.errors import ApiError
from backchannel.core.events import Event, from_wire, to_wire
from backchannel.core.records import KeyRecord
from backchannel.core.world import World
from backchannel.storage.state import (
    load_snapshot_payload,
    pack_channel,
    pack_registry,
    pack_snapshot,
    replay,
)

SECOND = 1_000_000
HOUR = 3_600 * SECOND
DAY = 24 * HOUR
T0 = 1_800_000_000 * SECOND

KEY = st.integers(min_value=0, max_value=3)  # 0 is the owner
PICK = st.integers(min_value=0, max_value=1_000)


def refused(error: ApiError | None, code: str) -> None:
    assert error is not None, f"expected {code}"
    assert error.code == code


class AccessMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.log: list[tuple[int, Event]] = []
        self.seq = 0
        self.now = T0
        self.keys: list[KeyRecord] = []
        for label in ("owner", "a", "b", "c"):
            _raw, minted = self.world.decide_mint(label, self.now)
            self.commit(minted)
            self.keys.append(self.world.keys[minted.key_id])
        spec: dict[str, Any] = {
            "name": "lane",
            "mode": "broadcast",
            "access": "restricted",
            "discoverable": False,
            "description": "",
            "metadata_schema": {},
            "pinned_message": None,
            "ttl_seconds": 300,
            "retention_days": 1,
            "max_messages": None,
            "max_writes_per_minute": None,
            "webhook_url": None,
            "webhook_secret": None,
        }
        created = self.world.decide_create_channel(self.keys[0], spec, [], self.now)
        self.commit(created)
        self.state = self.world.channels[created.channel_id]
        self.owner = self.keys[0].key_id
        # the model
        self.access = "restricted"
        self.members: set[str] = {self.owner}
        self.invitations: dict[str, tuple[int, bool]] = {}  # id -> (expires_at, revoked)
        self.requests: dict[str, tuple[str, str]] = {}  # id -> (requester, status)
        self.snapshot: bytes | None = None

    # -- plumbing -----------------------------------------------------------------

    def commit(self, event: Event) -> None:
        self.seq += 1
        self.log.append((self.seq, event))
        wire = to_wire(event)
        assert from_wire(wire) == event
        self.world.apply(event, self.seq)

    def attempt(self, decide: Callable[[], Event | None]) -> ApiError | None:
        before = pack_channel(self.state)
        try:
            event = decide()
        except ApiError as exc:
            refusal = exc
        else:
            if event is not None:
                self.commit(event)
            return None
        assert pack_channel(self.state) == before, refusal
        return refusal

    def key(self, k: int) -> KeyRecord:
        return self.keys[k]

    def pick(self, pool: list[str], index: int) -> str | None:
        return pool[index % len(pool)] if pool else None

    # -- rules --------------------------------------------------------------------

    @rule(dt=st.sampled_from([0, SECOND, HOUR, DAY - SECOND, DAY, 2 * DAY]))
    def advance(self, dt: int) -> None:
        self.now += dt

    @rule(k=KEY, m=KEY)
    def add_member(self, k: int, m: int) -> None:
        member = self.key(m).key_id
        error = self.attempt(
            lambda: membership.decide_add_member(self.state, self.key(k), member, self.now)
        )
        if k == 0:
            assert error is None
            self.members.add(member)
        else:
            refused(error, "forbidden")

    @rule(k=KEY, m=KEY)
    def remove_member(self, k: int, m: int) -> None:
        member = self.key(m).key_id
        error = self.attempt(
            lambda: membership.decide_remove_member(self.state, self.key(k), member, self.now)
        )
        if k != 0:
            refused(error, "forbidden")
        elif m == 0:
            refused(error, "cannot_remove_owner")
        else:
            assert error is None
            self.members.discard(member)

    @rule(k=KEY)
    def invite(self, k: int) -> None:
        created: list[str] = []

        def decide() -> Event:
            event = membership.decide_invite(self.state, self.key(k), self.now)
            created.append(event.invitation_id)
            return event

        error = self.attempt(decide)
        if k == 0:
            assert error is None
            self.invitations[created[0]] = (self.now + DAY, False)
        else:
            refused(error, "forbidden")

    @rule(k=KEY, index=PICK)
    def resolve(self, k: int, index: int) -> None:
        invitation_id = self.pick(list(self.invitations), index) or "unknown"
        error = self.attempt(
            lambda: membership.decide_resolve(self.state, invitation_id, self.key(k), self.now)
        )
        expected = self.invitation_problem(invitation_id)
        if expected is None:
            assert error is None
            self.members.add(self.key(k).key_id)
        else:
            refused(error, expected)

    def invitation_problem(self, invitation_id: str) -> str | None:
        if invitation_id not in self.invitations:
            return "invitation_not_found"
        expires_at, revoked = self.invitations[invitation_id]
        if self.forgotten(invitation_id):
            return "invitation_not_found"
        if revoked:
            return "invitation_revoked"
        if expires_at <= self.now:
            return "invitation_expired"
        return None

    def forgotten(self, invitation_id: str) -> bool:
        """Rule 5: an invitation is dropped once an event lands a day after its expiry."""
        return self.invitations[invitation_id][0] + DAY <= self.last_event_time()

    def last_event_time(self) -> int:
        times = [getattr(event, "at", 0) for _, event in self.log]
        return max(times, default=0)

    @rule(k=KEY, index=PICK)
    def revoke(self, k: int, index: int) -> None:
        invitation_id = self.pick(list(self.invitations), index) or "unknown"
        known = invitation_id in self.invitations and not self.forgotten(invitation_id)
        error = self.attempt(
            lambda: membership.decide_revoke_invitation(
                self.state, invitation_id, self.key(k), self.now
            )
        )
        if not known:
            refused(error, "invitation_not_found")
        elif k != 0:
            refused(error, "forbidden")
        else:
            assert error is None
            self.invitations[invitation_id] = (self.invitations[invitation_id][0], True)

    @rule(k=KEY)
    def request(self, k: int) -> None:
        key = self.key(k)
        status, request_id, event = membership.decide_request_access(
            self.state, key, None, self.now
        )
        pending = [
            i for i, (who, s) in self.requests.items() if who == key.key_id and s == "pending"
        ]
        if self.access == "open":
            assert (status, event) == ("open", None)
        elif key.key_id in self.members:
            assert (status, event) == ("already_member", None)
        elif pending:
            assert (status, request_id, event) == ("pending", pending[0], None)
        else:
            assert status == "pending"
            assert event is not None
            self.commit(event)
            assert request_id is not None
            self.requests[request_id] = (key.key_id, "pending")

    @rule(k=KEY, index=PICK, approve=st.booleans())
    def decide_request(self, k: int, index: int, approve: bool) -> None:
        request_id = self.pick(list(self.requests), index) or "unknown"
        error = self.attempt(
            lambda: membership.decide_access_request(
                self.state, self.key(k), request_id, approve, self.now
            )
        )
        if k != 0:
            refused(error, "forbidden")
        elif request_id not in self.requests:
            refused(error, "access_request_not_found")
        elif self.requests[request_id][1] != "pending":
            refused(error, "access_request_resolved")
        else:
            assert error is None
            requester = self.requests[request_id][0]
            self.requests[request_id] = (requester, "approved" if approve else "denied")
            if approve:
                self.members.add(requester)

    @rule(k=KEY, access=st.sampled_from(["open", "restricted"]))
    def patch_access(self, k: int, access: str) -> None:
        error = self.attempt(
            lambda: membership.decide_update(self.state, self.key(k), {"access": access}, self.now)
        )
        if k == 0:
            assert error is None
            self.access = access
        else:
            refused(error, "forbidden")

    @rule()
    def take_snapshot(self) -> None:
        self.snapshot = pack_snapshot(
            self.now, pack_registry(self.world), [pack_channel(self.state)]
        )

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def readers_are_what_the_rules_say(self) -> None:
        config = self.state.config
        readers = {k.key_id for k in self.keys if config.can_access(k.key_id)}
        everyone = {k.key_id for k in self.keys}
        expected = everyone if self.access == "open" else self.members & everyone
        assert readers == expected
        assert self.owner in readers
        assert set(config.members) == self.members

    @invariant()
    def pending_requests_match(self) -> None:
        pending = {i for i, (_, s) in self.requests.items() if s == "pending"}
        live = {r.id for r in self.state.ledger.requests.values() if r.status == "pending"}
        assert live == pending

    @invariant()
    def replaying_the_log_equals_the_live_world(self) -> None:
        rebuilt = World()
        for seq, event in self.log:
            rebuilt.apply(event, seq)
        self.assert_same(rebuilt)

    @invariant()
    def snapshot_then_replay_equals_the_live_world(self) -> None:
        if self.snapshot is None:
            return
        loaded, _clock = load_snapshot_payload(self.snapshot)
        replay(loaded, [(seq, to_wire(event)) for seq, event in self.log])
        self.assert_same(loaded)

    def assert_same(self, other: World) -> None:
        state = other.channels[self.state.config.id]
        assert pack_channel(state) == pack_channel(self.state)
        assert other.invitations == self.world.invitations
        assert set(self.world.invitations) == set(self.state.ledger.invitations)


AccessMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, report_multiple_bugs=False
)
TestAccessMachine = AccessMachine.TestCase
