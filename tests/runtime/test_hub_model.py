"""A model of the whole runtime: several channels, leases on virtual time,
revocation, idempotent retries, checked against the Hub's indexes.

Hypothesis draws a program (a list of operations); each program runs in its
own ``trio.run`` on ``MockClock(autojump_threshold=0)`` against the app over
an in-memory runtime, through Quart's test client (no sockets), so every
request goes through the real pipeline, Hub and channel actors. The model
(``World``) predicts every answer's status and error code from the
requests and the earlier answers alone, and after every operation the
Hub's indexes must equal the model's:

- ``hub.lease_index``: exactly the live leases (token → message id);
- ``hub.message_index``: every message that is live or in history (not the
  ones ``max_messages`` dropped), each mapped to its channel's actor;
- each actor's live messages, holders and lease deadlines.

Channels: ``jobs`` (claimable), ``queue`` (claimable, at most 3 live) and
``news`` (broadcast, with a metadata schema), all with a 300 s TTL. Keys: ``alice`` (the owner,
never revoked), ``bob`` and ``carol``. Each key acts as its default actor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.core.timefmt import format_ts
from backchannel.http.app import create_app
from backchannel.runtime.hub import Hub
from backchannel.runtime.service import open_runtime
from tests.conftest import test_settings

SECOND = 1_000_000
TTL = 300
CHANNELS = (("jobs", "claimable", None), ("queue", "claimable", 3), ("news", "broadcast", None))
SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
SCHEMA_CHANNEL = 2  # news checks metadata against SCHEMA
LABELS = ("alice", "bob", "carol")

KEY = st.integers(0, 2)
PICK = st.integers(0, 1_000)
LEASE = st.sampled_from([5, 30, 600])  # 600 s outlives the message's 300 s TTL
OPERATION = st.one_of(
    st.tuples(
        st.just("post"),
        st.integers(0, 2),
        KEY,
        st.one_of(st.none(), st.integers(0, 2)),
        st.sampled_from([{"n": 1}, {"n": 1}, {"n": "one"}, {}]),
    ),
    st.tuples(st.just("burst"), st.integers(0, 2), KEY, st.integers(2, 5)),
    st.tuples(st.just("claim"), PICK, KEY, LEASE),
    st.tuples(st.just("heartbeat"), PICK, KEY, LEASE),
    st.tuples(st.just("release"), PICK, KEY),
    st.tuples(st.just("ack"), PICK, KEY),
    st.tuples(st.just("advance"), st.sampled_from([1, 4, 5, 25, 31, 120, 301])),
    st.tuples(st.just("revoke"), st.integers(1, 2)),
    st.tuples(st.just("retry")),
)


@dataclass
class Msg:
    channel: int
    expires_at: int
    state: str = "live"  # live | history | dropped
    holder: int | None = None  # key index
    token: str | None = None
    lease_end: int | None = None
    acks: set[int] = field(default_factory=set)


@dataclass
class Answer:
    status: int
    body: Any


class Run:
    """One program against one runtime, and the model it must match."""

    def __init__(self, hub: Hub, client: Any) -> None:
        self.hub = hub
        self.client = client
        self.keys: list[str] = []
        self.key_ids: list[str] = []
        self.channel_ids: list[str] = []
        self.msgs: dict[str, Msg] = {}  # every message ever posted, in post order
        self.tokens: list[str] = []
        self.revoked: set[int] = set()
        self.stored: dict[tuple[int, str], tuple[str, Answer]] = {}  # idempotent replies
        self.last_idempotent: tuple[int, int, int, dict[str, Any]] | None = None
        self.posts = 0

    # -- plumbing ---------------------------------------------------------------

    async def request(
        self, method: str, path: str, key: int, body: Any = None, idem: str | None = None
    ) -> Answer:
        headers = {"X-API-Key": self.keys[key]}
        if idem is not None:
            headers["Idempotency-Key"] = idem
        response = await self.client.open(path, method=method, json=body or {}, headers=headers)
        return Answer(response.status_code, await response.get_json())

    def expect(self, answer: Answer, status: int, code: str | None = None) -> None:
        assert answer.status == status, (answer.status, answer.body, status, code)
        if code is not None:
            assert answer.body["error"] == code, answer.body

    def now(self) -> int:
        return self.hub.clock.now()

    def pick(self, index: int) -> str | None:
        ids = list(self.msgs)
        return ids[index % len(ids)] if ids else None

    def settle_time(self) -> None:
        now = self.now()
        for msg in self.msgs.values():
            if msg.state != "live":
                continue
            if msg.expires_at <= now:
                msg.state = "history"
                msg.holder = msg.token = msg.lease_end = None
            elif msg.lease_end is not None and msg.lease_end <= now:
                msg.holder = msg.token = msg.lease_end = None

    # -- setup --------------------------------------------------------------------

    async def setup(self) -> None:
        for label in LABELS:
            minted = await self.client.post("/v1/keys", json={"agent_label": label})
            body = await minted.get_json()
            self.keys.append(body["key"])
            self.key_ids.append(body["key_id"])
        for name, mode, cap in CHANNELS:
            spec: dict[str, Any] = {"name": name, "mode": mode, "ttl_seconds": TTL}
            if cap is not None:
                spec["max_messages"] = cap
            if len(self.channel_ids) == SCHEMA_CHANNEL:
                spec["metadata_schema"] = SCHEMA
            created = await self.request("POST", "/v1/channels", 0, spec)
            self.expect(created, 201)
            self.channel_ids.append(created.body["id"])

    # -- operations ---------------------------------------------------------------

    async def post(
        self, channel: int, key: int, idem: int | None, metadata: dict[str, Any] | None = None
    ) -> None:
        path = f"/v1/channels/{self.channel_ids[channel]}/messages"
        idem_key = f"idem-{idem}" if idem is not None else None
        metadata = {"n": 1} if metadata is None else metadata
        if idem is not None:
            self.last_idempotent = (channel, key, idem, metadata)
        self.posts += 1
        body = {"content": f"p{self.posts}", "metadata": metadata}
        answer = await self.request("POST", path, key, body, idem_key)
        if key in self.revoked:
            return self.expect(answer, 401, "unauthorized")
        if idem_key is not None and (key, idem_key) in self.stored:
            first_path, first = self.stored[(key, idem_key)]
            if first_path != path:
                return self.expect(answer, 422, "idempotency_key_reused")
            assert answer == first  # replayed: same status, same message, nothing new
            return None
        if channel == SCHEMA_CHANNEL and not isinstance(metadata.get("n"), int):
            self.expect(answer, 422, "metadata_validation_failed")
            issue = "required field missing" if "n" not in metadata else "expected type 'integer'"
            assert answer.body["violations"] == [{"field": "metadata.n", "issue": issue}]
            return None  # refused: nothing posted, nothing stored for a replay
        self.expect(answer, 201)
        message_id = answer.body["message"]["id"]
        assert message_id not in self.msgs
        self.msgs[message_id] = Msg(channel, self.now() + TTL * SECOND)
        cap = CHANNELS[channel][2]
        live = [m for m in self.msgs.values() if m.channel == channel and m.state == "live"]
        if cap is not None and len(live) > cap:
            live[0].state = "trimmed"  # to history, still indexed, no longer claimable
            live[0].holder = live[0].token = live[0].lease_end = None
        if idem_key is not None:
            self.stored[(key, idem_key)] = (path, answer)
        return None

    async def burst(self, channel: int, key: int, count: int) -> None:
        for _ in range(count):
            await self.post(channel, key, None)

    async def claim(self, index: int, key: int, lease: int) -> None:
        message_id = self.pick(index)
        if message_id is None:
            return
        msg = self.msgs[message_id]
        answer = await self.request(
            "POST", f"/v1/messages/{message_id}/claim-with-lease", key, {"lease_seconds": lease}
        )
        if self.refused_for_message(answer, key, msg, claim=True):
            return
        if msg.holder not in (None, key) or (msg.holder == key and key in msg.acks):
            return self.expect(answer, 409, "already_claimed")
        self.expect(answer, 200)
        token = answer.body["lease_token"]
        if msg.holder is None:
            assert token not in self.tokens
            self.tokens.append(token)
        else:
            assert token == msg.token  # the holder's lease is extended, not replaced
        msg.holder, msg.token, msg.lease_end = key, token, self.now() + lease * SECOND
        assert answer.body["expires_at"] == format_ts(msg.lease_end)
        return None

    async def heartbeat(self, index: int, key: int, lease: int) -> None:
        if not self.tokens:
            return
        token = self.tokens[index % len(self.tokens)]
        answer = await self.request(
            "POST", f"/v1/leases/{token}/heartbeat", key, {"lease_seconds": lease}
        )
        if key in self.revoked:
            return self.expect(answer, 401, "unauthorized")
        held = [m for m in self.msgs.values() if m.state == "live" and m.token == token]
        if not held:
            return self.expect(answer, 410, "lease_expired")
        [msg] = held
        if msg.holder != key:
            return self.expect(answer, 409, "lease_not_held")
        self.expect(answer, 200)
        msg.lease_end = self.now() + lease * SECOND
        assert answer.body == {"lease_token": token, "expires_at": format_ts(msg.lease_end)}
        return None

    async def release(self, index: int, key: int) -> None:
        message_id = self.pick(index)
        if message_id is None:
            return
        msg = self.msgs[message_id]
        answer = await self.request("POST", f"/v1/messages/{message_id}/release", key)
        if self.refused_for_message(answer, key, msg, claim=True):
            return
        if msg.holder is None:
            return self.expect(answer, 409, "not_claimed")
        if msg.holder != key:
            return self.expect(answer, 403, "forbidden")
        self.expect(answer, 200)
        msg.holder = msg.token = msg.lease_end = None
        return None

    async def ack(self, index: int, key: int) -> None:
        message_id = self.pick(index)
        if message_id is None:
            return
        msg = self.msgs[message_id]
        answer = await self.request("POST", f"/v1/messages/{message_id}/ack", key)
        if self.refused_for_message(answer, key, msg, claim=False):
            return
        self.expect(answer, 200)
        repeated = key in msg.acks
        assert answer.body["status"] == ("already_acknowledged" if repeated else "acknowledged")
        msg.acks.add(key)
        if msg.holder == key:
            msg.token = msg.lease_end = None  # an ack by the holder ends its lease
        return None

    def refused_for_message(self, answer: Answer, key: int, msg: Msg, *, claim: bool) -> bool:
        """The refusals every message command shares, in contract order."""
        if key in self.revoked:
            self.expect(answer, 401, "unauthorized")
        elif msg.state == "trimmed":
            self.expect(answer, 404, "message_not_found")
        elif msg.state == "history":
            self.expect(answer, 410, "message_expired")
        elif claim and CHANNELS[msg.channel][1] == "broadcast":
            self.expect(answer, 409, "channel_not_claimable")
        else:
            return False
        return True

    async def advance(self, seconds: int) -> None:
        await trio.sleep(seconds)
        await trio.testing.wait_all_tasks_blocked()  # actors apply what came due

    async def revoke(self, key: int) -> None:
        answer = await self.request("DELETE", "/v1/keys/me", key)
        if key in self.revoked:
            return self.expect(answer, 401, "unauthorized")
        self.expect(answer, 200)
        self.revoked.add(key)
        return None

    async def retry(self) -> None:
        if self.last_idempotent is not None:
            await self.post(*self.last_idempotent)

    # -- the check ----------------------------------------------------------------

    def check_indexes(self) -> None:
        hub = self.hub
        live = {i: m for i, m in self.msgs.items() if m.state == "live"}
        leases = {m.token: i for i, m in live.items() if m.lease_end is not None}
        assert hub.lease_index == leases
        known = set(self.msgs)  # live, expired or trimmed: all in history until purged
        assert set(hub.message_index) == known
        for message_id in known:
            channel = self.channel_ids[self.msgs[message_id].channel]
            assert hub.message_actor(message_id).channel_id == channel
        for index, channel_id in enumerate(self.channel_ids):
            state = hub.actors[channel_id].state
            assert list(state.live) == [i for i, m in live.items() if m.channel == index]
            for message_id, message in state.live.items():
                msg = live[message_id]
                holder = self.key_ids[msg.holder] if msg.holder is not None else None
                assert message.claimed_by_key_id == holder
                assert message.lease_token == msg.token
                assert message.lease_expires_at == msg.lease_end
                assert {a[1] for a in message.acks} == {LABELS[k] for k in msg.acks}

    async def run(self, program: list[tuple[Any, ...]]) -> None:
        await self.setup()
        for operation in program:
            await getattr(self, operation[0])(*operation[1:])
            self.settle_time()
            self.check_indexes()


def run_program(program: list[tuple[Any, ...]]) -> None:
    async def main() -> None:
        settings_ = test_settings(Path("unused"), sandbox_enabled=False)
        async with open_runtime(settings_, in_memory=True) as hub:
            app = create_app(hub)
            async with app.test_app() as test_app:
                await Run(hub, test_app.test_client()).run(program)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@settings(max_examples=40, deadline=None)
@given(st.lists(OPERATION, min_size=1, max_size=40))
def test_the_hub_and_its_indexes_follow_the_model(program: list[tuple[Any, ...]]) -> None:
    run_program(program)


def test_a_lease_lapses_between_two_heartbeats_and_its_token_leaves_the_index() -> None:
    """A fixed program, so the interesting path runs whatever Hypothesis draws."""
    run_program(
        [
            ("post", 0, 0, 0, {"n": 1}),
            ("retry",),
            ("post", 2, 1, 1, {"n": "one"}),  # refused by the schema: a retry runs it again
            ("retry",),
            ("post", 1, 1, None, {}),
            ("claim", 0, 1, 5),
            ("heartbeat", 0, 1, 30),
            ("advance", 25),
            ("heartbeat", 0, 2, 5),
            ("advance", 31),
            ("heartbeat", 0, 1, 5),
            ("claim", 0, 2, 30),
            ("ack", 0, 2),
            ("claim", 0, 2, 30),
            ("revoke", 2),
            ("post", 0, 2, 0, {}),
            ("post", 2, 0, 0, {"n": 2}),
            ("post", 2, 0, None, {}),
            ("claim", 1, 1, 600),
            ("burst", 1, 0, 3),  # the queue keeps 3: bob's leased message is dropped
            ("claim", 2, 1, 600),
            ("advance", 301),  # the rest expire, bob's lease still running
            ("claim", 0, 1, 5),
        ]
    )
