"""Everything the server knows: keys, actors, the channel directory, channels.

Theory of operation
-------------------
``World`` owns the global registries and, by id, each channel's
:class:`ChannelState`. Like the channel state it *decides* in ``decide_*``
and ``resolve_*`` methods (which never change anything) and *changes* only
in :meth:`apply_global` (global events) and ``ChannelState.apply`` (channel
events). :meth:`apply` routes any event to the right place; recovery uses
it, and the runtime uses the two halves from the task that owns each part.

Identity (contract §3.2): a key's ``owner_id`` is the label it was minted
with; labels are unique among *active* keys. Actors belong to an owner id;
channels belong to the creating key.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import fields
from typing import Any

from backchannel.core import errors
from backchannel.core.audit import AuditLog
from backchannel.core.channel import ChannelState
from backchannel.core.delivery_events import MOVE_EVENTS, MessageDeadLettered, MessageRedriven
from backchannel.core.errors import ApiError
from backchannel.core.events import (
    ACCESS_EVENTS,
    ActorAliased,
    ActorCreated,
    ActorWebhookDeleted,
    ActorWebhookSet,
    ChannelAliasAdded,
    ChannelCreated,
    ChannelDeleted,
    ChannelEvent,
    ChannelUpdated,
    Event,
    GlobalEvent,
    IdempotencyPurged,
    IdempotencyStored,
    InvitationCreated,
    KeyMinted,
    KeyRevoked,
    MintingToggled,
    ScopesSet,
    SecurityRecorded,
    SessionCreated,
    SessionDeleted,
    SessionsPurged,
    SessionUpdated,
    WebhookAttempted,
    WebhookQueued,
    channel_of,
    from_wire,
)
from backchannel.core.outbox import Outbox
from backchannel.core.records import (
    OPEN,
    Actor,
    ChannelConfig,
    IdempotencyEntry,
    KeyRecord,
    Member,
)
from backchannel.core.sessions import SessionBook
from backchannel.core.webhooks import WebhookBook

CONFIG_FIELDS = tuple(
    f.name
    for f in fields(ChannelConfig)
    if f.name not in ("members", "aliases", "paused", "operator_paused")
)


def hash_key(raw: str) -> str:
    """SHA-256 hex digest of the whole raw key, the only form stored."""
    return hashlib.sha256(raw.encode()).hexdigest()


class World:
    """Global registries plus every channel's state."""

    def __init__(self) -> None:
        self.keys: dict[str, KeyRecord] = {}
        self.active_labels: dict[str, str] = {}
        self.actors: dict[str, Actor] = {}
        self.actor_aliases: dict[str, str] = {}
        self.actors_by_name: dict[tuple[str, str], list[str]] = {}
        self.channels: dict[str, ChannelState] = {}
        self.channel_aliases: dict[str, str] = {}
        # (owner id, name) -> channel id, or ids oldest first when the name repeats:
        # a bare string for the common unique name keeps an idle channel small
        self.channels_by_name: dict[tuple[str, str], str | list[str]] = {}
        self.idempotency: dict[tuple[str, str], IdempotencyEntry] = {}
        self.applied_seq = 0
        self.invitations: dict[str, str] = {}  # invitation id -> channel id
        self.public_minting: bool | None = None  # None: the setting decides
        self.sessions = SessionBook()
        self.webhooks = WebhookBook()
        self.audit = AuditLog()
        self.outbox = Outbox()

    # -- keys -----------------------------------------------------------------

    def decide_mint(self, label: str, now: int) -> tuple[str, KeyMinted]:
        """Mint a key for ``label``. Returns the raw key (shown once) and the event."""
        if label in self.active_labels:
            raise ApiError(409, "label_in_use", f"Label '{label}' is in use by an active key")
        key_id = "bck_" + secrets.token_urlsafe(9)
        while key_id in self.keys:
            key_id = "bck_" + secrets.token_urlsafe(9)
        raw = f"{key_id}.{secrets.token_urlsafe(24)}"
        event = KeyMinted(key_id, hash_key(raw), label, label, now, str(uuid.uuid4()))
        return raw, event

    def authenticate(self, raw: str | None) -> KeyRecord:
        """The active key for a raw ``X-API-Key`` value, or 401 ``unauthorized``."""
        if not raw:
            raise ApiError(401, "unauthorized", "Missing X-API-Key header")
        key_id, dot, secret = raw.partition(".")
        if not dot or not key_id or not secret:
            raise ApiError(401, "unauthorized", "Malformed API key")
        record = self.keys.get(key_id)
        if record is None or not secrets.compare_digest(record.key_hash, hash_key(raw)):
            raise ApiError(401, "unauthorized", "Invalid API key")
        if not record.active:
            raise errors.inactive_key()
        return record

    def decide_revoke(self, key: KeyRecord, now: int) -> KeyRevoked:
        return KeyRevoked(key.key_id, now)

    def decide_minting(self, enabled: bool, now: int) -> MintingToggled:
        """Open or close public minting; the choice outlives restarts and settings."""
        return MintingToggled(enabled, now)

    # -- actors ---------------------------------------------------------------

    def decide_create_actor(
        self, key: KeyRecord, name: str, description: str, metadata: dict[str, Any], now: int
    ) -> ActorCreated:
        return ActorCreated(
            str(uuid.uuid4()), key.owner_id, key.key_id, name, description, metadata, now
        )

    def find_actor(self, identifier: str) -> Actor | None:
        """An actor by id, then by alias (never by name)."""
        actor = self.actors.get(identifier)
        if actor is None:
            actor_id = self.actor_aliases.get(identifier)
            actor = self.actors.get(actor_id) if actor_id else None
        return actor

    def decide_alias_actor(
        self, key: KeyRecord, identifier: str, alias: str, now: int
    ) -> ActorAliased:
        """Alias an actor the caller's owner owns (contract §0.7 fixes §6 S2).

        Raises: 404 ``actor_not_found``, 403 ``actor_forbidden``, 409
        ``alias_conflict`` (the actor-alias namespace is global).
        """
        actor = self.find_actor(identifier)
        if actor is None:
            raise errors.actor_not_found(identifier)
        if actor.owner_id != key.owner_id:
            raise errors.actor_forbidden()
        if alias in self.actor_aliases:
            raise ApiError(409, "alias_conflict", f"Alias '{alias}' already exists")
        return ActorAliased(actor.id, alias, now)

    def resolve_posting_actor(self, key: KeyRecord, identifier: str) -> Actor:
        """Actor named in a post: id or alias, owned by the caller's owner."""
        actor = self.find_actor(identifier)
        if actor is None:
            raise errors.actor_not_found(identifier)
        if actor.owner_id != key.owner_id:
            raise errors.actor_forbidden()
        return actor

    def resolve_acting_actor(
        self, key: KeyRecord, value: str | None, now: int
    ) -> tuple[tuple[str, str], ActorCreated | None]:
        """Actor for claim/release/ack (contract §3.7), possibly to be created.

        Resolution: id → alias → the caller's oldest actor of that name →
        a new actor of that name. Empty means the key's label. Returns the
        ``(id, name)`` and, when the actor does not exist yet, the event that
        creates it (the caller applies it only if its command succeeds).
        Raises 403 ``actor_forbidden`` for another owner's actor.
        """
        name = (value or "").strip() or key.label or key.owner_id or "default"
        actor = self.find_actor(name)
        if actor is not None:
            if actor.owner_id != key.owner_id:
                raise errors.actor_forbidden()
            return (actor.id, actor.name), None
        ids = self.actors_by_name.get((key.owner_id, name))
        if ids:
            return (ids[0], name), None
        event = self.decide_create_actor(key, name, "", {}, now)
        return (event.actor_id, name), event

    def resolve_mentions(self, entries: list[str], channel: ChannelState) -> list[list[str]]:
        """Eligible mentioned actors ``[[id, name], ...]``; unknown ones drop out."""
        config = channel.config
        seen: set[str] = set()
        out: list[list[str]] = []
        for entry in entries:
            actor = self.find_actor(entry)
            if actor is None or actor.id in seen:
                continue
            if config.access != OPEN and not config.can_access(actor.created_by_key_id):
                continue
            seen.add(actor.id)
            out.append([actor.id, actor.name])
        return out

    # -- channels -------------------------------------------------------------

    def resolve_channel(self, identifier: str, key: KeyRecord | None) -> ChannelState:
        """Channel by id, then alias, then (with a key) the caller's newest of that name.

        With a key, also checks access: 403 ``channel_access_denied``.
        """
        channel = self.channels.get(identifier)
        if channel is None:
            channel_id = self.channel_aliases.get(identifier)
            if channel_id is not None:
                channel = self.channels.get(channel_id)
        if channel is None and key is not None:
            named = self.channel_named(key.owner_id, identifier)
            if named is not None:
                channel = self.channels[named]
        if channel is None:
            raise errors.channel_not_found(identifier)
        if key is not None and not channel.config.can_access(key.key_id):
            raise errors.access_denied()
        return channel

    def decide_create_channel(
        self, key: KeyRecord, spec: dict[str, Any], related: list[str], now: int
    ) -> ChannelCreated:
        """Create a channel from validated fields (``spec``) and related identifiers."""
        channel_id = str(uuid.uuid4())
        links = self.resolve_links(related, key, channel_id)
        config = dict(spec)
        config.update(
            id=channel_id,
            owner_id=key.owner_id,
            owner_key_id=key.key_id,
            created_at=now,
            updated_at=now,
            related_channels=links,
        )
        return ChannelCreated(channel_id, config, [], now)

    def resolve_links(self, related: list[str], key: KeyRecord, own_id: str) -> list[str]:
        """Channel ids for ``related_channels`` identifiers (id or alias), in order.

        Unknown → 404 ``channel_not_found``; a restricted target the caller
        cannot read → 403 ``channel_access_denied`` (contract §6 S6: a link
        must never show such a channel's name to anyone). A link to the
        channel itself and repeats are skipped.
        """
        links: list[str] = []
        for identifier in related:
            target = self.resolve_channel(identifier, None)
            if not target.config.can_access(key.key_id):
                raise errors.access_denied()
            target_id = target.config.id
            if target_id != own_id and target_id not in links:
                links.append(target_id)
        return links

    def discoverable(self) -> list[ChannelState]:
        """Discoverable channels, newest first."""
        found = [c for c in self.channels.values() if c.config.discoverable]
        found.reverse()
        return found

    # -- idempotency ----------------------------------------------------------

    def decide_idempotency_purge(self, before: int) -> IdempotencyPurged | None:
        """Drop stored replies older than ``before`` (their 24 h are over), if any."""
        if any(entry.stored_at < before for entry in self.idempotency.values()):
            return IdempotencyPurged(before)
        return None

    def idempotent_entry(
        self, key_id: str, idempotency_key: str, now: int, ttl: int
    ) -> IdempotencyEntry | None:
        entry = self.idempotency.get((key_id, idempotency_key))
        if entry is None or entry.stored_at + ttl <= now:
            return None
        return entry

    # -- changing -------------------------------------------------------------

    def apply(self, event: Event, seq: int = 0) -> None:
        """Apply any event, routing channel events to their channel."""
        if isinstance(event, MOVE_EVENTS):
            self.apply_move(event, seq)
            return
        channel_id = channel_of(event)
        if channel_id is not None:
            channel_event: ChannelEvent = event  # type: ignore[assignment]
            channel = self.channels[channel_id]
            if isinstance(channel_event, ACCESS_EVENTS):
                old_name = channel.config.name
                channel.apply(channel_event, seq)
                self._reindex(channel, channel_event, old_name)
            else:
                channel.apply(channel_event, seq)
        else:
            global_event: GlobalEvent = event  # type: ignore[assignment]
            self.apply_global(global_event, seq)

    def apply_move(self, event: MessageDeadLettered | MessageRedriven, seq: int = 0) -> bool:
        """Apply both halves of a move between channels (core.delivery_events).

        Each half is applied only to a channel that exists and whose state
        does not already cover ``seq`` (a snapshot may hold one channel
        after the move and the other before it). Returns whether anything
        was applied.
        """
        applied = False
        source = self.channels.get(event.channel_id)
        if source is not None and (not seq or seq > source.applied_seq):
            source.apply(event, seq)
            applied = True
        target = self.channels.get(event.target_channel_id)
        if target is not None and (not seq or seq > target.applied_seq):
            arrival: ChannelEvent = from_wire(event.arrival)  # type: ignore[assignment]
            target.apply(arrival, seq)
            applied = True
        return applied

    def apply_global(self, event: GlobalEvent, seq: int = 0) -> None:
        """Change the registries by one global event."""
        if seq:
            self.applied_seq = seq
        match event:
            case KeyMinted():
                self.keys[event.key_id] = KeyRecord(
                    event.key_id, event.key_hash, event.owner_id, event.label, event.at
                )
                self.active_labels[event.label] = event.key_id
                self._add_actor(
                    Actor(
                        event.actor_id,
                        event.owner_id,
                        event.key_id,
                        event.label,
                        "",
                        {},
                        event.at,
                        event.at,
                    )
                )
            case KeyRevoked():
                record = self.keys[event.key_id]
                record.active = False
                if self.active_labels.get(record.label) == record.key_id:
                    del self.active_labels[record.label]
            case ActorCreated():
                self._add_actor(
                    Actor(
                        event.actor_id,
                        event.owner_id,
                        event.key_id,
                        event.name,
                        event.description,
                        event.metadata,
                        event.at,
                        event.at,
                    )
                )
            case ChannelCreated():
                # fields added later (dead letters) are absent from older records
                values = {
                    name: event.config[name] for name in CONFIG_FIELDS if name in event.config
                }
                config = ChannelConfig(**values)
                config.members[config.owner_key_id] = Member(
                    str(uuid.uuid5(uuid.NAMESPACE_URL, config.id + config.owner_key_id)),
                    config.owner_key_id,
                    event.at,
                )
                channel = ChannelState(config)
                channel.applied_seq = seq
                self.channels[config.id] = channel
                self.name_channel(config.owner_id, config.name, config.id)
                for alias in event.aliases:
                    config.aliases.append(alias)
                    self.channel_aliases[alias] = config.id
                config.aliases.sort()
            case IdempotencyStored():
                self.idempotency[(event.key_id, event.idempotency_key)] = IdempotencyEntry(
                    event.method, event.path, event.status, event.body, event.at
                )
            case ActorWebhookSet() | ActorWebhookDeleted():
                self.webhooks.apply(event)
            case WebhookQueued() | WebhookAttempted():
                self.outbox.apply(event)
            case IdempotencyPurged():
                stale = [k for k, v in self.idempotency.items() if v.stored_at < event.before]
                for k in stale:
                    del self.idempotency[k]
            case ChannelDeleted():
                self._forget_channel(event.channel_id)

            case ScopesSet():
                self.keys[event.key_id].scopes = event.scopes
            case MintingToggled():
                self.public_minting = event.enabled
            case ActorAliased():
                self.actors[event.actor_id].aliases.append(event.alias)
                self.actor_aliases[event.alias] = event.actor_id
            case ActorWebhookSet() | ActorWebhookDeleted():
                self.webhooks.apply(event)
            case SessionCreated() | SessionUpdated() | SessionDeleted() | SessionsPurged():
                self.sessions.apply(event)
            case SecurityRecorded():
                self.audit.apply(event)

    def _reindex(self, channel: ChannelState, event: ChannelEvent, old_name: str) -> None:
        """Keep the world's indexes in step with an access event its channel applied."""
        config = channel.config
        match event:
            case ChannelUpdated() if config.name != old_name:
                self._unname(config.owner_id, old_name, config.id)
                self.name_channel(config.owner_id, config.name, config.id)
            case ChannelAliasAdded():
                self.channel_aliases[event.alias] = config.id
            case InvitationCreated():
                self.invitations[event.invitation_id] = config.id
        dropped = channel.ledger_view.dropped
        if dropped:
            for invitation_id in dropped:
                self.invitations.pop(invitation_id, None)
            dropped.clear()

    def channel_named(self, owner_id: str, name: str) -> str | None:
        """The id of the owner's newest channel called ``name``, if any."""
        named = self.channels_by_name.get((owner_id, name))
        if named is None or isinstance(named, str):
            return named
        return named[-1]

    def name_channel(self, owner_id: str, name: str, channel_id: str) -> None:
        """Index ``channel_id`` under its owner and name (oldest first by creation)."""
        slot = (owner_id, name)
        named = self.channels_by_name.get(slot)
        if named is None:
            self.channels_by_name[slot] = channel_id
            return
        ids = [named] if isinstance(named, str) else named
        ids.append(channel_id)
        ids.sort(key=lambda cid: self.channels[cid].config.created_at)
        self.channels_by_name[slot] = ids

    def _unname(self, owner_id: str, name: str, channel_id: str) -> None:
        slot = (owner_id, name)
        named = self.channels_by_name.get(slot)
        if named == channel_id:
            del self.channels_by_name[slot]
        elif isinstance(named, list) and channel_id in named:
            named.remove(channel_id)
            if len(named) == 1:
                self.channels_by_name[slot] = named[0]

    def _forget_channel(self, channel_id: str) -> None:
        """Drop a deleted channel from every index; its state object is left untouched
        (a snapshot may still be reading it)."""
        channel = self.channels.pop(channel_id, None)
        if channel is None:
            return
        config = channel.config
        self._unname(config.owner_id, config.name, channel_id)
        for alias in config.aliases:
            if self.channel_aliases.get(alias) == channel_id:
                del self.channel_aliases[alias]
        for invitation_id in channel.ledger_view.invitations:
            self.invitations.pop(invitation_id, None)

    def _add_actor(self, actor: Actor) -> None:
        self.actors[actor.id] = actor
        self.actors_by_name.setdefault((actor.owner_id, actor.name), []).append(actor.id)


__all__ = ["World", "hash_key"]
