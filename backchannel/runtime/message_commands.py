"""Channel actor commands about messages: post, read, history, pause, retract.

Mixed into :class:`~backchannel.runtime.actor.ChannelActor`; each command
runs inside the actor's loop and returns ``(value, last seq)`` (0 when it
changed nothing). The ``read_*`` methods are the exception: they run in the
caller's task, in one synchronous step, and change nothing.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from backchannel.core import errors
from backchannel.core.channel import ChannelState
from backchannel.core.events import ChannelEvent
from backchannel.core.records import Archived, KeyRecord, Message

if TYPE_CHECKING:
    from backchannel.runtime.hub import Hub


class MessageCommands:
    """Post (now or later), page, history, pause and retract."""

    __slots__ = ()

    if TYPE_CHECKING:
        hub: Hub
        state: ChannelState
        channel_id: str

        def _commit(self, event: ChannelEvent) -> int: ...

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
