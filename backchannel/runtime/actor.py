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

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import trio

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
from backchannel.core.records import KeyRecord, Message
from backchannel.runtime.claim_commands import ClaimCommands, ClaimResult
from backchannel.runtime.claimers import Claimer
from backchannel.runtime.durable import settle
from backchannel.runtime.journal import JournalFailed
from backchannel.runtime.message_commands import MessageCommands
from backchannel.runtime.parking import OnLeave, Parking
from backchannel.runtime.reply import Command, Reply
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

__all__ = ["ActorStatistics", "ChannelActor", "ClaimResult"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_NEVER = -math.inf  # one shared float for every handle never used


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    channel_id: str
    inbox_depth: int
    live_messages: int
    archived_messages: int
    open_leases: int
    waiters: int


class ChannelActor(MessageCommands, ClaimCommands):
    """Owns one :class:`ChannelState`; see the module docstring.

    The commands live in :mod:`backchannel.runtime.message_commands` and
    :mod:`backchannel.runtime.claim_commands`; parked long-polls in
    :mod:`backchannel.runtime.parking`.
    """

    __slots__ = (
        "_parking",
        "_receive",
        "_send",
        "_sleep",
        "channel_id",
        "claimers",
        "deleted",
        "hub",
        "last_used",
        "state",
        "streams",
        "waiters",
        "wake_at",
    )

    def __init__(self, hub: Hub, state: ChannelState) -> None:
        self.hub = hub
        self.state = state
        self.channel_id = state.config.id
        self.waiters = 0  # callers between parking and answering (long-polls, streams, claimers)
        self.deleted = False  # set by Hub.delete_channel; every later command is 404
        self.last_used = _NEVER  # trio time of the last command, park or stream
        self.wake_at: float | None = None  # passive: when the Hub's timer brings it back
        # the running part; None while passive (runtime.passivation)
        self._send: trio.MemorySendChannel[Command] | None = None
        self._receive: trio.MemoryReceiveChannel[Command] | None = None
        self._sleep: trio.CancelScope | None = None  # the loop's wait, cut short by nudge()
        self._parking: Parking | None = None
        self.streams: dict[Subscriber, None] | None = None  # open SSE streams (runtime.streams)
        self.claimers: dict[Claimer, None] | None = None  # parked claim-next, FIFO

    # -- the loop -------------------------------------------------------------

    @property
    def passive(self) -> bool:
        """True while no task serves this channel (its state stays in memory)."""
        return self._send is None

    def activate(self) -> bool:
        """Start the actor's task if it is passive; returns False when it may not run.

        Synchronous, so a hundred callers arriving at once see one actor:
        the first creates the inbox and spawns the loop, the others find the
        inbox there and queue behind it. A deleted channel, or a server
        shutting down, is not brought back.
        """
        if self._send is not None:
            return True
        hub = self.hub
        if self.deleted or hub.closing:
            return False
        self._send, self._receive = trio.open_memory_channel[Command](hub.settings.inbox_size)
        hub.passivation.activated(self)
        hub.spawn(self.run, self._receive)
        return True

    async def run(self, receive: trio.MemoryReceiveChannel[Command]) -> None:
        """Serve commands and deadlines until the inbox is closed or the actor
        goes passive (:meth:`_go_passive`). Never raises ApiError."""
        window = self.hub.settings.passive_after_seconds
        try:
            self._expire()
            with receive:
                await self._serve(receive, window)
        finally:
            self.hub.passivation.stopped(self)

    async def _serve(self, receive: trio.MemoryReceiveChannel[Command], window: float) -> None:
        clock = self.hub.clock
        while True:
            wake = clock.trio_time(self.state.next_deadline())
            idle = self.last_used + window if window > 0 else math.inf
            with trio.move_on_at(min(wake, idle)) as self._sleep:
                try:
                    command = await receive.receive()
                except trio.EndOfChannel:
                    return
                self._expire()
                self._execute(command)
                # what queued meanwhile runs in the same step, no re-arm per command
                while (queued := self._next_queued(receive)) is not None:
                    self._execute(queued)
                # a command may bring the next deadline closer: loop to re-arm
                continue
            self._expire()
            if trio.current_time() >= idle and self._go_passive(window):
                return

    def _next_queued(self, receive: trio.MemoryReceiveChannel[Command]) -> Command | None:
        try:
            return receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return None  # EndOfChannel: the next receive() sees it and ends the loop

    def _go_passive(self, window: float) -> bool:
        """End the running part if the channel is idle; one synchronous step.

        Idle: nothing queued or waiting to queue, nobody parked, streaming
        or waiting to claim, no lease, and no deadline within ``window``.
        Since the inbox is found empty and closed in the same step, a command
        is either already queued (and the actor stays) or sent after this
        step (and :meth:`call` starts a new task): never lost, never run
        twice. Not idle: the window starts again.
        """
        send = self._send
        assert send is not None
        now = trio.current_time()
        parking = self._parking
        inbox = send.statistics()
        deadline = self.hub.clock.trio_time(self.state.next_deadline())
        if (
            self.hub.closing
            or self.deleted
            or inbox.current_buffer_used
            or inbox.tasks_waiting_send
            or self.waiters
            or self.streams
            or self.claimers
            or (parking is not None and (len(parking) or parking.waking))
            or deadline < now + window
            or any(m.lease_token is not None for m in self.state.live.values())
        ):
            self.last_used = now
            return False
        send.close()
        self._send = self._receive = None
        self._sleep = self._parking = None
        self.streams = self.claimers = None
        self.hub.passivation.passivated(self, deadline)
        return True

    def close(self) -> None:
        """Ask the loop to finish once queued commands are done."""
        if self._send is not None:
            self._send.close()

    async def call(self, fn: Callable[..., tuple[T, int]], *args: Any) -> T:
        """Run ``fn(*args)`` inside the actor and return its value once durable.

        A passive actor is brought back first (:meth:`activate`), in the same
        step as the command is queued.

        Raises:
            ApiError: the command was refused; nothing changed.
            JournalFailed: the change could not be made durable.
        """
        reply = Reply()
        self.last_used = trio.current_time()
        try:
            if not self.activate():
                raise trio.ClosedResourceError
            assert self._send is not None
            await self._send.send((fn, args, reply))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            if self.deleted:
                raise errors.channel_not_found(self.channel_id) from None
            raise ApiError(503, "unavailable", "The server is shutting down") from None
        value, seq = (await reply.wait()).unwrap()
        await settle(self.hub.journal, seq)
        return value  # type: ignore[no-any-return]

    def _claimer_queue(self) -> dict[Claimer, None]:
        """The parked claim-next FIFO (runtime.claimers), made on first use."""
        if self.claimers is None:
            self.claimers = {}
        return self.claimers

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
        if self.claimers:
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
        if self.claimers:
            self.dispatch_claims()

    def nudge(self) -> None:
        """Make the loop run its deadline step now (another actor changed this state).

        A passive actor is brought back: its deadline may have moved.
        """
        if self._sleep is not None:
            self._sleep.deadline = -math.inf
        elif self.passive:
            self.activate()

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
            hub.message_index[event.message_id] = self.channel_id
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
            self._notify()
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
        self.hub.message_index[posted.message_id] = self.channel_id
        for message in trimmed:
            if message.lease_token is not None:
                self.hub.lease_index.pop(message.lease_token, None)
        self._notify()
        if self.streams:
            self._publish(posted, None, ())
        self.nudge()

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
        streams = self.streams
        if render is None or not streams:
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
                    publish(streams, data, message.seq)
            return
        name = CHANGES.get(type(event))
        if name is not None and touched is not None:
            publish(streams, frame(name, render(touched, self.channel_id, now)), None)
        for message in expired:
            publish(streams, frame("expired", render(message, self.channel_id, now)), None)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add an open stream; it is pushed every frame from now on (no await here).

        Brings a passive actor back: a stream keeps it running.
        """
        self.activate()
        self.last_used = trio.current_time()
        if self.streams is None:
            self.streams = {}
        self.streams[subscriber] = None

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if self.streams is not None:
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

    def _notify(self) -> None:
        if self._parking is not None:
            self._parking.notify()

    async def park(
        self,
        deadline: float = math.inf,
        on_leave: OnLeave | None = None,
        key_id: str | None = None,
    ) -> bool:
        """Wait for the next change that may make new messages visible, or an ack.

        Posts, releases and lapsed leases wake long-polls; acks wake waiters
        for a task's result (MCP ``await_result``). A long-poll woken by an
        ack finds its page still empty and parks again. ``key_id`` names the
        key the wait is for: :meth:`drop_key` wakes it when that key is
        revoked. Returns and cancellation as :meth:`Parking.park`. The caller
        must have checked, with no ``await`` in between, that
        ``state.version`` is still the one its empty page was read at.
        """
        self.activate()  # a parked waiter keeps the actor running
        self.last_used = trio.current_time()
        if self._parking is None:
            self._parking = Parking(self.hub.spawn)
        return await self._parking.park(deadline, on_leave, key_id)

    @property
    def parked(self) -> int:
        """Tasks parked right now (long-polls and any other waiters)."""
        return len(self._parking) if self._parking is not None else 0

    def wake_all(self) -> None:
        """Wake every parked long-poll waiter, and end the streams that must end.

        Used at shutdown (every stream ends, ``shutdown``), on deletion (every
        stream ends, ``access``) and after an access change (the streams of
        keys that lost access end at once, ``access``).
        """
        if self._parking is not None:
            self._parking.wake_all()
        can_access = self.state.config.can_access
        for subscriber in list(self.streams or ()):
            if self.deleted or not can_access(subscriber.key_id):
                subscriber.end(ACCESS)
            elif self.hub.closing:
                subscriber.end(SHUTDOWN)

    def drop_key(self, key_id: str) -> None:
        """A key was revoked: end its streams (``revoked``) and wake its parked
        long-polls and claim-nexts, which re-check the key (:meth:`admit`) and
        answer 401. Nobody else is woken; a passive channel has none of them."""
        for subscriber in [s for s in self.streams or () if s.key_id == key_id]:
            subscriber.end(REVOKED)
        if self._parking is not None:
            self._parking.wake_key(key_id)
        for claimer in [c for c in self.claimers or () if c.key.key_id == key_id]:
            claimer.withdraw()
            claimer.hand(None, 0)

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            self.channel_id,
            self._send.statistics().current_buffer_used if self._send is not None else 0,
            len(self.state.live),
            len(self.state.history),
            sum(1 for m in self.state.live.values() if m.lease_token is not None),
            self.waiters,
        )
