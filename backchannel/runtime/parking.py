"""Long-poll parking: the tasks waiting on one channel, and how they are woken.

A :class:`Parking` belongs to one channel actor. A reader that found its
page empty parks here (:meth:`Parking.park`), with no ``await`` between
that read and the park, so no wake-up is lost (design.md, style.md §8); the
actor calls :meth:`Parking.notify` right after it applies a change that may
matter to them. Parking is an entry in a FIFO dict and a plain reschedule
to wake: no extra task, no exception on the common path.

A fan-out to more than :data:`WAKE_SLICE` waiters is woken a slice at a
time by a helper task, so the writer's own answer is not stuck behind the
whole fan-out.

Deadlines (a long-poll's ``wait``) are one heap per channel and one timer
task that sleeps until the earliest, not a cancel scope per waiter: trio's
scope costs its waiter ~10 µs to enter and leave, a tenth of what answering
a woken long-poll costs in all. A waiter woken early leaves its heap entry
behind; entries are dropped when due, when nobody is parked any more (the
timer task then ends), or when they outnumber the parked tasks twice over.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from itertools import count, islice
from typing import Any

import outcome
import trio
import trio.lowlevel

WAKE_SLICE = 500  # waiters woken per step of a fan-out
SLICE_SWEEPS = 8  # run-queue sweeps a slice gets to answer before the next one wakes
_GONE = object()
_ORDER = count()  # ties between equal deadlines: first parked, first due

OnLeave = Callable[[Callable[[], None] | None], None]


class _Parked:
    """One parked task: woken at most once, with True (woken) or False (leave)."""

    __slots__ = ("key_id", "result", "sleeping", "task")

    def __init__(self, task: trio.lowlevel.Task, key_id: str | None) -> None:
        self.task = task
        self.key_id = key_id  # whose wait it is, so a revoked key's waits can be found
        self.sleeping = False
        self.result: bool | None = None


class Parking:
    """The parked tasks of one channel, oldest first.

    ``spawn(fn)`` starts a background task (the slice-wise fan-out).
    """

    __slots__ = ("_deadlines", "_parked", "_spawn", "_timer", "_wake_pending", "_waking")

    def __init__(self, spawn: Callable[[Callable[[], Any]], None]) -> None:
        self._spawn = spawn
        self._parked: dict[_Parked, None] = {}  # FIFO: oldest waiter first
        self._deadlines: list[tuple[float, int, _Parked]] = []  # a heap; may hold gone entries
        self._timer: trio.CancelScope | None = None  # the timer task's sleep, while it runs
        self._wake_pending = False
        self._waking = False

    def __len__(self) -> int:
        """Tasks parked right now (long-polls and any other waiters)."""
        return len(self._parked)

    @property
    def waking(self) -> bool:
        """True while a slice-wise fan-out is still running."""
        return self._waking

    async def park(
        self,
        deadline: float = math.inf,
        on_leave: OnLeave | None = None,
        key_id: str | None = None,
    ) -> bool:
        """Wait for the next :meth:`notify`, ``deadline`` or a request to leave.

        Returns True once woken or at ``deadline``, False once the waiter has
        been told to leave. ``on_leave`` (a long-poll's client watch) is
        given a ``leave()`` function before the task sleeps, and None after
        it wakes; calling ``leave()`` ends the park with False, at once even
        if it is called before the sleep begins. ``key_id`` names the key
        the wait is for: :meth:`wake_key` wakes it when that key is revoked.

        Cancellation-safe: a cancelled waiter leaves the dict at once.
        """
        entry = _Parked(trio.lowlevel.current_task(), key_id)
        self._parked[entry] = None
        try:
            if on_leave is not None:
                on_leave(lambda: self._settle(entry, False))
            if entry.result is not None or deadline <= trio.current_time():
                await trio.lowlevel.checkpoint()  # told to leave before it slept, or due
                return entry.result is not False
            if deadline != math.inf:
                self._arm(deadline, entry)

            def abort(_: Any) -> trio.lowlevel.Abort:
                entry.sleeping = False
                self._parked.pop(entry, None)
                return trio.lowlevel.Abort.SUCCEEDED

            entry.sleeping = True
            woken: bool = await trio.lowlevel.wait_task_rescheduled(abort)
            return woken
        finally:
            self._parked.pop(entry, None)
            if on_leave is not None:
                on_leave(None)
            due = self._deadlines
            if due and (not self._parked or len(due) > 2 * len(self._parked) + 64):
                self._compact()

    def _arm(self, deadline: float, entry: _Parked) -> None:
        """Have ``entry`` woken with True at ``deadline``, starting the timer if needed."""
        heapq.heappush(self._deadlines, (deadline, next(_ORDER), entry))
        if self._timer is None:
            self._spawn(self._wake_when_due)  # starts later; set the timer once it surely will
            self._timer = trio.CancelScope(deadline=deadline)
        elif deadline < self._timer.deadline:
            self._timer.deadline = deadline

    def _compact(self) -> None:
        """Drop the heap entries of waiters that are gone; stop the timer if none is left."""
        parked = self._parked
        self._deadlines = [item for item in self._deadlines if item[2] in parked]
        heapq.heapify(self._deadlines)
        if not self._deadlines and self._timer is not None and not self._timer.cancel_called:
            self._timer.cancel()

    async def _wake_when_due(self) -> None:
        """The timer task: wake each waiter at its deadline; ends when none is left."""
        try:
            while self._deadlines and self._timer is not None:
                with self._timer:
                    await trio.sleep_forever()
                now = trio.current_time()
                due = self._deadlines
                while due and due[0][0] <= now:
                    self._settle(heapq.heappop(due)[2], True)
                if due:
                    self._timer = trio.CancelScope(deadline=due[0][0])
        finally:
            self._timer = None

    def _settle(self, entry: _Parked, result: bool) -> None:
        """End ``entry``'s park with ``result``, once; later calls do nothing."""
        if self._parked.pop(entry, _GONE) is _GONE:
            return
        entry.result = result
        if entry.sleeping:
            entry.sleeping = False
            trio.lowlevel.reschedule(entry.task, outcome.Value(result))

    def notify(self) -> None:
        """Wake everyone parked now: at once when few, else a slice at a time."""
        if self._waking:
            self._wake_pending = True
        elif len(self._parked) <= WAKE_SLICE:
            self._unpark(WAKE_SLICE)  # a small fan-out wakes at once, no task hop
        else:
            self._wake_pending = self._waking = True
            self._spawn(self._wake_in_slices)

    def wake_all(self) -> None:
        """Wake everyone parked now, at once (shutdown, deletion, access change)."""
        self._unpark(len(self._parked))

    def wake_key(self, key_id: str) -> None:
        """Wake the waits of ``key_id`` only (it was revoked): they re-check and answer."""
        for entry in [e for e in self._parked if e.key_id == key_id]:
            self._settle(entry, True)

    def _unpark(self, count: int) -> int:
        """Wake the ``count`` oldest parked tasks; returns how many were woken."""
        woken = list(islice(self._parked, count))
        for entry in woken:
            self._settle(entry, True)
        return len(woken)

    async def _wake_in_slices(self) -> None:
        """Unpark everyone who was parked, ``WAKE_SLICE`` at a time.

        All at once, thousands of woken handlers fill trio's run queue and
        every response waits for every other (each send path checkpoints
        several times, and each checkpoint is a sweep of the whole queue).
        A slice at a time, each slice is answered within milliseconds and
        the writer's own answer is not stuck behind the whole fan-out.
        """
        try:
            while self._wake_pending:
                self._wake_pending = False
                remaining = len(self._parked)
                while remaining > 0:
                    woken = self._unpark(min(WAKE_SLICE, remaining))
                    remaining -= WAKE_SLICE
                    if remaining > 0 and woken:
                        for _ in range(SLICE_SWEEPS):
                            await trio.lowlevel.checkpoint()
        finally:
            self._waking = False
