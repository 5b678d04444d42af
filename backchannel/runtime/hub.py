"""The Hub: channel directory, global registries and the actors' nursery.

The Hub owns the :class:`World`'s global part (keys, actors, aliases,
idempotency entries) and starts one :class:`ChannelActor` per channel.
Global changes are decided and applied synchronously, with no ``await``
between the check and the change, so they are atomic under trio's
cooperative scheduling; the caller then waits for durability like any
channel command.

It also keeps two indexes the routes need: message id → owning channel id
and lease token → message id. Actors maintain them as they apply events.

Every channel has an actor handle in :attr:`Hub.actors`; only busy ones
have a task. An idle channel is *passive* (runtime.passivation): its state
stays in memory and the first command, park or stream brings its task back.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any

import trio

from backchannel.config import Settings
from backchannel.core import errors
from backchannel.core.channel import ChannelState
from backchannel.core.errors import ApiError
from backchannel.core.events import (
    ChannelCreated,
    GlobalEvent,
    IdempotencyStored,
    KeyMinted,
    WebhookQueued,
    to_wire,
)
from backchannel.core.membership import decide_delete
from backchannel.core.records import BROADCAST, OPEN, KeyRecord, Message
from backchannel.core.world import World
from backchannel.runtime.actor import ChannelActor
from backchannel.runtime.clock import WallClock
from backchannel.runtime.durable import settle
from backchannel.runtime.journal import Journal, JournalFailed
from backchannel.runtime.passivation import Passivation

if TYPE_CHECKING:
    from backchannel.runtime.metrics import Metrics
    from backchannel.runtime.snapshotter import SnapshotReport
    from backchannel.runtime.webhooks import WebhookSender

log = logging.getLogger(__name__)
SESSION_PURGE_SECONDS = 3600.0  # the default of Settings.purge_interval_seconds

SANDBOX_ALIAS = "sandbox"
SANDBOX_BOT_LABEL = "sandbox-heartbeat-bot"
SANDBOX_DESCRIPTION = (
    "Public firehose — any agent can post and read here to test the Backchannel protocol."
)
HEARTBEAT_TEXT = (
    "heartbeat — the sandbox channel is alive. "
    "Post a message here to test the Backchannel protocol."
)


@dataclass(frozen=True, slots=True)
class HubStatistics:
    channels: int
    keys: int
    actors: int
    live_messages: int
    parked_waiters: int
    indexed_messages: int
    open_leases: int
    active_actors: int = 0  # channels whose actor has a task now
    passive_channels: int = 0  # channels kept without a task (runtime.passivation)


class Hub:
    """Directory of channel actors plus the global registries."""

    def __init__(
        self, settings: Settings, world: World, journal: Journal, clock: WallClock
    ) -> None:
        self.settings = settings
        self.world = world
        self.journal = journal
        self.clock = clock
        self.actors: dict[str, ChannelActor] = {}  # every channel, running or passive
        self.message_index: dict[str, str] = {}  # message id -> channel id
        self.passivation = Passivation()
        self.lease_index: dict[str, str] = {}
        self.parked = 0
        self.closing = False
        self._nursery: trio.Nursery | None = None
        self._background = trio.CancelScope()
        self._purging = trio.CancelScope()
        self._timers = trio.CancelScope()
        self._stopping = trio.Event()
        # the sender's notify(event, seq), set when the sender starts
        self.on_webhook: Callable[[WebhookQueued, int], None] | None = None
        # a Message as the API shows it (set by the http layer): webhook bodies
        # are built from it; without it no delivery is queued
        self.render_message: Callable[[Message, str, int], dict[str, Any]] | None = None
        self.webhooks_dropped = 0
        self.sender: WebhookSender | None = None
        self.metrics: Metrics | None = None
        self.last_snapshot: SnapshotReport | None = None
        self.keys_minted = 0
        self.started_at = clock.now()

    # -- lifetime -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Add a (passive) actor per channel, then serve until cancelled or :meth:`close`."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._restore_channels(list(self.world.channels.values()))
            nursery.start_soon(self._run_timers)
            if self.settings.sandbox_enabled:
                await self.ensure_sandbox()
                if self.settings.sandbox_heartbeat_seconds > 0:
                    nursery.start_soon(self._sandbox_heartbeat)
            nursery.start_soon(self._purge_sessions)
            task_status.started()
            # stay open for channels created later, until close(); then the
            # nursery waits for every actor to drain its inbox
            await self._stopping.wait()

    def spawn(self, fn: Any, *args: Any) -> None:
        """Run a background task in the hub's nursery (actors' helpers)."""
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    def close(self) -> None:
        """Wake every waiter and let every running actor finish its queued commands.

        A passive channel has nothing to wake or drain, and is not brought back.
        """
        self.closing = True
        self._stopping.set()
        for actor in list(self.passivation.running):
            actor.wake_all()
            actor.release_claimers()
            actor.close()
        self._background.cancel()
        self._purging.cancel()
        self._timers.cancel()

    async def _run_timers(self) -> None:
        with self._timers:
            await self.passivation.run()

    def _restore_channels(self, states: list[ChannelState]) -> None:
        """:meth:`_add_channel` for every channel of a restart, in bulk.

        A million channels restored packed (core.packed) add their message
        ids to the index in one ``update`` and their deadlines to the timer
        heap in one ``heapify``, not channel by channel. The cyclic GC is
        paused meanwhile, as during the load (it would walk every new handle
        several times over).
        """
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._restore_packed(states)
        finally:
            if enabled:
                gc.enable()

    def _restore_packed(self, states: list[ChannelState]) -> None:
        if self.settings.passive_after_seconds <= 0:
            for state in states:
                self._add_channel(state)
            return
        packed_ids: list[Sequence[str]] = []
        owners: list[Iterable[str]] = []
        timers: list[tuple[float, ChannelActor]] = []
        actors = self.actors
        trio_time = self.clock.trio_time
        for state in states:
            packed = state.packed
            if packed is None:
                self._add_channel(state)
                continue
            channel_id = state.config.id
            actors[channel_id] = actor = ChannelActor(self, state)
            packed_ids.append(packed.ids)
            owners.append(repeat(channel_id, len(packed.ids)))
            if packed.leases:
                self.lease_index.update(packed.leases)
            deadline = state.next_deadline()
            if deadline is not None:
                timers.append((trio_time(deadline), actor))
        self.message_index.update(
            zip(chain.from_iterable(packed_ids), chain.from_iterable(owners), strict=True)
        )
        self.passivation.arm_many(timers)

    def _add_channel(self, state: ChannelState) -> ChannelActor:
        """Index a channel's messages and give it a passive actor, armed for its
        next deadline (running at once when passivation is off)."""
        channel_id = state.config.id
        actor = ChannelActor(self, state)
        self.actors[channel_id] = actor
        index = self.message_index
        packed = state.packed
        if packed is not None:  # restored packed (core.packed): ids and leases stored apart
            index.update(zip(packed.ids, repeat(channel_id)))
            if packed.leases:
                self.lease_index.update(packed.leases)
        else:
            # in bulk: a restart of an older snapshot indexes millions
            index.update(dict.fromkeys(state.live, channel_id))
            for message in state.live.values():
                if message.claim is not None and message.claim.lease_token is not None:
                    self.lease_index[message.claim.lease_token] = message.id
            index.update(dict.fromkeys(state.archived, channel_id))
            index.update(dict.fromkeys(state.delayed, channel_id))  # claimable by id once visible
        if self.settings.passive_after_seconds > 0:
            self.passivation.arm(actor, self.clock.trio_time(state.next_deadline()))
        else:
            actor.activate()
        return actor

    # -- lookups --------------------------------------------------------------

    def channel_actor(self, identifier: str, key: KeyRecord | None) -> ChannelActor:
        """The actor of a channel by id, alias or (with a key) the caller's name."""
        return self.actors[self.world.resolve_channel(identifier, key).config.id]

    def message_actor(self, message_id: str) -> ChannelActor:
        actor = self.actors.get(self.message_index.get(message_id, ""))
        if actor is None:
            raise errors.message_not_found()
        return actor

    def lease_actor(self, token: str) -> tuple[ChannelActor, str]:
        message_id = self.lease_index.get(token)
        channel_id = self.message_index.get(message_id) if message_id else None
        actor = self.actors.get(channel_id) if channel_id else None
        if actor is None or message_id is None:
            raise ApiError(410, "lease_expired", "Lease not found or already expired")
        return actor, message_id

    # -- index maintenance (called by actors) ---------------------------------

    def forget_messages(self, messages: Iterable[Message]) -> None:
        for message in messages:
            self.message_index.pop(message.id, None)
            if message.lease_token is not None:
                self.lease_index.pop(message.lease_token, None)

    def forget_archived(self, state: ChannelState, before: int) -> None:
        self.forget_messages(e.message for e in state.history if e.archived_at < before)

    # -- global commands ------------------------------------------------------

    def commit_global(self, event: GlobalEvent) -> int:
        """Journal and apply one global event; returns its seq."""
        seq = self.journal.append_nowait(to_wire(event))
        self.world.apply_global(event, seq)
        return seq

    def queue_webhooks(self, events: list[WebhookQueued]) -> int:
        """Journal and apply deliveries, tell the sender; returns the last seq (or 0).

        Past ``webhook_max_pending`` pending deliveries a new one is dropped
        and logged: a receiver that is down cannot grow memory without bound.
        """
        seq = 0
        cap = self.settings.webhook_max_pending
        for event in events:
            if len(self.world.outbox.pending) >= cap:
                self.webhooks_dropped += 1
                log.warning("webhook outbox full (%d pending); dropped a %s", cap, event.event)
                continue
            seq = self.commit_global(event)
            if self.on_webhook is not None:
                self.on_webhook(event, seq)
        return seq

    async def commit(self, *events: GlobalEvent | None) -> None:
        """Journal and apply global events, then wait until they are durable.

        The caller decides the events in the same synchronous step (no
        ``await`` between deciding and this call), so check and change are
        atomic. None entries (nothing to change) are skipped.
        """
        seq = 0
        for event in events:
            if event is not None:
                seq = self.commit_global(event)
        await settle(self.journal, seq)

    async def mint_key(
        self, label: str, *, audit_type: str = "key.issue", remote_addr: str | None = None
    ) -> tuple[str, KeyRecord]:
        """Mint a key, with its ``key.issue`` (or ``audit_type``) security event."""
        now = self.clock.now()
        raw, event = self.world.decide_mint(label, now)
        audit = self.world.audit.decide(
            audit_type,
            actor_key_id=None,
            subject_key_id=event.key_id,
            remote_addr=remote_addr,
            detail={"agent_label": label},
            now=now,
        )
        await self.commit(event, audit)
        self.keys_minted += 1
        return raw, self.world.keys[event.key_id]

    async def revoke_key(self, key: KeyRecord, remote_addr: str | None = None) -> None:
        """Revoke ``key``, with its ``key.revoke`` security event.

        In the step that applies it, the key's open streams end (``revoked``)
        and its parked long-polls and claim-nexts wake to answer 401.
        """
        now = self.clock.now()
        audit = self.world.audit.decide(
            "key.revoke",
            actor_key_id=key.key_id,
            subject_key_id=key.key_id,
            remote_addr=remote_addr,
            detail={"self_revoked": True},
            now=now,
        )
        seq = self.commit_global(self.world.decide_revoke(key, now))
        seq = self.commit_global(audit)
        for actor in self.actors.values():  # same step as the change: nothing more reaches it
            actor.drop_key(key.key_id)
        await settle(self.journal, seq)

    async def create_actor(
        self, key: KeyRecord, name: str, description: str, metadata: dict[str, Any]
    ) -> str:
        event = self.world.decide_create_actor(key, name, description, metadata, self.clock.now())
        seq = self.commit_global(event)
        await settle(self.journal, seq)
        return event.actor_id

    async def create_channel(
        self, key: KeyRecord, spec: dict[str, Any], related: list[str]
    ) -> ChannelState:
        event = self.world.decide_create_channel(key, spec, related, self.clock.now())
        seq = self.commit_global(event)
        state = self.world.channels[event.channel_id]
        self._add_channel(state)
        await settle(self.journal, seq)
        return state

    async def delete_channel(self, key: KeyRecord, identifier: str) -> None:
        """Delete a channel the caller owns, with all its messages, claims and leases.

        Decided and applied in one synchronous step: the channel leaves the
        directory, its actor refuses whatever is still queued (404), and its
        parked long-polls are woken to answer 404 ``channel_not_found``.
        """
        state = self.world.resolve_channel(identifier, key)
        event = decide_delete(state.config, key, self.clock.now())
        seq = self.commit_global(event)
        actor = self.actors.pop(state.config.id, None)
        if actor is not None:
            actor.deleted = True
            self.passivation.forget(actor)
            packed = state.packed
            if packed is not None:  # no need to unpack what is thrown away
                for message_id in packed.ids:
                    self.message_index.pop(message_id, None)
                for token in packed.leases:
                    self.lease_index.pop(token, None)
            else:
                self.forget_messages(state.live.values())
                self.forget_messages(state.delayed.values())
                self.forget_messages(entry.message for entry in state.history)
            actor.wake_all()
            actor.release_claimers()
            actor.close()
        await settle(self.journal, seq)

    def record_idempotent(
        self, key_id: str, idempotency_key: str, method: str, path: str, status: int, body: bytes
    ) -> int:
        """Journal the reply to an idempotent request; returns its seq (not yet durable)."""
        event = IdempotencyStored(
            key_id, idempotency_key, method, path, status, body, self.clock.now()
        )
        return self.commit_global(event)

    # -- the sandbox ----------------------------------------------------------

    async def ensure_sandbox(self) -> None:
        """Create the open broadcast ``sandbox`` channel on first start (contract §3.14).

        Its limits are re-applied from the settings on every start.
        """
        world = self.world
        settings = self.settings
        channel_id = world.channel_aliases.get(SANDBOX_ALIAS)
        if channel_id is None:
            now = self.clock.now()
            bot = world.keys.get(world.active_labels.get(SANDBOX_BOT_LABEL, ""))
            if bot is None:
                _raw, minted = world.decide_mint(SANDBOX_BOT_LABEL, now)
                minted = KeyMinted(
                    minted.key_id,
                    minted.key_hash,
                    "backchannel",
                    SANDBOX_BOT_LABEL,
                    now,
                    minted.actor_id,
                )
                self.commit_global(minted)
                bot = world.keys[minted.key_id]
            spec = self.channel_defaults(OPEN)
            spec.update(
                name="sandbox",
                mode=BROADCAST,
                discoverable=True,
                description=SANDBOX_DESCRIPTION,
            )
            created = world.decide_create_channel(bot, spec, [], now)
            created = ChannelCreated(created.channel_id, created.config, [SANDBOX_ALIAS], now)
            self.commit_global(created)
            channel_id = created.channel_id
            self._add_channel(world.channels[channel_id])
        config = world.channels[channel_id].config
        config.ttl_seconds = settings.sandbox_ttl_seconds
        config.max_messages = settings.sandbox_max_messages
        config.max_writes_per_minute = settings.sandbox_max_writes_per_minute
        config.discoverable = True

    async def _purge_sessions(self) -> None:
        """Drop expired sessions and idempotent replies past their
        ``IDEMPOTENCY_TTL_SECONDS``, once per ``PURGE_INTERVAL_SECONDS`` (§3.19 cleanup;
        default ``SESSION_PURGE_SECONDS``).

        A stored reply lives at most its TTL plus one interval, so memory for
        replies is bounded by that much traffic. A session is dropped once it
        has been expired for at least one interval,
        so an expired session stays readable by id for a while (as upstream,
        where cleanup ran periodically). The purge is an event like any other,
        so replay drops them too; it is not waited on, nobody is answered by it.
        """
        interval = self.settings.purge_interval_seconds
        with self._purging:
            while True:
                await trio.sleep(interval)
                now = self.clock.now()
                grace = int(interval * 1_000_000)
                replay_us = self.settings.idempotency_ttl_seconds * 1_000_000
                for event in (
                    self.world.sessions.decide_purge(now - grace),
                    self.world.decide_idempotency_purge(now - replay_us),
                ):
                    if event is not None:
                        try:
                            self.commit_global(event)
                        except JournalFailed:
                            log.warning("purge skipped: the journal has failed")

    async def _sandbox_heartbeat(self) -> None:
        """Post a heartbeat when the sandbox has been silent for the interval."""
        interval = self.settings.sandbox_heartbeat_seconds
        with self._background:
            await self._heartbeat_loop(interval)

    async def _heartbeat_loop(self, interval: float) -> None:
        while not self.closing:
            channel_id = self.world.channel_aliases.get(SANDBOX_ALIAS)
            actor = self.actors.get(channel_id or "")
            if actor is not None and not actor.state.config.paused:
                state = actor.state
                newest = state.live.get(next(reversed(state.live))) if state.live else None
                if newest is None or newest.created_at <= self.clock.now() - int(interval * 1e6):
                    bot = self.world.keys.get(state.config.owner_key_id)
                    if bot is not None:
                        try:
                            await actor.call(
                                actor.cmd_post,
                                bot,
                                HEARTBEAT_TEXT,
                                {},
                                None,
                                SANDBOX_BOT_LABEL,
                                None,
                            )
                        except ApiError as exc:
                            log.info("sandbox heartbeat skipped: %s", exc.code)
            await trio.sleep(interval / 2)

    def channel_defaults(self, access: str) -> dict[str, Any]:
        """Field values of a new channel before the request's own fields."""
        settings = self.settings
        return {
            "access": access,
            "discoverable": settings.default_discoverable if access == OPEN else False,
            "description": "",
            "metadata_schema": {},
            "pinned_message": None,
            "ttl_seconds": settings.default_ttl_seconds,
            "retention_days": settings.default_retention_days,
            "max_messages": None,
            "max_writes_per_minute": None,
            "webhook_url": None,
            "webhook_secret": None,
            "max_deliveries": None,
            "dead_letter_channel": None,
        }

    def statistics(self) -> HubStatistics:
        world = self.world
        return HubStatistics(
            len(self.actors),
            len(world.keys),
            len(world.actors),
            sum(a.state.live_count for a in self.actors.values()),
            self.parked,
            len(self.message_index),
            len(self.lease_index),
            len(self.passivation.running),
            len(self.actors) - len(self.passivation.running),
        )
