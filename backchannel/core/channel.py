"""One channel's state: its messages, claims, leases, acks and history.

Theory of operation
-------------------
``ChannelState`` is a pure state machine owned by exactly one runtime actor.

* Methods named ``decide_*`` or ``check_*`` *decide*: they validate a command
  against the current state and ``now`` and either return the event(s) it
  produces or raise :class:`ApiError`. They never change anything.
* :meth:`apply` is the only method that *changes* state. Live traffic and
  recovery both go through it.
* :meth:`due_events` turns the passage of time into events (TTL expiry,
  lease expiry, history purge), so replay sees expiry exactly as it
  happened live. :meth:`next_deadline` says when the next one comes due.

Rules
-----
1. A message's ``seq`` is its position in the channel (1, 2, ...). Cursors
   encode it, so paging never skips or repeats a message. A delayed message
   takes its position when it becomes visible (:class:`MessagesVisible`),
   not when it is posted: a reader whose cursor has already passed later
   messages still sees it, exactly once, after the messages it follows.
2. Within a channel, ``expires_at`` grows with ``seq`` (TTL is fixed per
   channel, counts from visibility, and the runtime clock never goes
   backwards), so TTL expiry always takes a prefix of the live messages.
3. A message has at most one holder. A lease that lapses returns the message
   to the pool at that instant; an ack by the holder ends the lease.
4. While a :class:`Capture` is open, every mutation of a message that existed
   when it opened first saves the message's row (copy-on-write), so the
   capture reads the channel as it was at one instant, however many event
   loop steps it takes.
5. A channel restored from a snapshot may be *packed* (core.packed): its
   messages stay encoded until the first read of any of them, which
   unpacks them in the same step. Its deadline and counts are answered
   without unpacking.
"""

from __future__ import annotations

import heapq
import uuid
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from backchannel.core import errors
from backchannel.core.capture import Capture
from backchannel.core.delivery_events import (
    ClaimReturned,
    MessageDeadLettered,
    MessageRedriven,
    MessagesVisible,
)
from backchannel.core.errors import ApiError
from backchannel.core.events import (
    ChannelEvent,
    ChannelPaused,
    HistoryPurged,
    LeaseEnded,
    LeaseExpired,
    LeaseExtended,
    MessageAcked,
    MessageClaimed,
    MessagePosted,
    MessageReleased,
    MessageRetracted,
    MessagesExpired,
)
from backchannel.core.membership import Ledger, apply_access
from backchannel.core.packed import MESSAGE_ATTRIBUTES, Deadlines, PackedMessages, unpack_messages
from backchannel.core.records import (
    CLAIMABLE,
    EMPTY_METADATA,
    Archived,
    ChannelConfig,
    Claim,
    Message,
    message_row,
)
from backchannel.core.schema import validate_metadata
from backchannel.core.timefmt import US_PER_SECOND

WRITE_WINDOW_US = 60 * US_PER_SECOND
DAY_US = 86_400 * US_PER_SECOND
_NO_LEDGER = Ledger()  # read through ChannelState.ledger_view only: never changed


class ChannelState:
    """All of one channel, changed only by :meth:`apply`.

    Slots and lazily made ledger and write window: an idle channel is this
    object, its config and a few empty containers (runtime.passivation).
    """

    __slots__ = (
        "_capture",
        "_due",
        "_head",
        "_holes",
        "_leases",
        "_ledger",
        "_oldest_archived_at",
        "_order",
        "_packed",
        "_recent_posts",
        "_unclaimed",
        "applied_seq",
        "archived",
        "config",
        "delayed",
        "history",
        "last_seq",
        "live",
        "version",
    )

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self.live: dict[str, Message] = {}
        self._order: list[Message] = []  # seq order; entries may be ``removed``
        self._head = 0  # index of the first entry of _order not yet dropped
        self._holes = 0  # removed entries at or after _head
        self.last_seq = 0  # seq of the newest message ever posted
        self.history: list[Archived] = []  # sorted by message seq
        self.archived: dict[str, Archived] = {}
        self._oldest_archived_at: int | None = None
        self._leases: list[tuple[int, str, str]] = []  # heap of (expires, message id, token)
        self._recent_posts: deque[int] | None = None  # post times, kept only with a write cap
        self._unclaimed: list[Message] = []  # live and unheld, in seq order (work queue)
        self.applied_seq = 0  # global journal seq of the last applied event
        self._capture: Capture | None = None
        self.version = 0  # bumped by every apply: caches of derived views key on it
        self._ledger: Ledger | None = None  # made on first change (ledger)
        self.delayed: dict[str, Message] = {}  # posted, not visible yet (seq 0)
        self._due: list[tuple[int, int, str]] = []  # heap of (visible_at, created_at, id)
        self._packed: PackedMessages | None = None

    @classmethod
    def restore_packed(
        cls, config: ChannelConfig, packed: PackedMessages, applied_seq: int, last_seq: int
    ) -> ChannelState:
        """A channel whose messages stay in ``packed`` until first read (rule 5).

        None of ``core.packed.MESSAGE_ATTRIBUTES`` is set: reading one unpacks.
        """
        state = cls.__new__(cls)
        state.config = config
        state.applied_seq = applied_seq
        state.last_seq = last_seq
        state._recent_posts = None
        state._capture = None
        state.version = 0
        state._ledger = None
        state._packed = packed
        return state

    if not TYPE_CHECKING:  # mypy keeps checking every other attribute name

        def __getattr__(self, name: str) -> Any:
            """Only reached for an unset slot: a packed channel's messages (rule 5)."""
            if name in MESSAGE_ATTRIBUTES and self._packed is not None:
                self.unpack()
                return object.__getattribute__(self, name)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def packed(self) -> PackedMessages | None:
        """The messages still encoded, or None once unpacked (or never packed)."""
        return self._packed

    def unpack(self) -> None:
        """Decode a packed channel's messages now (a no-op if they are)."""
        packed = self._packed
        if packed is not None:
            unpack_messages(self, packed)
            self._packed = None  # after: a failed decode leaves the channel packed

    @property
    def live_count(self) -> int:
        """Live messages, without unpacking a packed channel."""
        packed = self._packed
        return packed.live_count if packed is not None else len(self.live)

    @property
    def claimed_count(self) -> int:
        """Live messages with a holder, without unpacking a packed channel."""
        packed = self._packed
        if packed is not None:
            return packed.claimed_count
        return sum(1 for m in self.live.values() if m.claim is not None)

    # -- reading ------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """Invitations, access requests and event log (core.membership), made on
        first use: most channels never have one, and an idle channel stays small."""
        if self._ledger is None:
            self._ledger = Ledger()
        return self._ledger

    @property
    def ledger_view(self) -> Ledger:
        """The ledger for reading only: a shared empty one while there is none."""
        return self._ledger if self._ledger is not None else _NO_LEDGER

    def iter_live(self, after_seq: int = 0) -> Iterator[Message]:
        """Live messages with ``seq > after_seq``, oldest first."""
        order = self._order
        start = bisect_right(order, after_seq, lo=self._head, key=_seq_of)
        for index in range(start, len(order)):
            message = order[index]
            if not message.removed:
                yield message

    def live_through(self, seq: int) -> list[Message]:
        """Live messages with ``seq <= seq``, oldest first (a TTL-expiry prefix)."""
        out: list[Message] = []
        for message in self.iter_live():
            if message.seq > seq:
                break
            out.append(message)
        return out

    def first_seq_after_time(self, at: int) -> int:
        """The ``seq`` cursor equivalent to "created strictly after ``at``"."""
        order = self._order
        index = bisect_right(order, at, lo=self._head, key=_shown_at)
        return order[index - 1].seq if index > self._head else 0

    def page(
        self,
        after_seq: int,
        limit: int,
        status: str | None = None,
        expiring_before: int | None = None,
    ) -> list[Message]:
        """Up to ``limit`` live messages after ``after_seq`` matching the filters.

        ``status="unclaimed"`` reads the unclaimed index, so finding work costs
        the same however many held or acknowledged messages precede it.
        """
        out: list[Message] = []
        if status == "unclaimed":
            pool = self._unclaimed
            for index in range(bisect_right(pool, after_seq, key=_seq_of), len(pool)):
                message = pool[index]
                if expiring_before is not None and message.expires_at >= expiring_before:
                    continue
                out.append(message)
                if len(out) >= limit:
                    break
            return out
        for message in self.iter_live(after_seq):
            if status == "claimed" and message.claim is None:
                continue
            if expiring_before is not None and message.expires_at >= expiring_before:
                continue
            out.append(message)
            if len(out) >= limit:
                break
        return out

    def history_page(
        self, before_seq: int | None, limit: int, before_time: int | None = None
    ) -> list[Archived]:
        """Archived messages newest first, older than ``before_seq`` / ``before_time``."""
        history = self.history
        end = len(history)
        if before_seq is not None:
            end = _bisect_archive(history, before_seq)
        elif before_time is not None:
            end = bisect_left(history, before_time, key=_archived_created_of)
        return history[max(0, end - limit) : end][::-1]

    # -- time ---------------------------------------------------------------

    def deadlines(self) -> Deadlines:
        """What :meth:`next_deadline` is made of; a packed channel's as stored."""
        if self._packed is not None:
            return self._packed.deadlines
        first = self._first_live()
        return (
            None if first is None else first.expires_at,
            self._top_lease(),
            self._oldest_archived_at,
            self._due[0][0] if self._due else None,
        )

    def next_deadline(self) -> int | None:
        """The earliest time at which :meth:`due_events` will return something."""
        deadline, lease, oldest_archived_at, due = self.deadlines()
        if lease is not None and (deadline is None or lease < deadline):
            deadline = lease
        if oldest_archived_at is not None:
            purge = oldest_archived_at + self.config.retention_days * DAY_US
            if deadline is None or purge < deadline:
                deadline = purge
        if due is not None and (deadline is None or due < deadline):
            deadline = due
        return deadline

    def due_events(self, now: int) -> list[ChannelEvent]:
        """Events for every TTL, lease and retention deadline at or before ``now``."""
        cid = self.config.id
        events: list[ChannelEvent] = []
        through = 0
        for message in self.iter_live():
            if message.expires_at > now:
                break
            through = message.seq
        if through:
            events.append(MessagesExpired(cid, through, now))
        top = self._top_lease()
        leases = sorted(self._leases) if top is not None and top <= now else []
        lapsed: set[str] = set()  # a heartbeat to the same deadline leaves a twin entry
        for expires, message_id, token in leases:
            if expires > now:
                break
            held = self.live.get(message_id)
            if held is None or held.seq <= through or held.lease_token != token:
                continue
            if held.lease_expires_at == expires and message_id not in lapsed:
                lapsed.add(message_id)
                events.append(LeaseExpired(cid, message_id, token, now))
        retention = self.config.retention_days * DAY_US
        if self._oldest_archived_at is not None and self._oldest_archived_at + retention <= now:
            events.append(HistoryPurged(cid, now - retention + 1))
        if self._due and self._due[0][0] <= now:
            due = [entry[2] for entry in sorted(self._due) if entry[0] <= now]
            events.append(MessagesVisible(cid, due, now))
        return events

    # -- deciding -------------------------------------------------------------

    def decide_post(
        self,
        *,
        content: str,
        metadata: dict[str, Any],
        key_id: str,
        now: int,
        actor: tuple[str, str] | None,
        actor_label: str | None,
        mentions: list[list[str]],
        delay_us: int = 0,
    ) -> MessagePosted:
        """Validate a post against pause, throttle and schema; return its event.

        With ``delay_us`` the message stays hidden until ``now + delay_us``
        and its TTL counts from then.
        """
        config = self.config
        if config.paused:
            raise ApiError(503, "channel_paused", "Channel is paused", retry_after=30)
        limit = config.max_writes_per_minute
        if limit is not None and self._writes_since(now - WRITE_WINDOW_US) >= limit:
            raise ApiError(
                429,
                "channel_write_rate_exceeded",
                f"Channel accepts at most {limit} messages per minute",
                retry_after=60,
            )
        if config.metadata_schema:
            violations = validate_metadata(config.metadata_schema, metadata)
            if violations:
                raise ApiError(
                    422,
                    "metadata_validation_failed",
                    "Message metadata failed channel schema validation",
                    violations=violations,
                )
        visible_at = now + delay_us if delay_us > 0 else None
        return MessagePosted(
            channel_id=config.id,
            message_id=str(uuid.uuid4()),
            content=content,
            metadata=metadata,
            created_at=now,
            expires_at=(visible_at or now) + config.ttl_seconds * US_PER_SECOND,
            author_key_id=key_id,
            actor_id=actor[0] if actor else None,
            actor_name=actor[1] if actor else None,
            actor_label=actor_label,
            mentions=mentions,
            visible_at=visible_at,
        )

    def decide_pause(self, paused: bool, now: int) -> ChannelPaused:
        """The operator's kill switch (contract §2.10); always bumps ``updated_at``."""
        return ChannelPaused(self.config.id, paused, now)

    def check_message(self, message_id: str, key_id: str, verb: str, *, claim: bool) -> Message:
        """Find a live message for claim/release/ack/retract, in contract order.

        Raises: 404 ``message_not_found``, 410 ``message_expired``,
        409 ``channel_not_claimable`` (when ``claim``), 403 ``channel_access_denied``.
        """
        message = self.live.get(message_id)
        if message is None:
            archived = self.archived.get(message_id)
            if archived is not None and archived.reason == "expired" and verb != "retract":
                raise ApiError(410, "message_expired", f"Expired messages can no longer be {verb}")
            raise errors.message_not_found()
        if claim and self.config.mode != CLAIMABLE:
            raise errors.not_claimable()
        if not self.config.can_access(key_id):
            raise errors.access_denied()
        return message

    def decide_claim(
        self,
        message: Message,
        actor: tuple[str, str],
        key_id: str,
        now: int,
        lease_us: int | None,
    ) -> tuple[str, MessageClaimed | LeaseExtended | None]:
        """Decide a claim (``lease_us`` None) or a lease claim.

        Returns ``(status, event)``: status is ``claimed``, ``already_claimed``
        or ``already_acknowledged``; event is None when nothing changes.
        Raises 409 ``already_claimed`` when another actor holds the message.
        """
        cid = self.config.id
        actor_id, actor_name = actor
        holder = message.claimed_by_id
        if holder is None:
            token = str(uuid.uuid4()) if lease_us is not None else None
            expires = now + lease_us if lease_us is not None else None
            event = MessageClaimed(
                cid, message.id, actor_id, actor_name, key_id, now, token, expires
            )
            return "claimed", event
        if holder != actor_id:
            raise errors.already_claimed()
        if lease_us is None:
            return ("already_acknowledged" if message.acks else "already_claimed"), None
        if message.acked_by(actor_id):
            raise errors.already_claimed()
        if message.lease_token is not None:
            return "claimed", LeaseExtended(cid, message.id, message.lease_token, now + lease_us)
        token = str(uuid.uuid4())
        return "claimed", MessageClaimed(
            cid, message.id, actor_id, actor_name, key_id, now, token, now + lease_us
        )

    def decide_heartbeat(
        self, token: str, message_id: str, key_id: str, now: int, lease_us: int
    ) -> LeaseExtended:
        """Extend a live lease held by the caller's key."""
        message = self.live.get(message_id)
        if message is None or message.lease_token != token:
            raise ApiError(410, "lease_expired", "Lease not found or already expired")
        if message.lease_expires_at is None or message.lease_expires_at <= now:
            raise ApiError(410, "lease_expired", "Lease has already expired")
        if message.claimed_by_key_id != key_id:
            raise ApiError(409, "lease_not_held", "This lease is held by another key")
        return LeaseExtended(self.config.id, message_id, token, now + lease_us)

    def decide_release(
        self, message: Message, actor_id: str, key_id: str, now: int
    ) -> MessageReleased:
        if message.claimed_by_id is None:
            raise ApiError(409, "not_claimed", "Message is not claimed")
        if message.claimed_by_id != actor_id:
            raise ApiError(403, "forbidden", "Only the claiming actor can release this message")
        if message.claimed_by_key_id != key_id:
            raise ApiError(409, "lease_not_held", "This claim is held by another key")
        return MessageReleased(self.config.id, message.id, now)

    def decide_ack(
        self, message: Message, actor: tuple[str, str], now: int
    ) -> MessageAcked | LeaseEnded | None:
        """One ack per (message, actor); an ack by the holder ends its lease.

        Returns None when this actor already acked and nothing changes; a
        repeated ack by a holder whose lease still runs ends the lease.
        """
        if message.acked_by(actor[0]):
            if message.claimed_by_id == actor[0] and message.lease_token is not None:
                return LeaseEnded(self.config.id, message.id, now)
            return None
        ends_lease = message.claimed_by_id == actor[0] and message.lease_token is not None
        return MessageAcked(self.config.id, message.id, actor[0], actor[1], now, ends_lease)

    def decide_retract(self, message: Message, key_id: str, now: int) -> MessageRetracted:
        if message.claimed_by_id is not None:
            raise ApiError(409, "message_claimed", "Claimed messages cannot be retracted")
        if key_id not in (message.author_key_id, self.config.owner_key_id):
            raise ApiError(
                403, "forbidden", "Only the message author or the channel owner can retract it"
            )
        return MessageRetracted(self.config.id, message.id, now)

    # -- changing -------------------------------------------------------------

    def apply(self, event: ChannelEvent, seq: int = 0) -> None:
        """Change the state by one event. ``seq`` is its global journal seq."""
        if seq:
            self.applied_seq = seq
        self.version += 1
        match event:
            case MessagePosted():
                self._apply_posted(event)
            case MessageClaimed():
                message = self._touch(event.message_id)
                if message.claim is None:
                    self._leave_pool(message)
                    message.deliveries += 1
                message.claim = Claim(
                    event.actor_id,
                    event.actor_name,
                    event.key_id,
                    event.at,
                    event.lease_token,
                    event.lease_expires_at,
                )
                if event.lease_token is not None and event.lease_expires_at is not None:
                    heapq.heappush(
                        self._leases, (event.lease_expires_at, message.id, event.lease_token)
                    )
            case LeaseExtended():
                message = self._touch(event.message_id)
                if message.claim is not None:
                    message.claim.lease_expires_at = event.lease_expires_at
                heapq.heappush(
                    self._leases, (event.lease_expires_at, message.id, event.lease_token)
                )
            case LeaseExpired() | MessageReleased():
                message = self._touch(event.message_id)
                if message.claimed_by_id is not None:
                    _clear_claim(message)
                    insort(self._unclaimed, message, key=_seq_of)
            case MessageAcked():
                message = self._touch(event.message_id)
                message.acks = (*message.acks, [event.actor_id, event.actor_name, event.at])
                if event.ends_lease:
                    _end_lease(message)
            case LeaseEnded():
                _end_lease(self._touch(event.message_id))
            case MessageRetracted():
                self._archive(self._touch(event.message_id), event.at, "retracted")
            case MessagesExpired():
                for message in self.live_through(event.through_seq):
                    self._archive(message, event.at, "expired")
            case HistoryPurged():
                self._purge_history(event.before)
            case ChannelPaused():
                self.config.paused = self.config.operator_paused = event.paused
                self.config.updated_at = event.at
            case MessagesVisible():
                self._apply_visible(event)
            case MessageDeadLettered() | MessageRedriven():
                message = self._touch(event.message_id)
                if message.claimed_by_id is not None:
                    _clear_claim(message)
                reason = "dead_lettered" if isinstance(event, MessageDeadLettered) else "redriven"
                self._archive(message, event.at, reason)
            case ClaimReturned():
                message = self._touch(event.message_id)
                if message.claimed_by_id is not None:
                    _clear_claim(message)
                    message.deliveries -= 1
                    insort(self._unclaimed, message, key=_seq_of)
            case _:
                apply_access(self, event)

    def _apply_posted(self, event: MessagePosted) -> None:
        message = Message(
            id=event.message_id,
            seq=0,
            content=event.content,
            metadata=event.metadata or EMPTY_METADATA,
            created_at=event.created_at,
            expires_at=event.expires_at,
            author_key_id=event.author_key_id,
            actor_id=event.actor_id,
            actor_name=event.actor_name,
            actor_label=event.actor_label,
            mentions=tuple(event.mentions) if event.mentions else (),
            visible_at=event.visible_at,
        )
        if self.config.max_writes_per_minute is not None:
            recent = self._recent_posts
            if recent is None:
                recent = self._recent_posts = deque()
            recent.append(event.created_at)
            cutoff = event.created_at - WRITE_WINDOW_US
            while recent and recent[0] <= cutoff:
                recent.popleft()
        if event.visible_at is not None:
            self.delayed[message.id] = message
            heapq.heappush(self._due, (event.visible_at, event.created_at, message.id))
            return
        self._enter(message, event.created_at)

    def _apply_visible(self, event: MessagesVisible) -> None:
        """Delayed messages take the next seqs; visible (and TTL) from ``event.at``.

        The actor applies this before any command of the step in which it
        comes due, so no message posted after ``visible_at`` precedes it,
        and moving ``visible_at`` to ``event.at`` keeps rule 2 exact.
        """
        for message_id in event.message_ids:
            message = self.delayed.pop(message_id)
            assert message.visible_at is not None
            message.expires_at += event.at - message.visible_at
            message.visible_at = event.at
            self._enter(message, event.at)
        due = self._due
        while due and due[0][2] not in self.delayed:
            heapq.heappop(due)

    def _enter(self, message: Message, at: int) -> None:
        """``message`` becomes visible: the next seq, the live list, the work pool."""
        self.last_seq += 1
        message.seq = self.last_seq
        self.live[message.id] = message
        self._order.append(message)
        self._unclaimed.append(message)
        cap = self.config.max_messages
        if cap is not None:
            # the oldest live messages leave for history (unlike upstream, which
            # deleted them unarchived: §6 C16)
            while len(self.live) > cap:
                oldest = self._first_live()
                assert oldest is not None
                self._archive(oldest, at, "trimmed")

    def _archive(self, message: Message, at: int, reason: str) -> None:
        self._drop(message)
        entry = Archived(message, at, reason)
        history = self.history
        if not history or history[-1].message.seq < message.seq:
            history.append(entry)
        else:
            history.insert(_bisect_archive(history, message.seq), entry)
        self.archived[message.id] = entry
        if self._oldest_archived_at is None or at < self._oldest_archived_at:
            self._oldest_archived_at = at

    def _drop(self, message: Message) -> None:
        self._touch(message.id)
        if message.claim is None:
            self._leave_pool(message)
        del self.live[message.id]
        message.removed = True
        self._holes += 1
        order = self._order
        while self._head < len(order) and order[self._head].removed:
            self._head += 1
            self._holes -= 1
        if self._head > 1024 and self._head * 2 > len(order):
            del order[: self._head]
            self._head = 0
        if self._holes > 1024 and self._holes * 2 > len(order) - self._head:
            self._order = [m for m in order[self._head :] if not m.removed]
            self._head = 0
            self._holes = 0

    def _purge_history(self, before: int) -> None:
        keep: list[Archived] = []
        for entry in self.history:
            if entry.archived_at < before:
                del self.archived[entry.message.id]
            else:
                keep.append(entry)
        self.history = keep
        self._oldest_archived_at = min((e.archived_at for e in keep), default=None)

    def _leave_pool(self, message: Message) -> None:
        pool = self._unclaimed
        index = bisect_left(pool, message.seq, key=_seq_of)
        if index < len(pool) and pool[index] is message:
            del pool[index]

    def rebuild_indexes(self) -> None:
        """Recompute derived structures after records were loaded directly."""
        present = [m for m in self._order[self._head :] if not m.removed]
        self._unclaimed = [m for m in present if m.claim is None]
        leases = [
            (m.claim.lease_expires_at, m.id, m.claim.lease_token)
            for m in present
            if m.claim is not None
            and m.claim.lease_token is not None
            and m.claim.lease_expires_at is not None
        ]
        heapq.heapify(leases)
        self._leases = leases
        self._due = [(m.visible_at or 0, m.created_at, m.id) for m in self.delayed.values()]
        heapq.heapify(self._due)
        self._oldest_archived_at = min((e.archived_at for e in self.history), default=None)

    # -- capture ------------------------------------------------------------

    def begin_capture(self) -> Capture:
        """Open a consistent view of this channel as of now (see rule 4)."""
        if self._capture is not None:
            raise RuntimeError("a capture is already open on this channel")
        self._capture = Capture(self)
        return self._capture

    def end_capture(self) -> None:
        self._capture = None

    def _touch(self, message_id: str) -> Message:
        """The live message about to change; saves its row for an open capture."""
        message = self.live[message_id]
        capture = self._capture
        if capture is not None and message.seq <= capture.last_seq:
            saved = capture.saved
            if message_id not in saved:
                saved[message_id] = message_row(message)
        return message

    # -- helpers --------------------------------------------------------------

    def _first_live(self) -> Message | None:
        order = self._order
        for index in range(self._head, len(order)):
            if not order[index].removed:
                return order[index]
        return None

    def _top_lease(self) -> int | None:
        leases = self._leases
        while leases:
            expires, message_id, token = leases[0]
            message = self.live.get(message_id)
            if (
                message is not None
                and message.lease_token == token
                and message.lease_expires_at == expires
            ):
                return expires
            heapq.heappop(leases)
        return None

    def _writes_since(self, since: int) -> int:
        """Posts after ``since`` (reads only: deciding never changes state)."""
        recent = self._recent_posts
        return len(recent) - bisect_right(recent, since) if recent is not None else 0


def _clear_claim(message: Message) -> None:
    message.claim = None


def _end_lease(message: Message) -> None:
    """The holder keeps the message; its lease (if any) is over."""
    claim = message.claim
    if claim is not None:
        claim.lease_token = None
        claim.lease_expires_at = None


def _seq_of(message: Message) -> int:
    return message.seq


def _shown_at(message: Message) -> int:
    """When the message became visible (the order of ``_order``, rule 1)."""
    return message.visible_at if message.visible_at is not None else message.created_at


def _archived_created_of(entry: Archived) -> int:
    return entry.message.created_at


def _bisect_archive(history: list[Archived], seq: int) -> int:
    """Index of the first archived entry whose message seq is >= ``seq``."""
    lo, hi = 0, len(history)
    while lo < hi:
        mid = (lo + hi) // 2
        if history[mid].message.seq < seq:
            lo = mid + 1
        else:
            hi = mid
    return lo
