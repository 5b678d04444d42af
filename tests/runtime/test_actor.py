"""The channel actor on virtual time: deadlines, long-poll waiters, claim races.

Every test runs the real runtime (hub, channel actors, in-memory journal)
under ``autojump_clock`` (``MockClock(autojump_threshold=0)``), so a 24 h
TTL takes milliseconds and virtual elapsed time is asserted to the
microsecond. Each test body runs under ``trio.fail_after`` on that clock, so
a task blocked forever fails the test instead of hanging it. Long-polls go
through :func:`long_poll`, which runs ``read_or_wait`` of ``http/messages.py``,
the loop of ``GET .../messages?wait=``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from backchannel.core.errors import ApiError
from backchannel.core.records import KeyRecord, Message
from backchannel.http.hypercorn_tuning import OnLeave
from backchannel.http.messages import read_or_wait
from backchannel.runtime.actor import ActorStatistics, ChannelActor, ClaimResult
from backchannel.runtime.clock import WallClock
from backchannel.runtime.hub import Hub, HubStatistics
from backchannel.runtime.journal import MemoryJournal
from backchannel.runtime.service import open_runtime
from tests.conftest import test_settings

SECOND = 1_000_000
DAY = 86_400


@asynccontextmanager
async def runtime(tmp_path: Path, **changes: Any) -> AsyncIterator[Hub]:
    settings = test_settings(tmp_path, sandbox_enabled=False, **changes)
    async with open_runtime(settings, in_memory=True) as hub:
        yield hub


async def open_channel(
    hub: Hub, key: KeyRecord, mode: str = "claimable", name: str = "jobs"
) -> ChannelActor:
    spec = hub.channel_defaults("open")
    spec.update(name=name, mode=mode)
    state = await hub.create_channel(key, spec, [])
    return hub.actors[state.config.id]


async def post(actor: ChannelActor, key: KeyRecord, content: str = "work") -> Message:
    message: Message = await actor.call(actor.cmd_post, key, content, {}, None, None, None)
    return message


async def claim(
    actor: ChannelActor, key: KeyRecord, message: Message, lease_us: int | None = None
) -> ClaimResult:
    result: ClaimResult = await actor.call(actor.cmd_claim, key, message.id, None, lease_us)
    return result


def records(hub: Hub, kind: str, message_id: str | None = None) -> list[list[Any]]:
    """Journal records of ``kind`` (for one message if given)."""
    journal = hub.journal
    assert isinstance(journal, MemoryJournal)
    return [
        body
        for _seq, body in journal.records
        if body[0] == kind and (message_id is None or body[2] == message_id)
    ]


def parked_in_lot(actor: ChannelActor) -> int:
    return actor.parked


async def long_poll(
    hub: Hub, actor: ChannelActor, after: int, limit: int, wait: float
) -> list[Message]:
    """``GET /v1/channels/{c}/messages?wait=``: its own loop, with no client to watch."""

    async def park(fn: Callable[[float, OnLeave], Awaitable[bool]], deadline: float) -> bool:
        return await fn(deadline, lambda _callback: None)

    deadline = trio.current_time() + wait
    page, _version, _after = await read_or_wait(
        hub, actor, after, None, limit, None, None, deadline, park
    )
    return page


# -- leases ---------------------------------------------------------------------


async def test_a_lease_lapses_at_its_exact_deadline(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            _raw, worker = await hub.mint_key("worker")
            actor = await open_channel(hub, owner)
            message = await post(actor, owner)
            started = trio.current_time()
            claimed_at = hub.clock.now()
            result = await claim(actor, worker, message, 30 * SECOND)
            assert result.status == "claimed"
            deadline = claimed_at + 30 * SECOND
            assert result.lease_expires_at == deadline
            token = result.lease_token
            assert token is not None
            assert hub.lease_index == {token: message.id}
            returned: list[tuple[float, int, list[str]]] = []

            async def watch_unclaimed() -> None:
                # the mechanism of a reader: read, then wait for the change event
                while True:
                    page, version = await actor.call(actor.cmd_page, 0, 10, "unclaimed", None)
                    if page:
                        returned.append(
                            (trio.current_time(), hub.clock.now(), [m.id for m in page])
                        )
                        return
                    if actor.state.version == version:
                        await actor.park()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_unclaimed)
                await trio.sleep_until(started + 30 - 0.000_001)
                read = actor.read_page(0, 10, "claimed", None)
                assert read is not None
                assert [(m.id, m.claimed_by_name) for m in read[0]] == [(message.id, "worker")]
                assert returned == []
            (woke, wall, ids) = returned[0]
            assert ids == [message.id]
            assert wall == deadline
            assert woke - started == pytest.approx(30, abs=1e-6)
            assert message.claimed_by_id is None
            assert hub.lease_index == {}
            assert len(records(hub, "lease.expired", message.id)) == 1
            with pytest.raises(ApiError) as gone:
                await actor.call(actor.cmd_heartbeat, worker, token, message.id, 30 * SECOND)
            assert (gone.value.status, gone.value.code) == (410, "lease_expired")
            assert (await claim(actor, owner, message)).status == "claimed"


async def test_a_heartbeat_moves_the_lapse_to_the_new_deadline(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("worker")
            actor = await open_channel(hub, key)
            message = await post(actor, key)
            started = trio.current_time()
            result = await claim(actor, key, message, 30 * SECOND)
            await trio.sleep(20)
            expires = await actor.call(
                actor.cmd_heartbeat, key, result.lease_token, message.id, 30 * SECOND
            )
            assert expires == hub.clock.now() + 30 * SECOND
            await trio.sleep_until(started + 50 - 0.000_001)
            assert message.claimed_by_name == "worker"
            await trio.sleep_until(started + 50)
            await trio.testing.wait_all_tasks_blocked()
            assert message.claimed_by_id is None
            assert len(records(hub, "lease.expired")) == 1


async def test_an_ack_by_the_holder_ends_its_lease_in_the_runtime(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, worker = await hub.mint_key("worker")
            actor = await open_channel(hub, worker)
            first = await post(actor, worker, "first")
            second = await post(actor, worker, "second")
            started = trio.current_time()
            one = await claim(actor, worker, first, 30 * SECOND)
            # the worker acked ``second`` before it claimed it
            status, _message = await actor.call(actor.cmd_ack, worker, second.id, None)
            assert status == "acknowledged"
            two = await claim(actor, worker, second, 30 * SECOND)
            assert len(hub.lease_index) == 2

            status, _message = await actor.call(actor.cmd_ack, worker, first.id, None)
            assert status == "acknowledged"
            status, _message = await actor.call(actor.cmd_ack, worker, second.id, None)
            assert status == "already_acknowledged"
            assert hub.lease_index == {}
            assert hub.statistics().open_leases == 0
            for result, message in ((one, first), (two, second)):
                with pytest.raises(ApiError) as ended:
                    await actor.call(
                        actor.cmd_heartbeat, worker, result.lease_token, message.id, SECOND
                    )
                assert ended.value.code == "lease_expired"

            await trio.sleep_until(started + 60)
            await trio.testing.wait_all_tasks_blocked()
            assert [m.claimed_by_name for m in (first, second)] == ["worker", "worker"]
            assert records(hub, "lease.expired") == []


async def test_heartbeats_naming_the_same_deadline_lapse_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Claim for 300 s; heartbeat at 100 s for 300 s and at 200 s for 200 s: one lapse at 400 s."""
    with trio.fail_after(600):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("worker")
            actor = await open_channel(hub, key)
            message = await post(actor, key)
            started = trio.current_time()
            result = await claim(actor, key, message, 300 * SECOND)
            for at, lease in ((100, 300), (200, 200)):
                await trio.sleep_until(started + at)
                await actor.call(
                    actor.cmd_heartbeat, key, result.lease_token, message.id, lease * SECOND
                )
            await trio.sleep_until(started + 400)
            await trio.testing.wait_all_tasks_blocked()
            assert message.claimed_by_id is None
            page, _version = await actor.call(actor.cmd_page, 0, 10, "unclaimed", None)
            assert [m.id for m in page] == [message.id]
            assert len(records(hub, "lease.expired", message.id)) == 1


async def test_the_wall_clock_reads_a_deadline_at_its_own_trio_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``now()`` at ``trio_time(d)`` must not read ``d - 1``: the actor arms its sleep that way."""
    with trio.fail_after(600):
        start = 1_800_000_000 * SECOND
        clock = WallClock(start)
        early: list[int] = []
        for offset in (64_000_002, 64_056_232, 130_693_460, 131_225_971):
            await trio.sleep_until(clock.trio_time(start + offset))
            if clock.now() < start + offset:
                early.append(offset)
        assert early == []


async def test_a_lease_deadline_that_does_not_round_trip_through_float_still_lapses(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Claim 4.000002 s after start for 60 s: the deadline's trio time reads 1 µs early.

    If the actor wakes at that trio time, finds nothing due and re-arms the
    same (already passed) deadline, it spins without ever blocking and
    virtual time never advances. The test looks after a bounded number of
    scheduling steps, then nudges the clock so the runtime can shut down.
    """
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("worker")
            actor = await open_channel(hub, key)
            message = await post(actor, key)
            await trio.sleep(4.000_002)
            result = await claim(actor, key, message, 60 * SECOND)
            assert result.lease_expires_at is not None
            deadline = result.lease_expires_at
            await trio.sleep_until(hub.clock.trio_time(deadline))
            for _ in range(50):
                await trio.lowlevel.checkpoint()
            now_at_deadline = hub.clock.now()
            holder_at_deadline = message.claimed_by_id
            autojump_clock.jump(0.001)  # unstick a spinning actor before asserting
            await trio.testing.wait_all_tasks_blocked()
            assert message.claimed_by_id is None  # lapsed once the clock moved on
            assert holder_at_deadline is None, "still held at the lease deadline"
            assert now_at_deadline >= deadline


async def test_a_rival_claim_wins_at_exactly_the_lease_deadline_and_not_a_microsecond_before(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, worker = await hub.mint_key("worker")
            _raw, rival = await hub.mint_key("rival")
            actor = await open_channel(hub, worker)
            message = await post(actor, worker)
            result = await claim(actor, worker, message, 30 * SECOND)
            assert result.lease_expires_at is not None
            deadline = result.lease_expires_at

            await trio.sleep_until(hub.clock.trio_time(deadline - 1))
            assert hub.clock.now() == deadline - 1
            with pytest.raises(ApiError) as early:
                await claim(actor, rival, message, 30 * SECOND)
            assert (early.value.status, early.value.code) == (409, "already_claimed")
            await trio.sleep_until(hub.clock.trio_time(deadline))
            assert hub.clock.now() == deadline
            # at the deadline the holder can no longer renew, and the rival wins
            with pytest.raises(ApiError) as late:
                await actor.call(
                    actor.cmd_heartbeat, worker, result.lease_token, message.id, 30 * SECOND
                )
            assert late.value.code == "lease_expired"
            won = await claim(actor, rival, message, 30 * SECOND)
            assert won.status == "claimed"
            assert won.lease_token != result.lease_token
            assert message.claimed_by_key_id == rival.key_id
            assert hub.lease_index == {won.lease_token: message.id}


# -- TTL and history ------------------------------------------------------------


async def test_a_24_hour_ttl_moves_the_message_to_history_at_exactly_24_hours(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(9 * DAY):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("producer")
            actor = await open_channel(hub, key, mode="broadcast")
            started = trio.current_time()
            message = await post(actor, key)
            assert message.expires_at == message.created_at + DAY * SECOND

            await trio.sleep_until(started + DAY - 0.000_001)
            read = actor.read_page(0, 10, None, None)
            assert read is not None
            assert [m.id for m in read[0]] == [message.id]
            assert await actor.call(actor.cmd_history, None, None, 10) == []

            await trio.sleep_until(started + DAY)
            await trio.testing.wait_all_tasks_blocked()
            page, _version = await actor.call(actor.cmd_page, 0, 10, None, None)
            assert page == []
            history = await actor.call(actor.cmd_history, None, None, 10)
            assert [(e.message.id, e.reason, e.archived_at) for e in history] == [
                (message.id, "expired", message.expires_at)
            ]
            assert hub.message_actor(message.id) is actor  # still found, to answer 410
            with pytest.raises(ApiError) as expired:
                await actor.call(actor.cmd_ack, key, message.id, None)
            assert (expired.value.status, expired.value.code) == (410, "message_expired")

            # the archive is purged after retention_days (7 by default), on the dot
            await trio.sleep_until(started + 8 * DAY - 0.000_001)
            assert len(await actor.call(actor.cmd_history, None, None, 10)) == 1
            await trio.sleep_until(started + 8 * DAY)
            await trio.testing.wait_all_tasks_blocked()
            assert await actor.call(actor.cmd_history, None, None, 10) == []
            with pytest.raises(ApiError) as gone:
                hub.message_actor(message.id)
            assert gone.value.code == "message_not_found"
            assert len(records(hub, "msg.expired")) == 1
            assert len(records(hub, "history.purged")) == 1


# -- long-poll waiters ------------------------------------------------------------


async def test_a_long_poll_wakes_at_the_instant_of_the_append(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("reader")
            actor = await open_channel(hub, key, mode="broadcast")
            first = await post(actor, key, "old")
            started = trio.current_time()
            polled: list[tuple[float, list[str]]] = []
            evented: list[float] = []

            async def poll() -> None:
                page = await long_poll(hub, actor, first.seq, 10, 30)
                polled.append((trio.current_time(), [m.content for m in page]))

            async def wait_for_change() -> None:
                page, version = await actor.call(actor.cmd_page, first.seq, 10, None, None)
                assert page == []
                assert actor.state.version == version
                await actor.park()  # a bare parked reader, outside the hub's counters
                evented.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                nursery.start_soon(wait_for_change)
                await trio.testing.wait_all_tasks_blocked()
                assert (hub.parked, actor.waiters, parked_in_lot(actor)) == (1, 1, 2)
                await trio.sleep(5)
                await post(actor, key, "new")
            assert polled == [(started + 5, ["new"])]
            assert evented == [started + 5]
            assert (hub.parked, actor.waiters, parked_in_lot(actor)) == (0, 0, 0)


async def test_a_long_poll_with_nothing_new_answers_empty_after_exactly_its_wait(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("reader")
            actor = await open_channel(hub, key, mode="broadcast")
            other = await open_channel(hub, key, mode="broadcast", name="other")
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post_later, other, key, 3.0)
                assert await long_poll(hub, actor, 0, 10, 30) == []
            assert trio.current_time() - started == pytest.approx(30, abs=1e-6)
            assert (hub.parked, actor.waiters, parked_in_lot(actor)) == (0, 0, 0)


async def post_later(actor: ChannelActor, key: KeyRecord, delay: float) -> None:
    await trio.sleep(delay)
    await post(actor, key)


async def test_cancelling_a_parked_waiter_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("reader")
            actor = await open_channel(hub, key, mode="broadcast")
            answers: list[list[str]] = []

            async def poll(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    task_status.started(scope)
                    page = await long_poll(hub, actor, 0, 10, 30)
                    answers.append([m.content for m in page])

            async with trio.open_nursery() as nursery:
                staying = await nursery.start(poll)
                leaving = await nursery.start(poll)
                await trio.testing.wait_all_tasks_blocked()
                assert (hub.parked, actor.waiters, parked_in_lot(actor)) == (2, 2, 2)
                assert hub.statistics().parked_waiters == 2
                assert actor.statistics().waiters == 2

                leaving.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert (hub.parked, actor.waiters, parked_in_lot(actor)) == (1, 1, 1)
                assert leaving.cancelled_caught

                await trio.sleep(1)
                await post(actor, key, "hello")
            assert answers == [["hello"]]
            assert staying.cancelled_caught is False
            assert (hub.parked, actor.waiters, parked_in_lot(actor)) == (0, 0, 0)
            assert hub.statistics().parked_waiters == 0


async def test_one_post_wakes_every_one_of_twelve_hundred_waiters(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """More waiters than one wake slice (500): every one answers with the new message."""
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("reader")
            actor = await open_channel(hub, key, mode="broadcast")
            answers: list[tuple[float, list[str]]] = []

            async def poll() -> None:
                page = await long_poll(hub, actor, 0, 10, 30)
                answers.append((trio.current_time(), [m.content for m in page]))

            async with trio.open_nursery() as nursery:
                for _ in range(1_200):
                    nursery.start_soon(poll)
                await trio.testing.wait_all_tasks_blocked()
                assert (hub.parked, parked_in_lot(actor)) == (1_200, 1_200)
                await trio.sleep(2)
                posted_at = trio.current_time()
                await post(actor, key, "news")
            assert answers == [(posted_at, ["news"])] * 1_200
            assert (hub.parked, actor.waiters, parked_in_lot(actor)) == (0, 0, 0)


async def test_shutdown_answers_parked_waiters_at_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        answers: list[tuple[float, list[Message]]] = []
        async with trio.open_nursery() as nursery:
            async with runtime(tmp_path) as hub:
                _raw, key = await hub.mint_key("reader")
                actor = await open_channel(hub, key, mode="broadcast")

                async def poll() -> None:
                    page = await long_poll(hub, actor, 0, 10, 30)
                    answers.append((trio.current_time(), page))

                for _ in range(3):
                    nursery.start_soon(poll)
                await trio.testing.wait_all_tasks_blocked()
                assert hub.parked == 3
                closing_at = trio.current_time()
        assert answers == [(closing_at, [])] * 3
        assert (hub.parked, actor.waiters, parked_in_lot(actor)) == (0, 0, 0)


# -- claim races --------------------------------------------------------------------


@pytest.mark.parametrize("lease_us", [None, 30 * SECOND])
async def test_two_hundred_concurrent_claimers_make_exactly_one_winner(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, lease_us: int | None
) -> None:
    with trio.fail_after(300):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            actor = await open_channel(hub, owner)
            message = await post(actor, owner)
            keys = [(await hub.mint_key(f"claimer-{n}"))[1] for n in range(200)]
            go = trio.Event()
            won: list[tuple[KeyRecord, ClaimResult]] = []
            lost: list[ApiError] = []

            async def claimer(key: KeyRecord) -> None:
                await go.wait()
                try:
                    won.append((key, await claim(actor, key, message, lease_us)))
                except ApiError as exc:
                    lost.append(exc)

            async with trio.open_nursery() as nursery:
                for key in keys:
                    nursery.start_soon(claimer, key)
                await trio.testing.wait_all_tasks_blocked()
                assert won == []
                assert lost == []
                go.set()  # all 200 are parked: release them in one step

            assert len(won) == 1
            winner, result = won[0]
            assert result.status == "claimed"
            assert [(e.status, e.code) for e in lost] == [(409, "already_claimed")] * 199
            assert message.claimed_by_key_id == winner.key_id
            assert message.claimed_by_name == winner.label
            assert len(records(hub, "msg.claimed", message.id)) == 1
            assert records(hub, "actor.created") == []
            assert actor.statistics().inbox_depth == 0
            if lease_us is not None:
                assert result.lease_token is not None
                assert hub.lease_index == {result.lease_token: message.id}


async def test_a_claim_whose_caller_is_cancelled_as_it_is_delivered_applies_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("worker")
            _raw, rival = await hub.mint_key("rival")
            actor = await open_channel(hub, key)
            message = await post(actor, key)
            scope = trio.CancelScope()

            def claim_and_cancel_caller(*args: Any) -> tuple[ClaimResult, int]:
                # runs inside the actor: the command is delivered and its
                # caller cancelled in one and the same step
                scope.cancel()
                return actor.cmd_claim(*args)

            with scope:
                await actor.call(claim_and_cancel_caller, key, message.id, None, None)
            assert scope.cancelled_caught
            await trio.testing.wait_all_tasks_blocked()
            assert message.claimed_by_key_id == key.key_id
            assert len(records(hub, "msg.claimed", message.id)) == 1
            assert (await claim(actor, key, message)).status == "already_claimed"
            with pytest.raises(ApiError) as taken:
                await claim(actor, rival, message)
            assert taken.value.code == "already_claimed"
            assert len(records(hub, "msg.claimed", message.id)) == 1


async def test_a_claim_cancelled_at_any_step_applies_at_most_once_and_consistently(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Cancel the caller after 0..7 scheduling steps: before, during or after delivery."""
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("worker")
            actor = await open_channel(hub, key)
            outcomes: set[tuple[bool, bool]] = set()
            for steps in [*range(8)] * 3:
                message = await post(actor, key)
                scope = trio.CancelScope()
                answered: list[ClaimResult] = []

                async def caller(
                    message: Message = message,
                    scope: trio.CancelScope = scope,
                    answered: list[ClaimResult] = answered,
                ) -> None:
                    with scope:
                        answered.append(await claim(actor, key, message))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(caller)
                    for _ in range(steps):
                        await trio.lowlevel.checkpoint()
                    scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                applied = message.claimed_by_id is not None
                assert len(records(hub, "msg.claimed", message.id)) == int(applied)
                if not scope.cancelled_caught:
                    assert [r.status for r in answered] == ["claimed"]
                assert applied or not answered
                outcomes.add((scope.cancelled_caught, applied))
                expected = "already_claimed" if applied else "claimed"
                assert (await claim(actor, key, message)).status == expected
            # the race was really run: some callers were cancelled after delivery
            assert (True, True) in outcomes
            assert actor.statistics().inbox_depth == 0


# -- statistics ---------------------------------------------------------------------


async def test_hub_statistics_once_every_task_has_ended(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with trio.fail_after(600):
        async with runtime(tmp_path) as hub:
            _raw, owner = await hub.mint_key("owner")
            _raw, worker = await hub.mint_key("worker")
            jobs = await open_channel(hub, owner)
            news = await open_channel(hub, owner, mode="broadcast", name="news")
            messages = [await post(jobs, owner, f"job {n}") for n in range(4)]
            leased = await claim(jobs, worker, messages[0], 60 * SECOND)
            await claim(jobs, worker, messages[1])
            await jobs.call(jobs.cmd_claim, worker, messages[2].id, "helper", None)  # new actor
            await jobs.call(jobs.cmd_retract, owner, messages[3].id)

            async def poll(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    task_status.started(scope)
                    await long_poll(hub, news, 0, 10, 30)

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    scope = await nursery.start(poll)
                await trio.testing.wait_all_tasks_blocked()
                assert hub.statistics().parked_waiters == 3
                scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert hub.statistics().parked_waiters == 2
                # the other two time out after their wait

            await trio.testing.wait_all_tasks_blocked()
            assert hub.statistics() == HubStatistics(
                channels=2,
                keys=2,
                actors=3,
                live_messages=3,
                parked_waiters=0,
                indexed_messages=4,  # three live plus the retracted one (answers 404 later)
                open_leases=1,
                active_actors=2,  # both were used within the idle window
                passive_channels=0,
            )
            assert jobs.statistics() == ActorStatistics(jobs.channel_id, 0, 3, 1, 1, 0)
            assert news.statistics() == ActorStatistics(news.channel_id, 0, 0, 0, 0, 0)
            assert hub.lease_index == {leased.lease_token: messages[0].id}

            await trio.sleep(60)
            await trio.testing.wait_all_tasks_blocked()
            assert hub.statistics().open_leases == 0
            assert jobs.statistics() == ActorStatistics(jobs.channel_id, 0, 3, 1, 0, 0)
            assert parked_in_lot(news) == 0


async def test_a_waiter_told_to_leave_ends_its_park_with_false(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """``leave()`` before the sleep ends the park at once; during it, at that instant;
    a later wake-up or a second ``leave()`` changes nothing."""
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("reader")
            actor = await open_channel(hub, key, mode="broadcast")
            hooks: list[Callable[[], None] | None] = []

            def left_already(leave: Callable[[], None] | None) -> None:
                hooks.append(leave)
                if leave is not None:
                    leave()

            assert await actor.park(trio.current_time() + 30, left_already) is False
            assert hooks[-1] is None
            assert actor.parked == 0

            def remember(leave: Callable[[], None] | None) -> None:
                hooks.append(leave)

            results: list[tuple[float, bool]] = []

            async def waiter() -> None:
                woken = await actor.park(trio.current_time() + 30, remember)
                results.append((trio.current_time(), woken))

            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                assert actor.parked == 1
                leave = hooks[-1]
                assert leave is not None
                await trio.sleep(2)
                leave()
                leave()
            await post(actor, key, "after")
            assert results == [(started + 2, False)]
            assert hooks[-1] is None
            assert actor.parked == 0


async def test_an_ack_wakes_a_parked_waiter_and_a_long_poll_parks_again(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """MCP ``await_result`` parks until an ack; a page long-poll sleeps through it."""
    with trio.fail_after(120):
        async with runtime(tmp_path) as hub:
            _raw, key = await hub.mint_key("boss")
            actor = await open_channel(hub, key)
            task = await post(actor, key, "task")
            started = trio.current_time()
            woken: list[float] = []
            polled: list[tuple[float, list[str]]] = []

            async def wait_for_ack() -> None:
                await actor.park(trio.current_time() + 60)
                woken.append(trio.current_time())

            async def poll() -> None:
                page = await long_poll(hub, actor, task.seq, 10, 30)
                polled.append((trio.current_time(), [m.content for m in page]))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_for_ack)
                nursery.start_soon(poll)
                await trio.testing.wait_all_tasks_blocked()
                await trio.sleep(2)
                await actor.call(actor.cmd_ack, key, task.id, None)
            assert woken == [started + 2]
            assert [page for _, page in polled] == [[]]  # slept through the ack
            assert polled[0][0] - started == pytest.approx(30, abs=1e-6)
            assert task.acks
            assert (hub.parked, actor.waiters, parked_in_lot(actor)) == (0, 0, 0)
