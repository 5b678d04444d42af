"""The snapshot payload: the whole :class:`World` as a stream of msgpack objects.

Layout (one top-level msgpack object after another, never nested)::

    {"format": 2, "clock": <µs at pack time>, "channels": N}
    {registry: seq, keys, actors, actor_aliases, idempotency,
               public_minting, sessions, webhooks, audit, outbox, mention_pushes,
               outbox_counts}
    {channel part}  × N: seq, config, members, last_seq, recent_posts,
                         ledger (invitations, access requests, event log),
                         delayed (rows of messages not visible yet),
                         "live": [<bin: packed chunk of rows>, ...],
                         "history": [<bin: packed chunk of rows>, ...]

Each part records the journal seq it covers. The registry is packed in one
synchronous step; a channel is read through a copy-on-write
:class:`~backchannel.core.channel.Capture`, in chunks of rows packed on
their own, so the snapshotter can yield to the event loop between chunks.
A channel part is assembled from pieces (its small fields packed, its
chunks spliced in under hand-written ``bin`` headers) and the payload is
written piece by piece: no step ever copies the whole snapshot, so a big
one never stalls requests. A part may cover more than the snapshot's header
seq; replay skips, per part, every record the part already holds.
Records are stored as lists in field order (positional), which keeps the
payload small and the packing fast. Raw API keys are never stored, only
their SHA-256 hashes.
"""

from __future__ import annotations

import io
from collections import deque
from dataclasses import fields
from typing import Any

import msgpack

from backchannel.core.capture import Capture
from backchannel.core.channel import ChannelState
from backchannel.core.delivery_events import MOVE_EVENTS
from backchannel.core.events import ChannelDeleted, Event, channel_of, from_wire
from backchannel.core.outbox import Delivery
from backchannel.core.records import (
    Actor,
    ActorWebhook,
    Archived,
    ChannelConfig,
    IdempotencyEntry,
    KeyRecord,
    Member,
    SecurityEvent,
    Session,
    load_message_rows,
    message_from_row,
    message_row,
)
from backchannel.core.world import World

FORMAT = 2
READ_SIZE = 1 << 20  # bytes the loader's unpacker reads from the payload at a time


def _names(cls: type[Any], *skip: str) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name not in skip)


_KEY = _names(KeyRecord)
_ACTOR = _names(Actor)
_MEMBER = _names(Member)
_CONFIG = _names(ChannelConfig, "members")
_IDEM = _names(IdempotencyEntry)
_SESSION = _names(Session)
_WEBHOOK = _names(ActorWebhook)
_SECURITY = _names(SecurityEvent)
_DELIVERY = _names(Delivery)


def _row(obj: Any, names: tuple[str, ...]) -> list[Any]:
    return [getattr(obj, name) for name in names]


_ARRAY_HEADER = msgpack.Packer().pack_array_header
_MAP_HEADER = msgpack.Packer().pack_map_header


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def pack_registry(world: World) -> bytes:
    """Keys, actors, aliases and idempotency entries, as of ``world.applied_seq``."""
    return _pack(
        {
            "seq": world.applied_seq,
            "keys": [_row(k, _KEY) for k in world.keys.values()],
            "actors": [_row(a, _ACTOR) for a in world.actors.values()],
            "actor_aliases": world.actor_aliases,
            "idempotency": [
                [key_id, idem, *_row(entry, _IDEM)]
                for (key_id, idem), entry in world.idempotency.items()
            ],
            "public_minting": world.public_minting,
            "sessions": [_row(x, _SESSION) for x in world.sessions.sessions.values()],
            "webhooks": [_row(x, _WEBHOOK) for x in world.webhooks.hooks.values()],
            "audit": [_row(x, _SECURITY) for x in world.audit.events],
            "outbox": [_row(x, _DELIVERY) for x in world.outbox.pending.values()],
            "mention_pushes": [[c, a, at] for (c, a), at in world.outbox.mention_pushes.items()],
            "outbox_counts": [world.outbox.delivered, world.outbox.given_up],
        }
    )


def pack_rows(rows: list[Any]) -> bytes:
    """One chunk of rows (live message rows or archived rows)."""
    return _pack(rows)


def history_rows(capture: Capture, start: int, stop: int) -> list[list[Any]]:
    """Archived entries ``[archived_at, reason, message row]`` of a capture."""
    return [[e.archived_at, e.reason, message_row(e.message)] for e in capture.history[start:stop]]


def _bin_header(size: int) -> bytes:
    """The msgpack ``bin`` header for ``size`` bytes (what packb writes for bytes)."""
    if size < 0x100:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _bins(name: str, chunks: list[bytes]) -> list[bytes]:
    pieces = [_pack(name) + _ARRAY_HEADER(len(chunks))]
    for chunk in chunks:
        pieces += [_bin_header(len(chunk)), chunk]
    return pieces


def channel_pieces(capture: Capture, live: list[bytes], history: list[bytes]) -> list[bytes]:
    """A channel part as pieces whose concatenation is one msgpack map.

    The row chunks are spliced in, not copied into a new buffer.
    """
    small = {
        "seq": capture.seq,
        "config": [capture.config_values[name] for name in _CONFIG],
        "members": [_row(m, _MEMBER) for m in capture.members],
        "last_seq": capture.last_seq,
        "recent_posts": capture.recent_posts,
        "ledger": capture.ledger,
        "delayed": capture.delayed,
    }
    head = _MAP_HEADER(len(small) + 2) + b"".join(_pack(k) + _pack(v) for k, v in small.items())
    return [head, *_bins("live", live), *_bins("history", history)]


def pack_channel_part(capture: Capture, live: list[bytes], history: list[bytes]) -> bytes:
    """:func:`channel_pieces` joined (tests and tools)."""
    return b"".join(channel_pieces(capture, live, history))


def pack_channel(state: ChannelState) -> bytes:
    """One channel in one synchronous step (tests, tools and small channels)."""
    capture = state.begin_capture()
    try:
        live = [pack_rows(capture.rows(0, len(capture.messages)))]
        history = [pack_rows(history_rows(capture, 0, len(capture.history)))]
        return pack_channel_part(capture, live, history)
    finally:
        state.end_capture()


def snapshot_pieces(clock_us: int, registry: bytes, channels: list[list[bytes]]) -> list[bytes]:
    """The whole payload as pieces, ready for ``write_snapshot``."""
    header = _pack({"format": FORMAT, "clock": clock_us, "channels": len(channels)})
    return [header, registry, *(piece for part in channels for piece in part)]


def pack_snapshot(clock_us: int, registry: bytes, channels: list[bytes]) -> bytes:
    """The payload from whole parts (tests and tools)."""
    return b"".join(snapshot_pieces(clock_us, registry, [[part] for part in channels]))


def load_snapshot_payload(payload: bytes) -> tuple[World, int]:
    """Rebuild a :class:`World` from :func:`pack_snapshot` bytes.

    Returns the world and the clock reading stored at pack time.
    Raises ValueError on an unknown format.
    """
    # read through a file object, not fed whole: feeding copies the payload
    stream = msgpack.Unpacker(
        io.BytesIO(payload),
        raw=False,
        strict_map_key=False,
        max_buffer_size=max(len(payload), READ_SIZE),
        read_size=READ_SIZE,
    )
    outer = next(stream, None)
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        found = outer.get("format") if isinstance(outer, dict) else outer
        raise ValueError(f"unsupported snapshot format {found!r}")
    world = World()
    registry = next(stream)
    world.applied_seq = registry["seq"]
    for row in registry["keys"]:
        key = KeyRecord(*row)
        world.keys[key.key_id] = key
        if key.active:
            world.active_labels[key.label] = key.key_id
    for row in registry["actors"]:
        actor = Actor(*row)
        world.actors[actor.id] = actor
        world.actors_by_name.setdefault((actor.owner_id, actor.name), []).append(actor.id)
    world.actor_aliases = dict(registry["actor_aliases"])
    for row in registry["idempotency"]:
        world.idempotency[(row[0], row[1])] = IdempotencyEntry(*row[2:])
    world.public_minting = registry.get("public_minting")
    world.sessions.load([Session(*row) for row in registry.get("sessions", [])])
    for row in registry.get("webhooks", []):
        hook = ActorWebhook(*row)
        world.webhooks.hooks[hook.actor_id] = hook
    for row in registry.get("audit", []):
        world.audit.add(SecurityEvent(*row))
    outbox = world.outbox
    for row in registry.get("outbox", []):
        delivery = Delivery(*row)
        outbox.pending[delivery.id] = delivery
    for channel_id, actor_id, at in registry.get("mention_pushes", []):
        outbox.mention_pushes[(channel_id, actor_id)] = at
    outbox.delivered, outbox.given_up = registry.get("outbox_counts", [0, 0])
    for _ in range(outer["channels"]):
        state = _load_channel(next(stream))
        config = state.config
        world.channels[config.id] = state
        world.name_channel(config.owner_id, config.name, config.id)
        for alias in config.aliases:
            world.channel_aliases[alias] = config.id
        for invitation_id in state.ledger_view.invitations:
            world.invitations[invitation_id] = config.id
    return world, int(outer["clock"])


def _load_channel(part: dict[str, Any]) -> ChannelState:
    config = ChannelConfig(*part["config"])
    for row in part["members"]:
        member = Member(*row)
        config.members[member.key_id] = member
    state = ChannelState(config)
    state.applied_seq = part["seq"]
    state.last_seq = part["last_seq"]
    order = state._order
    strings: dict[str, str] = {}  # one copy of each key id and actor name, not one per row
    for chunk in part["live"]:
        load_message_rows(_unpack(chunk), strings, order, state.live)
    for chunk in part["history"]:
        for archived_at, reason, row in _unpack(chunk):
            message = message_from_row(row, strings)
            message.removed = True
            entry = Archived(message, archived_at, reason)
            state.history.append(entry)
            state.archived[message.id] = entry
    for row in part.get("delayed", ()):
        message = message_from_row(row, strings)
        state.delayed[message.id] = message
    state.rebuild_indexes()
    state._recent_posts = deque(part["recent_posts"]) if part["recent_posts"] else None
    ledger = part.get("ledger")
    if ledger is not None and any(ledger):  # an empty ledger is made on first use
        state.ledger.load(ledger)
    return state


def replay(world: World, records: list[tuple[int, Any]]) -> tuple[int, int]:
    """Apply log records the snapshot does not cover, through the live ``apply``.

    A channel deleted while the snapshot was being taken is not in it (see
    ``take_snapshot``); its records up to its deletion are skipped.

    Returns ``(applied, newest timestamp seen)``.
    """
    applied = 0
    newest = 0
    deleted = {body[1] for _, body in records if body[0] == ChannelDeleted.kind}
    for seq, body in records:
        event: Event = from_wire(body)
        if isinstance(event, MOVE_EVENTS):  # two channels: each half checks its own
            if world.apply_move(event, seq):
                applied += 1
                newest = max(newest, event.at)
            continue
        channel_id = channel_of(event)
        if channel_id is None:
            covered = world.applied_seq
        else:
            channel = world.channels.get(channel_id)
            if channel is None:
                if channel_id in deleted:
                    continue
                raise ValueError(f"log record {seq} names unknown channel {channel_id}")
            covered = channel.applied_seq
        if seq <= covered:
            continue
        world.apply(event, seq)
        applied += 1
        for name in ("at", "created_at"):
            value = getattr(event, name, None)
            if isinstance(value, int) and value > newest:
                newest = value
    return applied, newest
