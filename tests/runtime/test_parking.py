"""Parking's own deadlines (one heap and one timer task per channel), on virtual time.

Each test parks real tasks under ``autojump_clock`` and asserts the exact
virtual time each one was answered at and what it was answered with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from backchannel.runtime.parking import Parking


def parking_in(nursery: trio.Nursery) -> Parking:
    return Parking(lambda fn: nursery.start_soon(fn))


async def park_and_note(
    parking: Parking, deadline: float, seen: list[tuple[str, float, bool]], name: str
) -> None:
    woken = await parking.park(deadline)
    seen.append((name, trio.current_time(), woken))


async def test_each_waiter_is_answered_at_its_own_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, float, bool]] = []
    start = trio.current_time()
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            parking = parking_in(nursery)
            for name, after in (("late", 30), ("never", math.inf), ("soon", 5), ("same", 30)):
                nursery.start_soon(park_and_note, parking, start + after, seen, name)
                await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(40)
            assert len(parking) == 1  # only the one without a deadline
            parking.notify()
    # trio may run tasks woken in one step in either order: sort equal times by name
    assert sorted((at - start, name, woken) for name, at, woken in seen) == [
        (5, "soon", True),
        (30, "late", True),
        (30, "same", True),
        (40, "never", True),
    ]


async def test_an_earlier_deadline_parked_later_rearms_the_timer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, float, bool]] = []
    start = trio.current_time()
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            parking = parking_in(nursery)
            nursery.start_soon(park_and_note, parking, start + 60, seen, "first")
            await trio.sleep(1)
            nursery.start_soon(park_and_note, parking, start + 2, seen, "second")
    assert [(name, at - start) for name, at, _ in seen] == [("second", 2), ("first", 60)]


async def test_a_deadline_already_past_answers_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    parking = Parking(lambda fn: None)  # no timer may be needed
    start = trio.current_time()
    assert await parking.park(start - 1) is True
    assert await parking.park(start) is True
    assert trio.current_time() == start
    assert len(parking) == 0


@pytest.mark.parametrize("waiters", [1, 600])  # 600: woken by the slice-wise helper
async def test_woken_waiters_do_not_keep_the_timer_running(
    autojump_clock: trio.testing.MockClock, waiters: int
) -> None:
    """Woken long before their deadline, nobody is left: the timer task ends then."""
    seen: list[tuple[str, float, bool]] = []
    start = trio.current_time()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            parking = parking_in(nursery)
            for n in range(waiters):
                nursery.start_soon(park_and_note, parking, start + 3600, seen, str(n))
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(1)
            parking.notify()
    assert len(seen) == waiters
    assert {(at - start, woken) for _, at, woken in seen} == {(1, True)}
    assert trio.current_time() - start == 1  # the nursery did not wait for the hour


async def test_woken_and_cancelled_waiters_leave_the_heap_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            parking = parking_in(nursery)
            nursery.start_soon(park_and_note, parking, start + 3600, [], "stays")
            for _ in range(50):  # waiters come and go while one stays parked
                async with trio.open_nursery() as batch:
                    for _ in range(20):
                        batch.start_soon(parking.park, start + 3600)
                    await trio.testing.wait_all_tasks_blocked()
                    if _ % 2:
                        batch.cancel_scope.cancel()
                    else:
                        parking._unpark(20)
                parking._unpark(0)
            assert len(parking) == 1
            assert len(parking._deadlines) <= 2 * len(parking) + 64 + 20
            nursery.cancel_scope.cancel()


async def test_leave_and_cancellation_still_end_a_park_with_a_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leave: list[Callable[[], None]] = []

    def on_leave(callback: Callable[[], None] | None) -> None:
        leave[:] = [callback] if callback is not None else []

    results: list[Any] = []
    start = trio.current_time()
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            parking = parking_in(nursery)

            async def watched() -> None:
                results.append(await parking.park(start + 30, on_leave))

            nursery.start_soon(watched)
            await trio.sleep(1)
            leave[0]()
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(2):
                await parking.park(start + 30)
            results.append(trio.current_time() - start)
            assert len(parking) == 0
    assert results == [False, 3]
