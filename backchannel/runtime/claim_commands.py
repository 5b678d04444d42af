"""Channel actor commands about holding work: claims, leases, releases, acks.

Mixed into :class:`~backchannel.runtime.actor.ChannelActor`; each command
runs inside the actor's loop, decides with the core, commits its events
and returns ``(value, last seq)``. Parked claim-next callers
(runtime.claimers) are handed messages here too, and a release or lapsed
lease that reaches ``max_deliveries`` turns into a dead-letter move
(core.delivery rule 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from backchannel.core import delivery, errors
from backchannel.core.channel import ChannelState
from backchannel.core.delivery_events import ClaimReturned
from backchannel.core.errors import ApiError
from backchannel.core.events import (
    ActorCreated,
    ChannelEvent,
    LeaseExpired,
    MessageAcked,
    MessageReleased,
)
from backchannel.core.records import CLAIMABLE, KeyRecord, Message
from backchannel.runtime.claimers import Claimer

if TYPE_CHECKING:
    from backchannel.runtime.actor import ChannelActor
    from backchannel.runtime.hub import Hub


@dataclass(frozen=True, slots=True)
class ClaimResult:
    status: str
    message: Message
    lease_token: str | None
    lease_expires_at: int | None


class ClaimCommands:
    """Claim, claim-next, heartbeat, release, ack, give-back and redrive."""

    __slots__ = ()

    if TYPE_CHECKING:
        hub: Hub
        state: ChannelState
        channel_id: str
        deleted: bool
        claimers: dict[Claimer, None] | None

        def _commit(self, event: ChannelEvent) -> int: ...
        def _claimer_queue(self) -> dict[Claimer, None]: ...

    def _commit_actor(self, event: ActorCreated | None) -> int:
        return self.hub.commit_global(event) if event is not None else 0

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
            claimer.enqueue(self._claimer_queue(), actor)
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
        claimers = self.claimers
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
        for claimer in list(self.claimers or ()):
            claimer.withdraw()
            claimer.hand(None, 0)

    def cmd_return(self, message_id: str, actor_id: str, claimed_at: int) -> tuple[bool, int]:
        """Give back a claim whose claimer's client had gone (runtime.claimers)."""
        message = self.state.live.get(message_id)
        if message is None or message.claimed_by_id != actor_id or message.claimed_at != claimed_at:
            return False, 0
        return True, self._commit(ClaimReturned(self.channel_id, message_id, self.hub.clock.now()))

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

    # -- dead letters -----------------------------------------------------------

    def _claim_end(
        self, event: LeaseExpired | MessageReleased, message_id: str, reason: str
    ) -> ChannelEvent:
        """``event``, or the dead-letter move it turns into (core.delivery rule 2)."""
        message = self.state.live.get(message_id)
        if message is None or not delivery.dead_letter_due(self.state, message):
            return event
        target = self._other_actor(self.state.config.dead_letter_channel)
        if target is None:
            return event
        now = self.hub.clock.now()
        return delivery.decide_dead_letter(self.state, message, reason, target.state, now)

    def cmd_redrive(self, limit: int, to: str | None) -> tuple[int, int]:
        """Move up to ``limit`` dead-lettered messages to their source (or ``to``).

        Each move is one journaled event (core.delivery_events); a message
        whose target channel no longer exists stays here.
        """
        now = self.hub.clock.now()
        seq = moved = 0
        for message, source in delivery.redrivable(self.state, limit):
            target = self._other_actor(to or source)
            if target is None:
                continue
            seq = self._commit(delivery.decide_redrive(self.state, message, target.state, now))
            moved += 1
        return moved, seq

    def _other_actor(self, channel_id: str | None) -> ChannelActor | None:
        """The actor of another existing channel, or None."""
        target = self.hub.actors.get(channel_id or "")
        if target is None or target.deleted or target is self:
            return None
        return target
