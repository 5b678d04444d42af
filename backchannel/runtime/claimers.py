"""Parked claim-next callers: each newly visible message goes to exactly one.

A caller of claim-next with ``wait`` that finds nothing is queued, in the
same actor step that found nothing, as a :class:`Claimer` in its channel
actor's FIFO. Whenever a step of the actor leaves unclaimed messages and
parked claimers (a post, a lapsed lease, a release, a delayed message
coming due, a dead-lettered or redriven copy arriving), the actor claims
the oldest message for the oldest claimer and hands it over
(:meth:`ChannelActor.dispatch_claims`): one wake-up per message, no
thundering herd.

Cancellation and departure are atomic with the hand-over, as trio's own
primitives are: a claimer whose wait is cancelled (``wait`` elapsed) or
whose client left leaves the queue in the same step, before anything can
be handed to it, so the message goes to the next claimer or stays in the
pool. A claim handed over in the step the client left (or to a caller that
is cancelled before it answers) is given back with ``ClaimReturned``: the
message returns to the pool uncounted and goes to the next claimer.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import outcome
import trio
import trio.lowlevel

from backchannel.core.errors import ApiError
from backchannel.core.records import KeyRecord
from backchannel.runtime.durable import settle

if TYPE_CHECKING:
    from backchannel.runtime.actor import ChannelActor, ClaimResult
    from backchannel.runtime.hub import Hub

OnLeave = Callable[[Callable[[], None] | None], None]
Sleep = Callable[[float, OnLeave | None], Awaitable[bool]]
Park = Callable[[Sleep, float], Awaitable[bool]]


class ClaimerGone(Exception):
    """The waiting caller's client left; any claim handed over has been given back."""


async def _no_watch(
    fn: Callable[[float, OnLeave | None], Awaitable[bool]], deadline: float
) -> bool:
    return await fn(deadline, None)


async def claim_next(
    hub: Hub,
    actor: ChannelActor,
    key: KeyRecord,
    acting: str | None,
    lease_us: int | None,
    wait: float,
    strict: bool,
    park: Park = _no_watch,
) -> ClaimResult | None:
    """Claim the oldest visible unclaimed message, waiting up to ``wait`` seconds.

    The one entry point for claim-next (HTTP routes, MCP tools): the actor
    command :meth:`ChannelActor.cmd_claim_next` either claims at once or
    queues a :class:`Claimer` in the same step; this then sleeps until a
    claim is handed over (answered once durable), the deadline (None) or
    the client leaving. ``park(fn, deadline)`` runs ``fn(deadline, on_leave)``
    while watching the client (``Request.park``); the default watches nothing.
    Parked callers count against ``LONGPOLL_MAX_WAITERS``; past it, no wait.

    Raises:
        ClaimerGone: the client left while parked.
        ApiError: as ``cmd_claim_next``; 403/404 for a key that lost access
            or a channel deleted while parked.
    """
    deadline = trio.current_time() + wait
    parking = wait > 0 and hub.parked < hub.settings.longpoll_max_waiters
    claimer = Claimer(key, lease_us) if parking else None
    answered = False
    try:
        result: ClaimResult | None = await actor.call(
            actor.cmd_claim_next, key, acting, lease_us, claimer, strict
        )
        if claimer is None or not claimer.queued:
            answered = True
            return result
        hub.parked += 1
        actor.waiters += 1
        try:
            present = await park(claimer.wait, deadline)
        finally:
            hub.parked -= 1
            actor.waiters -= 1
        if not present:
            raise ClaimerGone
        if claimer.result is None:
            answered = True
            actor.admit(key)  # deleted or access lost while parked
            return None
        await settle(hub.journal, claimer.seq)
        answered = True
        return claimer.result
    finally:
        if claimer is not None and not answered:
            claimer.withdraw()
            given = claimer.result
            if given is not None:  # handed over as the caller left: give it back
                hub.spawn(_give_back, actor, given)


async def _give_back(actor: ChannelActor, given: ClaimResult) -> None:
    message = given.message
    if message.claimed_by_id is None or message.claimed_at is None:
        return
    try:
        await actor.call(actor.cmd_return, message.id, message.claimed_by_id, message.claimed_at)
    except ApiError:
        pass  # the channel was deleted meanwhile


class Claimer:
    """One parked claim-next: handed at most one claim, or let go with none."""

    __slots__ = (
        "_queue",
        "_settled",
        "_sleeping",
        "_task",
        "acting",
        "gone",
        "key",
        "lease_us",
        "result",
        "seq",
    )

    def __init__(self, key: KeyRecord, lease_us: int | None) -> None:
        self.key = key
        self.lease_us = lease_us
        self.acting: tuple[str, str] = ("", "")
        self.result: ClaimResult | None = None
        self.seq = 0
        self.gone = False
        self._queue: dict[Claimer, None] | None = None
        self._settled = False
        self._sleeping = False
        self._task: trio.lowlevel.Task | None = None

    @property
    def queued(self) -> bool:
        return self._queue is not None and self in self._queue

    def enqueue(self, queue: dict[Claimer, None], acting: tuple[str, str]) -> None:
        """Join the actor's FIFO (called inside the actor step that found nothing)."""
        self.acting = acting
        self._queue = queue
        queue[self] = None

    def hand(self, result: ClaimResult | None, seq: int) -> None:
        """The actor's answer, once, after it took this claimer off its queue."""
        self._settled = True
        self.result = result
        self.seq = seq
        if self._sleeping:
            self._sleeping = False
            assert self._task is not None
            trio.lowlevel.reschedule(self._task, outcome.Value(True))

    def withdraw(self) -> None:
        """Leave the queue, if still in it; nothing can be handed over after this."""
        if self._queue is not None:
            self._queue.pop(self, None)
        self._settled = True

    def _leave(self) -> None:
        self.gone = True
        if not self._settled:
            self.withdraw()
            if self._sleeping:
                self._sleeping = False
                assert self._task is not None
                trio.lowlevel.reschedule(self._task, outcome.Value(False))

    async def wait(self, deadline: float = math.inf, on_leave: OnLeave | None = None) -> bool:
        """Sleep until handed a claim, ``deadline``, or the client leaving.

        Returns False when the client left (``result`` may still hold a claim
        handed over in that same instant: the caller gives it back), else
        True with ``result`` set or None. Cancellation-safe: cancelled while
        asleep, the claimer leaves the queue and nothing is handed to it.
        """
        try:
            if on_leave is not None:
                on_leave(self._leave)
            if self._settled:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return not self.gone
            with trio.move_on_at(deadline):

                def abort(_: Any) -> trio.lowlevel.Abort:
                    self._sleeping = False
                    self.withdraw()
                    return trio.lowlevel.Abort.SUCCEEDED

                self._task = trio.lowlevel.current_task()
                self._sleeping = True
                woken: bool = await trio.lowlevel.wait_task_rescheduled(abort)
                return woken and not self.gone
            return True  # the deadline: no claim
        finally:
            if not self._settled:
                self.withdraw()
            if on_leave is not None:
                on_leave(None)
