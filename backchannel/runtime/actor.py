"""ChannelActor: the one task that owns a channel's state.

Every change to a channel reaches its actor through the inbox, one command
at a time, so a claim is atomic without a lock. A command is a plain method
of the actor run synchronously inside the loop: it decides, journals each
event (which assigns its global seq), applies it, and returns
``(value, seq)``. The caller then waits for that seq to be durable before it
answers the client ("durable when answered", design.md).

Events are applied *before* they are durable so the actor never stalls on
the disk and many channels share one fsync (group commit). A reader may
therefore see a change whose author has not been answered yet; if the
process dies before the fsync, that change is lost, and its author was never
told it succeeded.

Cancellation: a caller that is cancelled while its command is queued or
running leaves the command in place; the reply channel's receive end is
closed and the actor ignores the ``BrokenResourceError`` — the write stands.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import trio
import trio.lowlevel

from backchannel.core import delivery, errors
from backchannel.core.channel import ChannelState
from backchannel.core.delivery_events import (
    MOVE_EVENTS,
    ClaimReturned,
    MessagesVisible,
)
from backchannel.core.errors import ApiError
from backchannel.core.events import (
    AccessEvent,
    ActorCreated,
    ChannelEvent,
    ChannelUpdated,
    HistoryPurged,
    LeaseExpired,
    MemberRemoved,
    MessageAcked,
    MessagePosted,
    MessageReleased,
    MessagesExpired,
    from_wire,
    to_wire,
)
from backchannel.core.records import CLAIMABLE, Archived, KeyRecord, Message
from backchannel.runtime.claimers import Claimer
from backchannel.runtime.durable import settle
from backchannel.runtime.journal import JournalFailed
from backchannel.runtime.streams import (
    ACCESS,
    CHANGES,
    REVOKED,
    SHUTDOWN,
    Subscriber,
    frame,
    message_frame,
    publish,
)

if TYPE_CHECKING:
    from backchannel.runtime.hub import Hub

log = logging.getLogger(__name__)
T = TypeVar("T")
WAKE_SLICE = 500  # waiters woken per step of a fan-out
SLICE_SWEEPS = 8  # run-queue sweeps a slice gets to answer before the next one wakes


class _Reply:
    """The one answer to one command: a single-use rendezvous, no channel.

    The actor ``deliver``s exactly once. The caller ``wait``s once, after
    its command is queued; if the answer is already there it takes it, else
    it sleeps until the actor reschedules it. A caller cancelled while
    waiting abandons the reply and the actor's answer goes nowhere.
    """

    __slots__ = ("_abandoned", "_result", "_task")

    def __init__(self) -> None:
        self._result: outcome.Outcome[Any] | None = None
        self._task: trio.lowlevel.Task | None = None
        self._abandoned = False

    def deliver(self, result: outcome.Outcome[Any]) -> None:
        self._result = result
        if self._task is not None and not self._abandoned:
            task, self._task = self._task, None
            trio.lowlevel.reschedule(task, outcome.Value(result))

    async def wait(self) -> outcome.Outcome[Any]:
        if self._result is not None:
            await trio.lowlevel.checkpoint()
            return self._result
        self._task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._abandoned = True
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        result: outcome.Outcome[Any] = await trio.lowlevel.wait_task_rescheduled(abort)
        return result


Command = tuple[Callable[..., tuple[Any, int]], tuple[Any, ...], _Reply]
_GONE = object()


class _Parked:
    """One parked task: woken at most once, with True (woken) or False (leave)."""

    __slots__ = ("key_id", "result", "sleeping", "task")

    def __init__(self, task: trio.lowlevel.Task, key_id: str | None) -> None:
        self.task = task
        self.key_id = key_id  # whose wait it is, so a revoked key's waits can be found
        self.sleeping = False
        self.result: bool | None = None


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    channel_id: str
    inbox_depth: int
    live_messages: int
    archived_messages: int
    open_leases: int
    waiters: int


@dataclass(frozen=True, slots=True)
class ClaimResult:
    status: str
    message: Message
    lease_token: str | None
    lease_expires_at: int | None


class ChannelActor:
    """Owns one :class:`ChannelState`; see the module docstring."""

    def __init__(self, hub: Hub, state: ChannelState) -> None:
        self.hub = hub
        self.state = state
        self.channel_id = state.config.id
        self._send, self._receive = trio.open_memory_channel[Command](hub.settings.inbox_size)
        self._parked: dict[_Parked, None] = {}  # FIFO: oldest waiter first
        self._wake_pending = False
        self._waking = False
        self.waiters = 0
        self.streams: dict[Subscriber, None] = {}  # open SSE streams (runtime.streams)
        self.deleted = False  # set by Hub.delete_channel; every later command is 404
        self._claimers: dict[Claimer, None] = {}  # parked claim-next, FIFO (runtime.claimers)
        self._sleep: trio.CancelScope | None = None  # the loop's wait, cut short by nudge()

    # -- the loop -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve commands and deadlines until the inbox is closed. Never raises ApiError."""
        clock = self.hub.clock
        task_status.started()
        self._expire()
        async with self._receive:
            while True:
                with trio.move_on_at(clock.trio_time(self.state.next_deadline())) as self._sleep:
                    try:
                        command = await self._receive.receive()
                    except trio.EndOfChannel:
                        return
                    self._expire()
                    self._execute(command)
                    # what queued meanwhile runs in the same step, no re-arm per command
                    while (queued := self._next_queued()) is not None:
                        self._execute(queued)
                    # a command may bring the next deadline closer: loop to re-arm
                    continue
                self._expire()

    def _next_queued(self) -> Command | None:
        try:
            return self._receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return None  # EndOfChannel: the next receive() sees it and ends the loop

    def close(self) -> None:
        """Ask the loop to finish once queued commands are done."""
        self._send.close()

    async def call(self, fn: Callable[..., tuple[T, int]], *args: Any) -> T:
        """Run ``fn(*args)`` inside the actor and return its value once durable.

        Raises:
            ApiError: the command was refused; nothing changed.
            JournalFailed: the change could not be made durable.
        """
        reply = _Reply()
        try:
            await self._send.send((fn, args, reply))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            if self.deleted:
                raise errors.channel_not_found(self.channel_id) from None
            raise ApiError(503, "unavailable", "The server is shutting down") from None
        value, seq = (await reply.wait()).unwrap()
        await settle(self.hub.journal, seq)
        return value  # type: ignore[no-any-return]

    def _execute(self, command: Command) -> None:
        fn, args, reply = command
        if self.deleted:  # queued before the channel was deleted: it is gone now
            reply.deliver(outcome.Error(errors.channel_not_found(self.channel_id)))
            return
        try:
            result: outcome.Outcome[Any] = outcome.Value(fn(*args))
        except (ApiError, JournalFailed) as exc:
            result = outcome.Error(exc)
        except Exception as exc:
            log.exception("command %s failed in channel %s", fn.__name__, self.channel_id)
            result = outcome.Error(exc)
        reply.deliver(result)  # a caller that went away is not told; the effect stands
        if self._claimers:
            self.dispatch_claims()

    def _expire(self) -> None:
        if self.deleted:
            return
        events = self.state.due_events(self.hub.clock.now())
        for event in events:
            if isinstance(event, LeaseExpired):
                self._commit(self._claim_end(event, event.message_id, delivery.LEASE_EXPIRED))
            else:
                self._commit(event)
        if self._claimers:
            self.dispatch_claims()

    def nudge(self) -> None:
        """Make the loop run its deadline step now (another actor changed this state)."""
        if self._sleep is not None:
            self._sleep.deadline = -math.inf

    def _commit(self, event: ChannelEvent) -> int:
        seq = self.hub.journal.append_nowait(to_wire(event))
        hub = self.hub
        if isinstance(event, HistoryPurged):
            hub.forget_archived(self.state, event.before)
        touched = self.state.live.get(getattr(event, "message_id", ""))
        token = touched.lease_token if touched is not None else None
        expired = (
            self.state.live_through(event.through_seq) if isinstance(event, MessagesExpired) else ()
        )
        trimmed = self._to_trim() if isinstance(event, MessagePosted) else ()
        self.state.apply(event, seq)
        if isinstance(event, MessagePosted):
            hub.message_index[event.message_id] = self
            for message in trimmed:
                if message.lease_token is not None:
                    hub.lease_index.pop(message.lease_token, None)
        elif touched is not None and touched.lease_token != token:
            if token is not None:
                hub.lease_index.pop(token, None)
            if touched.lease_token is not None:
                hub.lease_index[touched.lease_token] = touched.id
        for message in expired:
            if message.removed and message.lease_token is not None:
                hub.lease_index.pop(message.lease_token, None)
        if isinstance(event, MOVE_EVENTS):
            target = hub.actors.get(event.target_channel_id)
            if target is not None:
                target.accept_arrival(from_wire(event.arrival), seq)  # type: ignore[arg-type]
        if isinstance(
            event,
            MessagePosted
            | MessageReleased
            | LeaseExpired
            | MessageAcked
            | MessagesVisible
            | ClaimReturned,
        ):
            self._notify_waiters()
        if self.streams:
            self._publish(event, touched, expired)
        return seq

    def accept_arrival(self, posted: MessagePosted, seq: int) -> None:
        """Apply the arriving half of a move another actor journaled as ``seq``.

        Runs in that actor's synchronous step, between this actor's own
        steps, so it is as atomic here as any command; this loop is nudged
        to re-arm its deadline and hand the message to a parked claimer.
        """
        if self.deleted:
            return
        trimmed = self._to_trim()
        self.state.apply(posted, seq)
        self.hub.message_index[posted.message_id] = self
        for message in trimmed:
            if message.lease_token is not None:
                self.hub.lease_index.pop(message.lease_token, None)
        self._notify_waiters()
        if self.streams:
            self._publish(posted, None, ())
        self.nudge()

    def _claim_end(
        self, event: LeaseExpired | MessageReleased, message_id: str, reason: str
    ) -> ChannelEvent:
        """``event``, or the dead-letter move it turns into (core.delivery rule 2)."""
        message = self.state.live.get(message_id)
        if message is None or not delivery.dead_letter_due(self.state, message):
            return event
        target = self.hub.actors.get(self.state.config.dead_letter_channel or "")
        if target is None or target.deleted or target is self:
            return event
        now = self.hub.clock.now()
        return delivery.decide_dead_letter(self.state, message, reason, target.state, now)

    def _publish(
        self, event: ChannelEvent, touched: Message | None, expired: Sequence[Message]
    ) -> None:
        """Tell every open stream about an applied event: the one place that decides
        what a stream sees. Each frame is serialized once and shared.

        A new message is a ``message`` event with its cursor as id; a change
        of a message (claimed, released, acked, lease or life expired,
        retracted) is an event without an id carrying the message as it is now.
        """
        render = self.hub.render_message
        if render is None:
            return
        now = self.hub.clock.now()
        if isinstance(event, MessagePosted | MessagesVisible):
            # a new visible message: posted (a delayed one is not live yet),
            # arrived by a dead-letter move, or a delayed one coming due
            ids = event.message_ids if isinstance(event, MessagesVisible) else [event.message_id]
            for message_id in ids:
                message = self.state.live.get(message_id)
                if message is not None:
                    data = message_frame(message, self.channel_id, now, render)
                    publish(self.streams, data, message.seq)
            return
        name = CHANGES.get(type(event))
        if name is not None and touched is not None:
            publish(self.streams, frame(name, render(touched, self.channel_id, now)), None)
        for message in expired:
            publish(self.streams, frame("expired", render(message, self.channel_id, now)), None)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add an open stream; it is pushed every frame from now on (no await here)."""
        self.streams[subscriber] = None

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.streams.pop(subscriber, None)

    def commit_access(self, event: AccessEvent) -> int:
        """Journal and apply an access event (core.membership) through ``World.apply``.

        A change that can take readers away (a member removed, access
        tightened) wakes every parked reader, and each re-checks its access
        before it reads again (:meth:`admit`): nothing posted after the
        change reaches a reader who lost access.
        """
        seq = self.hub.journal.append_nowait(to_wire(event))
        self.hub.world.apply(event, seq)
        if isinstance(event, MemberRemoved) or (
            isinstance(event, ChannelUpdated) and "access" in event.changes
        ):
            self.wake_all()
        return seq

    def admit(self, key: KeyRecord) -> None:
        """Raise unless ``key`` may still read this channel.

        Raises: 401 ``unauthorized`` once the key is revoked, 404
        ``channel_not_found`` once the channel is deleted, 403
        ``channel_access_denied`` once the key has lost access.
        """
        if not key.active:
            raise errors.inactive_key()
        if self.deleted:
            raise errors.channel_not_found(self.channel_id)
        if not self.state.config.can_access(key.key_id):
            raise errors.access_denied()

    def _to_trim(self) -> list[Message]:
        """The live messages a post will push out of a ``max_messages`` ring buffer."""
        cap = self.state.config.max_messages
        excess = len(self.state.live) + 1 - cap if cap is not None else 0
        return list(islice(self.state.iter_live(), excess)) if excess > 0 else []

    # -- long-poll waiters ------------------------------------------------------

    async def park(
        self,
        deadline: float = math.inf,
        on_leave: Callable[[Callable[[], None] | None], None] | None = None,
        key_id: str | None = None,
    ) -> bool:
        """Wait for the next change that may make new messages visible, or an ack.

        Posts, releases and lapsed leases wake long-polls; acks wake waiters
        for a task's result (MCP ``await_result``). A long-poll woken by an
        ack finds its page still empty and parks again.

        Returns True once woken or at ``deadline``, False once the waiter has
        been told to leave. ``on_leave`` (a long-poll's client watch) is
        given a ``leave()`` function before the task sleeps, and None after
        it wakes; calling ``leave()`` ends the park with False, at once even
        if it is called before the sleep begins. ``key_id`` names the key
        the wait is for: :meth:`drop_key` wakes it when that key is revoked.
        Parking is an entry in a FIFO dict and a plain reschedule to wake: no
        extra task, no exception on the common path.

        Cancellation-safe: a cancelled waiter leaves the dict at once. The
        caller must have checked, with no ``await`` in between, that
        ``state.version`` is still the one its empty page was read at.
        """
        entry = _Parked(trio.lowlevel.current_task(), key_id)
        self._parked[entry] = None
        try:
            if on_leave is not None:
                on_leave(lambda: self._settle(entry, False))
            if entry.result is not None:  # told to leave before it slept
                await trio.lowlevel.checkpoint()
                return entry.result
            with trio.move_on_at(deadline):

                def abort(_: Any) -> trio.lowlevel.Abort:
                    entry.sleeping = False
                    self._parked.pop(entry, None)
                    return trio.lowlevel.Abort.SUCCEEDED

                entry.sleeping = True
                woken: bool = await trio.lowlevel.wait_task_rescheduled(abort)
                return woken
            return True  # the deadline: the caller reads once more and answers
        finally:
            self._parked.pop(entry, None)
            if on_leave is not None:
                on_leave(None)

    def _settle(self, entry: _Parked, result: bool) -> None:
        """End ``entry``'s park with ``result``, once; later calls do nothing."""
        if self._parked.pop(entry, _GONE) is _GONE:
            return
        entry.result = result
        if entry.sleeping:
            entry.sleeping = False
            trio.lowlevel.reschedule(entry.task, outcome.Value(result))

    @property
    def parked(self) -> int:
        """Tasks parked right now (long-polls and any other waiters)."""
        return len(self._parked)

    def _notify_waiters(self) -> None:
        if self._waking:
            self._wake_pending = True
        elif len(self._parked) <= WAKE_SLICE:
            self._unpark(WAKE_SLICE)  # a small fan-out wakes at once, no task hop
        else:
            self._wake_pending = self._waking = True
            self.hub.spawn(self._wake_in_slices)

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

    def wake_all(self) -> None:
        """Wake every parked long-poll waiter, and end the streams that must end.

        Used at shutdown (every stream ends, ``shutdown``), on deletion (every
        stream ends, ``access``) and after an access change (the streams of
        keys that lost access end at once, ``access``).
        """
        self._unpark(len(self._parked))
        can_access = self.state.config.can_access
        for subscriber in list(self.streams):
            if self.deleted or not can_access(subscriber.key_id):
                subscriber.end(ACCESS)
            elif self.hub.closing:
                subscriber.end(SHUTDOWN)

    def drop_key(self, key_id: str) -> None:
        """A key was revoked: end its streams (``revoked``) and wake its parked
        long-polls and claim-nexts, which re-check the key (:meth:`admit`) and
        answer 401. Nobody else is woken."""
        for subscriber in list(self.streams):
            if subscriber.key_id == key_id:
                subscriber.end(REVOKED)
        for entry in [e for e in self._parked if e.key_id == key_id]:
            self._settle(entry, True)
        for claimer in [c for c in self._claimers if c.key.key_id == key_id]:
            claimer.withdraw()
            claimer.hand(None, 0)

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            self.channel_id,
            self._send.statistics().current_buffer_used,
            len(self.state.live),
            len(self.state.history),
            sum(1 for m in self.state.live.values() if m.lease_token is not None),
            self.waiters,
        )

    # -- commands (run inside the loop; each returns (value, last seq)) -------

    def cmd_post(
        self,
        key: KeyRecord,
        content: str,
        metadata: dict[str, Any],
        actor_ref: str | None,
        actor_label: str | None,
        mentions: list[str] | None,
        delay_us: int = 0,
    ) -> tuple[Message, int]:
        world = self.hub.world
        now = self.hub.clock.now()
        if not self.state.config.can_access(key.key_id):  # removed while this post was queued
            raise errors.access_denied()
        # decide everything before changing anything
        event = self.state.decide_post(
            content=content,
            metadata=metadata,
            key_id=key.key_id,
            now=now,
            actor=None,
            actor_label=actor_label,
            mentions=[],
            delay_us=delay_us,
        )
        actor = world.resolve_posting_actor(key, actor_ref) if actor_ref is not None else None
        resolved = world.resolve_mentions(mentions, self.state) if mentions else []
        if actor is not None or resolved:
            event = dataclasses.replace(
                event,
                actor_id=actor.id if actor else None,
                actor_name=actor.name if actor else None,
                mentions=resolved,
            )
        seq = self._commit(event)
        message = self.state.live.get(event.message_id) or self.state.delayed[event.message_id]
        config = self.state.config
        render = self.hub.render_message
        if render is not None and (config.webhook_url or (resolved and world.webhooks.hooks)):
            deliveries = world.outbox.decide_message(
                config, render(message, self.channel_id, now), resolved, world.webhooks.hooks, now
            )
            seq = self.hub.queue_webhooks(deliveries) or seq
        return message, seq

    def cmd_page(
        self, after_seq: int, limit: int, status: str | None, expiring_before: int | None
    ) -> tuple[tuple[list[Message], int], int]:
        page = self.state.page(after_seq, limit, status, expiring_before)
        return (page, self.state.version), 0

    def read_page(
        self, after_seq: int, limit: int, status: str | None, expiring_before: int | None
    ) -> tuple[list[Message], int] | None:
        """Serve a page in the caller's task, or None if the actor must serve it.

        A read changes nothing, and it runs in one synchronous step between
        the actor's (equally synchronous) commands, so it sees one
        consistent state without a round trip through the inbox. When a
        deadline is due the answer is None: the caller uses :meth:`cmd_page`
        so the actor applies the expiry first (an expired lease shows as
        unclaimed on the very next read).
        """
        deadline = self.state.next_deadline()
        if deadline is not None and deadline <= self.hub.clock.now():
            return None
        return self.state.page(after_seq, limit, status, expiring_before), self.state.version

    def read_seq_after_time(self, at: int) -> int:
        """The seq cursor equivalent to "created after ``at``", read in the caller's task."""
        return self.state.first_seq_after_time(at)

    def cmd_history(
        self, before_seq: int | None, before_time: int | None, limit: int
    ) -> tuple[list[Archived], int]:
        return self.state.history_page(before_seq, limit, before_time), 0

    def cmd_claim(
        self, key: KeyRecord, message_id: str, actor_value: str | None, lease_us: int | None
    ) -> tuple[ClaimResult, int]:
        now = self.hub.clock.now()
        message = self.state.check_message(message_id, key.key_id, "claimed", claim=True)
        actor, created = self.hub.world.resolve_acting_actor(key, actor_value, now)
        status, event = self.state.decide_claim(message, actor, key.key_id, now, lease_us)
        seq = self._commit_actor(created)
        if event is not None:
            seq = self._commit(event)
        return ClaimResult(status, message, message.lease_token, message.lease_expires_at), seq

    def cmd_claim_next(
        self,
        key: KeyRecord,
        actor_value: str | None,
        lease_us: int | None = None,
        claimer: Claimer | None = None,
        strict: bool = False,
    ) -> tuple[ClaimResult | None, int]:
        """Claim the oldest unclaimed visible message, atomically; None when there is none.

        One command, so concurrent workers never race for the same message:
        each gets the next one or nothing (contract §2.9 ``/v1/tasks/claim``).
        With ``lease_us`` the claim is a lease. With ``claimer``, a caller that
        finds nothing is queued in this same step (runtime.claimers) and is
        handed the next message that becomes visible. A broadcast channel
        has nothing to claim; ``strict`` refuses it (409
        ``channel_not_claimable``) and checks access (403).
        """
        config = self.state.config
        if strict:
            if not config.can_access(key.key_id):
                raise errors.access_denied()
            if config.mode != CLAIMABLE:
                raise errors.not_claimable()
        if config.mode != CLAIMABLE:
            return None, 0
        pool = self.state.page(0, 1, "unclaimed")
        if not pool and claimer is None:
            return None, 0
        now = self.hub.clock.now()
        actor, created = self.hub.world.resolve_acting_actor(key, actor_value, now)
        seq = self._commit_actor(created)
        if not pool:
            assert claimer is not None
            claimer.enqueue(self._claimers, actor)
            return None, seq
        return self._claim_for(pool[0], actor, key, lease_us, now)

    def _claim_for(
        self,
        message: Message,
        actor: tuple[str, str],
        key: KeyRecord,
        lease_us: int | None,
        now: int,
    ) -> tuple[ClaimResult, int]:
        _status, event = self.state.decide_claim(message, actor, key.key_id, now, lease_us)
        assert event is not None  # an unheld message: always a new claim
        seq = self._commit(event)
        result = ClaimResult("claimed", message, message.lease_token, message.lease_expires_at)
        return result, seq

    def dispatch_claims(self) -> None:
        """Hand the oldest unclaimed messages to the oldest parked claimers, one each."""
        claimers = self._claimers
        state = self.state
        while claimers and not self.deleted and state.config.mode == CLAIMABLE:
            pool = state.page(0, 1, "unclaimed")
            if not pool:
                return
            claimer = next(iter(claimers))
            claimer.withdraw()
            if not state.config.can_access(claimer.key.key_id):
                claimer.hand(None, 0)  # lost access while parked: it is refused on waking
                continue
            now = self.hub.clock.now()
            result, seq = self._claim_for(
                pool[0], claimer.acting, claimer.key, claimer.lease_us, now
            )
            claimer.hand(result, seq)

    def release_claimers(self) -> None:
        """Let every parked claimer go with no claim (shutdown, deletion)."""
        for claimer in list(self._claimers):
            claimer.withdraw()
            claimer.hand(None, 0)

    def cmd_return(self, message_id: str, actor_id: str, claimed_at: int) -> tuple[bool, int]:
        """Give back a claim whose claimer's client had gone (runtime.claimers)."""
        message = self.state.live.get(message_id)
        if message is None or message.claimed_by_id != actor_id or message.claimed_at != claimed_at:
            return False, 0
        return True, self._commit(ClaimReturned(self.channel_id, message_id, self.hub.clock.now()))

    def cmd_redrive(self, limit: int, to: str | None) -> tuple[int, int]:
        """Move up to ``limit`` dead-lettered messages to their source (or ``to``).

        Each move is one journaled event (core.delivery_events); a message
        whose target channel no longer exists stays here.
        """
        now = self.hub.clock.now()
        seq = moved = 0
        for message, source in delivery.redrivable(self.state, limit):
            target = self.hub.actors.get(to or source)
            if target is None or target.deleted or target is self:
                continue
            seq = self._commit(delivery.decide_redrive(self.state, message, target.state, now))
            moved += 1
        return moved, seq

    def cmd_post_later(
        self,
        delay_us: int,
        key: KeyRecord,
        content: str,
        metadata: dict[str, Any],
        actor_ref: str | None,
        actor_label: str | None,
        mentions: list[str] | None,
    ) -> tuple[tuple[Message, int], int]:
        """Post a delayed message; also returns the seq cursor as of the post.

        The message has no position until it becomes visible, so the
        poster's ``next_cursor`` is the channel's position at the post: a
        reader continuing from it sees the message once it is visible.
        """
        before = self.state.last_seq
        message, seq = self.cmd_post(
            key, content, metadata, actor_ref, actor_label, mentions, delay_us
        )
        return (message, before), seq

    def cmd_heartbeat(
        self, key: KeyRecord, token: str, message_id: str, lease_us: int
    ) -> tuple[int, int]:
        now = self.hub.clock.now()
        event = self.state.decide_heartbeat(token, message_id, key.key_id, now, lease_us)
        if not self.state.config.can_access(key.key_id):  # removed: the lease runs out as set
            raise errors.access_denied()
        return event.lease_expires_at, self._commit(event)

    def cmd_release(
        self, key: KeyRecord, message_id: str, actor_value: str | None
    ) -> tuple[Message, int]:
        now = self.hub.clock.now()
        message = self.state.check_message(message_id, key.key_id, "released", claim=True)
        if message.claimed_by_id is None:
            raise ApiError(409, "not_claimed", "Message is not claimed")
        actor, created = self.hub.world.resolve_acting_actor(key, actor_value, now)
        event = self.state.decide_release(message, actor[0], key.key_id, now)
        self._commit_actor(created)
        return message, self._commit(self._claim_end(event, message_id, delivery.RELEASED))

    def cmd_ack(
        self, key: KeyRecord, message_id: str, actor_value: str | None
    ) -> tuple[tuple[str, Message], int]:
        now = self.hub.clock.now()
        message = self.state.check_message(message_id, key.key_id, "acknowledged", claim=False)
        actor, created = self.hub.world.resolve_acting_actor(key, actor_value, now)
        event = self.state.decide_ack(message, actor, now)
        seq = self._commit_actor(created)
        if event is None:
            return ("already_acknowledged", message), seq
        status = "acknowledged" if isinstance(event, MessageAcked) else "already_acknowledged"
        return (status, message), self._commit(event)

    def cmd_pause(self, paused: bool, remote_addr: str | None) -> tuple[ChannelState, int]:
        """Pause or resume the channel, with its security event in the same step."""
        now = self.hub.clock.now()
        config = self.state.config
        seq = self._commit(self.state.decide_pause(paused, now))
        audit = self.hub.world.audit.decide(
            "channel.pause" if paused else "channel.resume",
            actor_key_id=None,
            subject_key_id=config.owner_key_id,
            remote_addr=remote_addr,
            detail={"channel_id": config.id, "name": config.name},
            now=now,
        )
        return self.state, max(seq, self.hub.commit_global(audit))

    def cmd_retract(self, key: KeyRecord, message_id: str) -> tuple[None, int]:
        now = self.hub.clock.now()
        message = self.state.check_message(message_id, key.key_id, "retract", claim=False)
        return None, self._commit(self.state.decide_retract(message, key.key_id, now))

    def _commit_actor(self, event: ActorCreated | None) -> int:
        return self.hub.commit_global(event) if event is not None else 0
