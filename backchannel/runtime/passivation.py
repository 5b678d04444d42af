"""Passive channels: idle actors without a task, and the one timer that wakes them.

An idle channel needs no task. After ``PASSIVE_AFTER_SECONDS`` without a
command, parked waiter, stream, parked claimer, lease, or deadline due
within that window, a channel actor ends its loop
(:meth:`ChannelActor._go_passive`): the task, its inbox, cancel scope and
per-actor dicts go away, and what remains is the :class:`ChannelState` and
a small handle (the actor object, slots only) in ``Hub.actors``.

Rules:
    1. Every entry point reaches a channel through its handle, and the
       handle brings the task back (:meth:`ChannelActor.activate`) in the
       same synchronous step that queues a command, parks a waiter or opens
       a stream: a hundred callers at once find one inbox and one task.
    2. Going passive happens in one synchronous step that finds the inbox
       empty and closes it, so a command racing it is either already queued
       (the actor stays) or queued after it (a new task runs it): exactly once.
    3. The next deadline of every passive channel (TTL, lease, retention,
       delayed message) sits in one heap served by one task
       (:meth:`Passivation.run`). At the deadline the channel is brought
       back, and its actor applies what came due through the same
       ``_expire`` as ever, so dead-letter moves, parked claimers, streams
       and indexes need no second code path; it goes passive again at once
       if still idle.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from backchannel.runtime.actor import ChannelActor


class Passivation:
    """The Hub's record of which channels run, and the passive channels' timer heap."""

    def __init__(self) -> None:
        self.running: set[ChannelActor] = set()  # actors with a task
        self._heap: list[tuple[float, int, ChannelActor]] = []  # (trio deadline, tiebreak, actor)
        self._ticket = itertools.count()
        self._armed = 0  # heap entries still current (the rest are stale)
        self._sleep: trio.CancelScope | None = None
        self.deactivations = 0  # since start
        self.activations = 0

    def __len__(self) -> int:
        """Timer entries held (current and stale)."""
        return len(self._heap)

    def activated(self, actor: ChannelActor) -> None:
        """``actor`` has a task again; its timer entry (if any) is now stale."""
        self.running.add(actor)
        self.activations += 1
        if actor.wake_at is not None:
            actor.wake_at = None
            self._armed -= 1

    def passivated(self, actor: ChannelActor, deadline: float) -> None:
        """``actor`` went passive; wake it at ``deadline`` (trio time; inf: never)."""
        self.running.discard(actor)
        self.deactivations += 1
        self.arm(actor, deadline)

    def stopped(self, actor: ChannelActor) -> None:
        """``actor``'s task has ended (passive, deleted, or shut down)."""
        self.running.discard(actor)

    def arm(self, actor: ChannelActor, deadline: float) -> None:
        """Bring passive ``actor`` back at ``deadline`` (replacing an earlier arming)."""
        if actor.wake_at is not None:
            self._armed -= 1
            actor.wake_at = None
        if deadline == math.inf:
            return
        actor.wake_at = deadline
        self._armed += 1
        heapq.heappush(self._heap, (deadline, next(self._ticket), actor))
        if len(self._heap) > 2 * self._armed + 64:
            self._compact()
        if self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline

    def arm_many(self, timers: list[tuple[float, ChannelActor]]) -> None:
        """:meth:`arm` for many passive actors not armed yet (a restart): one heapify."""
        heap = self._heap
        ticket = self._ticket
        for deadline, actor in timers:
            actor.wake_at = deadline
            heap.append((deadline, next(ticket), actor))
        self._armed += len(timers)
        heapq.heapify(heap)
        if self._sleep is not None and heap and heap[0][0] < self._sleep.deadline:
            self._sleep.deadline = heap[0][0]

    def forget(self, actor: ChannelActor) -> None:
        """``actor``'s channel is gone (deleted): no timer."""
        if actor.wake_at is not None:
            actor.wake_at = None
            self._armed -= 1

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if entry[2].wake_at == entry[0]]
        heapq.heapify(self._heap)

    async def run(self) -> None:
        """Bring each passive channel back when its deadline comes. Never returns
        unless cancelled."""
        while True:
            heap = self._heap
            with trio.move_on_at(heap[0][0] if heap else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                deadline, _ticket, actor = heapq.heappop(self._heap)
                if actor.wake_at == deadline and not actor.activate():  # else stale
                    self.forget(actor)  # deleted, or the server is stopping
