"""Claim-next that waits, dead letters, delayed messages: the runtime on virtual time.

Every test runs the real hub and channel actors (in-memory journal) on
``autojump_clock``; claim-next with ``wait`` goes through the HTTP layer's
own :func:`backchannel.http.delivery.claim_next` with a stand-in request
whose client can be made to leave.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio
import trio.testing

from backchannel.core.errors import ApiError
from backchannel.core.records import KeyRecord, Message
from backchannel.http.api import Call
from backchannel.http.delivery import claim_next
from backchannel.http.request import Disconnected
from backchannel.runtime.actor import ChannelActor, ClaimResult
from backchannel.runtime.hub import Hub
from tests.runtime.test_actor import SECOND, long_poll, open_channel, post, records, runtime


class Client:
    """A stand-in request: ``leave()`` is the client closing its connection."""

    def __init__(self, key: KeyRecord) -> None:
        self.auth = key
        self.request = SimpleNamespace(park=self.park)
        self._leave: Callable[[], None] | None = None

    async def park(
        self,
        fn: Callable[[float, Callable[[Callable[[], None] | None], None]], Awaitable[bool]],
        deadline: float,
    ) -> bool:
        def on_leave(callback: Callable[[], None] | None) -> None:
            self._leave = callback

        return await fn(deadline, on_leave)

    def leave(self) -> None:
        assert self._leave is not None
        self._leave()


async def wait_claim(
    hub: Hub,
    actor: ChannelActor,
    client: Client,
    wait: float,
    lease_us: int | None = None,
    acting: str | None = None,
) -> ClaimResult | None:
    return await claim_next(cast(Call, client), hub, actor, acting, lease_us, wait, True)


async def dead_letter_pair(
    hub: Hub, owner: KeyRecord, max_deliveries: int = 2
) -> tuple[ChannelActor, ChannelActor]:
    dlq = await open_channel(hub, owner, name="dlq")
    jobs = await open_channel(hub, owner, name="jobs")
    jobs.state.config.max_deliveries = max_deliveries
    jobs.state.config.dead_letter_channel = dlq.channel_id
    return jobs, dlq


# -- claim-next with wait ---------------------------------------------------------


async def test_each_post_goes_to_exactly_one_parked_claimer_oldest_first(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            actor = await open_channel(hub, owner)
            keys = [(await hub.mint_key(f"w{i}"))[1] for i in range(20)]
            got: dict[int, tuple[ClaimResult | None, float]] = {}
            start = trio.current_time()

            async def worker(index: int) -> None:
                result = await wait_claim(hub, actor, Client(keys[index]), 30)
                got[index] = (result, trio.current_time() - start)

            async with trio.open_nursery() as nursery:
                for index in range(20):
                    nursery.start_soon(worker, index)
                    await trio.testing.wait_all_tasks_blocked()
                assert hub.parked == 20
                assert actor.waiters == 20
                posted = []
                for i in range(10):
                    await trio.sleep(1)
                    posted.append(await post(actor, owner, f"job {i}"))
                    await trio.testing.wait_all_tasks_blocked()
            # the 10 oldest parked claimers got one message each, in order, at once
            for index in range(10):
                result, elapsed = got[index]
                assert result is not None
                assert result.message.id == posted[index].id
                assert result.message.deliveries == 1
                assert elapsed == index + 1
            for index in range(10, 20):
                assert got[index] == (None, 30)
            assert len(records(hub, "msg.claimed")) == 10
            assert hub.parked == 0
            assert actor.waiters == 0


async def test_a_claimer_leaving_in_the_same_step_as_the_post_loses_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            actor = await open_channel(hub, owner)
            first, second = Client(owner), Client((await hub.mint_key("w2"))[1])
            outcome: dict[str, Any] = {}

            async def run(name: str, client: Client) -> None:
                try:
                    outcome[name] = await wait_claim(hub, actor, client, 30)
                except Disconnected:
                    outcome[name] = "gone"

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, "first", first)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(run, "second", second)
                await trio.testing.wait_all_tasks_blocked()
                # one actor step, no await: the post, the hand-over to the first
                # claimer, and its client leaving before its task runs again
                message, _seq = actor.cmd_post(owner, "work", {}, None, None, None)
                actor.dispatch_claims()
                assert message.claimed_by_name == "owner"
                first.leave()
            assert outcome["first"] == "gone"
            # given back (uncounted), then handed to the next parked claimer
            assert outcome["second"] is not None
            assert outcome["second"].message.id == message.id
            assert message.claimed_by_name == "w2"
            assert message.deliveries == 1
            assert len(records(hub, "claim.returned")) == 1


async def test_a_claimer_leaving_before_the_post_is_skipped(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            actor = await open_channel(hub, owner)
            first = Client(owner)
            outcome: dict[str, Any] = {}

            async def run() -> None:
                try:
                    outcome["first"] = await wait_claim(hub, actor, first, 30)
                except Disconnected:
                    outcome["first"] = "gone"

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                await trio.testing.wait_all_tasks_blocked()
                first.leave()
                message = await post(actor, owner)
            assert outcome["first"] == "gone"
            assert message.claimed_by_id is None
            assert message.deliveries == 0
            assert records(hub, "msg.claimed") == []
            assert hub.parked == 0


async def test_a_lapsed_lease_goes_to_a_parked_claimer_on_time(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            actor = await open_channel(hub, owner)
            message = await post(actor, owner)
            start = trio.current_time()
            held = await wait_claim(hub, actor, Client(owner), 0, 10 * SECOND)
            assert held is not None
            assert held.lease_token is not None
            second = await wait_claim(hub, actor, Client((await hub.mint_key("b"))[1]), 30)
            assert second is not None
            assert trio.current_time() - start == 10
            assert second.message.id == message.id
            assert message.deliveries == 2
            assert message.lease_token is None


async def test_the_waiter_cap_answers_claim_next_at_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path, longpoll_max_waiters=1) as hub:
            _raw, owner = await hub.mint_key("owner")
            actor = await open_channel(hub, owner)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_claim, hub, actor, Client(owner), 30)
                await trio.testing.wait_all_tasks_blocked()
                assert hub.parked == 1
                start = trio.current_time()
                assert await wait_claim(hub, actor, Client(owner), 30) is None
                assert trio.current_time() == start
                await post(actor, owner)


# -- dead letters --------------------------------------------------------------------


async def test_a_lapsed_lease_at_max_deliveries_moves_the_message_to_the_dead_letters(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            jobs, dlq = await dead_letter_pair(hub, owner, 2)
            message = await post(jobs, owner, "flaky")
            for attempt in (1, 2):
                held = await wait_claim(hub, jobs, Client(owner), 0, 5 * SECOND)
                assert held is not None
                assert message.deliveries == attempt
                await trio.sleep(6)
            # the second lapse: gone from jobs, in its history, a copy in dlq
            assert message.id not in jobs.state.live
            assert jobs.state.archived[message.id].reason == "dead_lettered"
            [copy] = dlq.state.live.values()
            assert copy.content == "flaky"
            assert copy.deliveries == 0
            assert copy.metadata["dead_letter"] == {
                "source_channel_id": jobs.channel_id,
                "source_message_id": message.id,
                "deliveries": 2,
                "reason": "lease_expired",
            }
            assert hub.message_actor(copy.id) is dlq
            assert hub.lease_index == {}
            assert len(records(hub, "msg.dead_lettered")) == 1
            assert records(hub, "lease.expired") != []  # the first lapse only


async def test_a_release_at_max_deliveries_dead_letters_and_wakes_a_parked_dlq_claimer(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            jobs, dlq = await dead_letter_pair(hub, owner, 1)
            message = await post(jobs, owner)
            got: list[ClaimResult | None] = []

            async def inspector() -> None:
                got.append(await wait_claim(hub, dlq, Client(owner), 30))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(inspector)
                await trio.testing.wait_all_tasks_blocked()
                held = await wait_claim(hub, jobs, Client(owner), 0)
                assert held is not None
                start = trio.current_time()
                await jobs.call(jobs.cmd_release, owner, message.id, None)
            assert trio.current_time() == start
            [claimed] = got
            assert claimed is not None
            assert claimed.message.metadata["dead_letter"]["reason"] == "released"
            assert jobs.state.live == {}


async def test_an_ack_then_release_does_not_dead_letter(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            jobs, dlq = await dead_letter_pair(hub, owner, 1)
            message = await post(jobs, owner)
            assert await wait_claim(hub, jobs, Client(owner), 0) is not None
            await jobs.call(jobs.cmd_ack, owner, message.id, None)
            await jobs.call(jobs.cmd_release, owner, message.id, None)
            assert message.id in jobs.state.live
            assert dlq.state.live == {}


async def test_redrive_moves_dead_letters_back_with_deliveries_reset(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            jobs, dlq = await dead_letter_pair(hub, owner, 1)
            for index in range(3):
                message = await post(jobs, owner, f"m{index}")
                await wait_claim(hub, jobs, Client(owner), 0)
                await jobs.call(jobs.cmd_release, owner, message.id, None)
            assert len(dlq.state.live) == 3
            moved = await dlq.call(dlq.cmd_redrive, 2, None)
            assert moved == 2
            assert [m.content for m in jobs.state.iter_live()] == ["m0", "m1"]
            assert all(m.deliveries == 0 for m in jobs.state.iter_live())
            assert all("dead_letter" not in m.metadata for m in jobs.state.iter_live())
            assert [e.reason for e in dlq.state.history] == ["redriven", "redriven"]
            other = await open_channel(hub, owner, name="elsewhere")
            assert await dlq.call(dlq.cmd_redrive, 10, other.channel_id) == 1
            assert [m.content for m in other.state.iter_live()] == ["m2"]


async def test_a_deleted_dead_letter_channel_leaves_the_message_in_place(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            jobs, dlq = await dead_letter_pair(hub, owner, 1)
            message = await post(jobs, owner)
            await hub.delete_channel(owner, dlq.channel_id)
            await wait_claim(hub, jobs, Client(owner), 0)
            await jobs.call(jobs.cmd_release, owner, message.id, None)
            assert jobs.state.live[message.id].claimed_by_id is None


# -- delayed messages ----------------------------------------------------------------


async def test_a_delayed_message_becomes_visible_on_time_and_wakes_readers(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            actor = await open_channel(hub, owner)
            start = trio.current_time()
            posted_at = hub.clock.now()
            ((delayed, cursor),) = [
                await actor.call(
                    actor.cmd_post_later, 60 * SECOND, owner, "later", {}, None, None, None
                )
            ]
            assert cursor == 0
            assert delayed.seq == 0
            now_msg = await post(actor, owner, "now")
            assert [m.id for m in actor.state.iter_live()] == [now_msg.id]
            assert await wait_claim(hub, actor, Client(owner), 0) is not None  # takes "now"
            seen: list[tuple[float, list[Message]]] = []
            got: list[ClaimResult | None] = []

            async def reader() -> None:
                # a cursor already past "now": the delayed message still shows, once
                page = await long_poll(hub, actor, now_msg.seq, 10, 120)
                seen.append((trio.current_time() - start, page))

            async def claimer() -> None:
                got.append(await wait_claim(hub, actor, Client(owner), 120))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                nursery.start_soon(claimer)
            [(elapsed, page)] = seen
            assert elapsed == 60
            assert [m.id for m in page] == [delayed.id]
            assert delayed.seq == now_msg.seq + 1
            assert delayed.visible_at == posted_at + 60 * SECOND
            assert delayed.expires_at == delayed.visible_at + 86_400 * SECOND
            [claimed] = got
            assert claimed is not None
            assert claimed.message.id == delayed.id


async def test_a_delayed_message_cannot_be_claimed_by_id_before_it_is_visible(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            actor = await open_channel(hub, owner)
            delayed, _ = await actor.call(
                actor.cmd_post_later, 5 * SECOND, owner, "later", {}, None, None, None
            )
            with pytest.raises(ApiError) as refused:
                await actor.call(actor.cmd_claim, owner, delayed.id, None, None)
            assert refused.value.code == "message_not_found"
            assert await wait_claim(hub, actor, Client(owner), 0) is None


async def test_a_delayed_message_expires_a_ttl_after_it_became_visible(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(100_000):  # the TTL is a day of virtual time
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            actor = await open_channel(hub, owner)
            ttl = actor.state.config.ttl_seconds
            start = trio.current_time()
            delayed, _ = await actor.call(
                actor.cmd_post_later, 100 * SECOND, owner, "later", {}, None, None, None
            )
            await trio.sleep_until(start + 100 + ttl - 0.001)
            assert delayed.id in actor.state.live
            await trio.sleep_until(start + 100 + ttl + 0.001)
            assert delayed.id not in actor.state.live
            entry = actor.state.archived[delayed.id]
            assert entry.reason == "expired"
            assert delayed.visible_at is not None
            assert entry.archived_at == delayed.visible_at + ttl * SECOND
