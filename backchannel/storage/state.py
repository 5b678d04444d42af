"""The snapshot payload: the whole :class:`World` as a stream of msgpack objects.

Layout (one top-level msgpack object after another, never nested)::

    {"format": 3, "clock": <µs at pack time>, "channels": N}
    {registry: seq, keys, actors, actor_aliases, idempotency,
               public_minting, sessions, webhooks, audit, outbox, mention_pushes,
               outbox_counts}
    [channel part] × N, each an array of three:
        {seq, config, members, last_seq, recent_posts,
         ledger (invitations, access requests, event log),
         delayed (rows of messages not visible yet),
         ids (every message id: live, then history, then delayed),
         leases ({lease token: message id}),
         counts ([live, claimed]),
         deadlines ([first TTL expiry, first lease expiry,
                     oldest archived_at, first visible_at])}
        [<bin: packed chunk of live rows>, ...]
        [<bin: packed chunk of archived rows>, ...]

Format 3 added ids, leases, counts and deadlines: with them a loader keeps
the chunks packed (core.packed) and still indexes every message id, arms
every deadline and reports every count; the chunks are decoded when the
channel is first read, and written back as they are if it never is. The
chunks sit outside the map so the loader can skip them and keep views of
the payload (a mapped file) instead of copies. Format 2 (one map per
channel, the chunks under "live" and "history", none of the four
columns) still loads, eagerly.

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

from collections import deque
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import msgpack

from backchannel.core.capture import Capture
from backchannel.core.channel import ChannelState
from backchannel.core.delivery_events import MOVE_EVENTS
from backchannel.core.events import ChannelDeleted, Event, channel_of, from_wire
from backchannel.core.outbox import Delivery
from backchannel.core.packed import NO_DEADLINES, PackedMessages
from backchannel.core.records import (
    Actor,
    ActorWebhook,
    ChannelConfig,
    IdempotencyEntry,
    KeyRecord,
    Member,
    SecurityEvent,
    Session,
    message_row,
)
from backchannel.core.world import World

FORMAT = 3
EAGER_FORMATS = (2,)  # formats without ids and deadlines: loaded and unpacked at once
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


def _unpack(data: Chunk) -> Any:
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


Chunk = bytes | memoryview  # a packed chunk of rows; a loaded one is a view of the payload


def _bins(chunks: Sequence[Chunk]) -> list[Chunk]:
    pieces: list[Chunk] = [_ARRAY_HEADER(len(chunks))]
    for chunk in chunks:
        pieces += [_bin_header(len(chunk)), chunk]
    return pieces


class PartColumns:
    """What a format-3 part stores beside its chunks, gathered from the rows packed.

    Fed the same rows as the chunks, so it describes the capture exactly.
    """

    __slots__ = ("claimed", "history_ids", "ids", "leases")

    def __init__(self) -> None:
        self.ids: list[str] = []  # live
        self.history_ids: list[str] = []
        self.leases: dict[str, str] = {}
        self.claimed = 0

    def add_live(self, rows: Sequence[Sequence[Any]]) -> None:
        self.ids += [row[0] for row in rows]
        for row in rows:
            if len(row) > 10 and row[11] is not None:  # claimed_by_id (MESSAGE_FIELDS)
                self.claimed += 1
                if row[15] is not None:  # lease_token
                    self.leases[row[15]] = row[0]

    def add_history(self, rows: Sequence[Sequence[Any]]) -> None:
        self.history_ids += [row[2][0] for row in rows]


def _part_pieces(
    small: dict[str, Any], live: Sequence[Chunk], history: Sequence[Chunk]
) -> list[Chunk]:
    return [_ARRAY_HEADER(3) + _pack(small), *_bins(live), *_bins(history)]


def channel_pieces(
    capture: Capture, live: list[bytes], history: list[bytes], columns: PartColumns
) -> list[Chunk]:
    """A channel part as pieces whose concatenation is its msgpack array.

    The row chunks are spliced in, not copied into a new buffer.
    ``columns`` must have been fed every row of ``live`` and ``history``.
    """
    small = {
        "seq": capture.seq,
        "config": [capture.config_values[name] for name in _CONFIG],
        "members": [_row(m, _MEMBER) for m in capture.members],
        "last_seq": capture.last_seq,
        "recent_posts": capture.recent_posts,
        "ledger": capture.ledger,
        "delayed": capture.delayed,
        "ids": [*columns.ids, *columns.history_ids, *(row[0] for row in capture.delayed)],
        "leases": columns.leases,
        "counts": [len(columns.ids), columns.claimed],
        "deadlines": list(capture.deadlines),
    }
    return _part_pieces(small, live, history)


def packed_channel_pieces(state: ChannelState, packed: PackedMessages) -> list[Chunk]:
    """The part of a channel never unpacked since it was loaded: its chunks as
    they were read, its small fields as they are now (replay may have changed
    its config, members or ledger). One synchronous step, no row decoded."""
    config = state.config
    small = {
        "seq": state.applied_seq,
        "config": [
            list(value) if isinstance(value, list) else value
            for value in (getattr(config, name) for name in _CONFIG)
        ],
        "members": [_row(m, _MEMBER) for m in config.members.values()],
        "last_seq": state.last_seq,
        "recent_posts": list(state._recent_posts or ()),
        "ledger": state.ledger_view.rows(),
        "delayed": packed.delayed,
        "ids": packed.ids,
        "leases": packed.leases,
        "counts": [packed.live_count, packed.claimed_count],
        "deadlines": list(packed.deadlines),
    }
    return _part_pieces(small, packed.live, packed.history)


def pack_channel_part(
    capture: Capture, live: list[bytes], history: list[bytes], columns: PartColumns
) -> bytes:
    """:func:`channel_pieces` joined (tests and tools)."""
    return b"".join(channel_pieces(capture, live, history, columns))


def pack_channel(state: ChannelState) -> bytes:
    """One channel in one synchronous step (tests, tools and small channels).

    A channel still packed is written from its chunks, not unpacked.
    """
    packed = state.packed
    if packed is not None:
        return b"".join(packed_channel_pieces(state, packed))
    capture = state.begin_capture()
    try:
        columns = PartColumns()
        rows = capture.rows(0, len(capture.messages))
        columns.add_live(rows)
        archived = history_rows(capture, 0, len(capture.history))
        columns.add_history(archived)
        live = [pack_rows(rows)] if rows else []  # no chunk at all for none: less to load
        history = [pack_rows(archived)] if archived else []
        return pack_channel_part(capture, live, history, columns)
    finally:
        state.end_capture()


def snapshot_pieces(clock_us: int, registry: bytes, channels: list[list[Chunk]]) -> list[Chunk]:
    """The whole payload as pieces, ready for ``write_snapshot``."""
    header = _pack({"format": FORMAT, "clock": clock_us, "channels": len(channels)})
    return [header, registry, *(piece for part in channels for piece in part)]


def pack_snapshot(clock_us: int, registry: bytes, channels: list[bytes]) -> bytes:
    """The payload from whole parts (tests and tools)."""
    return b"".join(snapshot_pieces(clock_us, registry, [[part] for part in channels]))


class _Reader:
    """A file-like ``read`` over a payload: the unpacker copies one read at a
    time, never the whole payload (``io.BytesIO`` copies a memoryview whole)."""

    __slots__ = ("_at", "_view")

    def __init__(self, payload: bytes | memoryview) -> None:
        self._view = memoryview(payload)
        self._at = 0

    def read(self, size: int) -> bytes:
        start = self._at
        self._at = min(start + size, len(self._view))
        return bytes(self._view[start : self._at])


def load_snapshot_payload(payload: bytes | memoryview, *, lazy: bool = True) -> tuple[World, int]:
    """Rebuild a :class:`World` from :func:`pack_snapshot` bytes.

    With ``lazy`` (the default), the channels of a format-3 snapshot keep
    their messages packed until first read (core.packed); without it, or
    for an older format, every channel is unpacked before returning.

    Returns the world and the clock reading stored at pack time.
    Raises ValueError on an unknown format.
    """
    # read through a file object, not fed whole: feeding copies the payload
    stream = msgpack.Unpacker(
        _Reader(payload),
        raw=False,
        strict_map_key=False,
        max_buffer_size=max(len(payload), READ_SIZE),
        read_size=READ_SIZE,
    )
    outer = next(stream, None)
    found = outer.get("format") if isinstance(outer, dict) else outer
    if not isinstance(outer, dict) or (found != FORMAT and found not in EAGER_FORMATS):
        raise ValueError(f"unsupported snapshot format {found!r}")
    view = memoryview(payload)
    chunked = found == FORMAT  # parts are [map, live chunks, history chunks]
    lazy = lazy and chunked
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
    strings: dict[str, str] = {}
    for _ in range(outer["channels"]):
        if chunked:
            stream.read_array_header()
            part = stream.unpack()
            live, history = _chunks(stream, view), _chunks(stream, view)
        else:
            part = next(stream)
            live, history = part["live"], part["history"]
        state = _load_channel(part, live, history, strings)
        if not lazy:
            state.unpack()
        config = state.config
        world.channels[config.id] = state
        world.name_channel(config.owner_id, config.name, config.id)
        for alias in config.aliases:
            world.channel_aliases[alias] = config.id
        for invitation_id in state.ledger_view.invitations:
            world.invitations[invitation_id] = config.id
    return world, int(outer["clock"])


_NONE: tuple[Any, ...] = ()  # shared by every part without history, delays or leases
_NO_LEASES: dict[str, str] = {}  # shared, never changed
_BIN_HEADER_SIZE = {0xC4: 2, 0xC5: 3, 0xC6: 5}  # bin 8, bin 16, bin 32


def _chunks(stream: msgpack.Unpacker, view: memoryview) -> Sequence[Chunk]:
    """An array of chunks as views of ``view``: skipped by the unpacker, never copied."""
    count = stream.read_array_header()
    if not count:
        return _NONE
    out: list[Chunk] = []
    for _ in range(count):
        start = stream.tell()
        stream.skip()
        header = _BIN_HEADER_SIZE.get(view[start])
        if header is None:
            raise ValueError(f"byte {start} of the snapshot payload does not start a chunk")
        out.append(view[start + header : stream.tell()])
    return out


_SHARED_CONFIG = (1, 2, 4, 5)  # owner_id, owner_key_id, mode, access: few distinct values


def _load_channel(
    part: dict[str, Any],
    live: Sequence[Chunk],
    history: Sequence[Chunk],
    strings: dict[str, str],
) -> ChannelState:
    """The channel a part holds, its messages packed (``strings``: the loader's
    table of shared strings, one copy of each owner, key id and mode)."""
    row = part["config"]
    share = strings.setdefault
    for index in _SHARED_CONFIG:
        row[index] = share(row[index], row[index])
    config = ChannelConfig(*row)
    members = config.members
    for row in part["members"]:
        member = Member(row[0], share(row[1], row[1]), *row[2:])
        members[member.key_id] = member
    live_count, claimed_count = part.get("counts") or (0, 0)
    d = part.get("deadlines") or NO_DEADLINES
    packed = PackedMessages(
        live or _NONE,
        history or _NONE,
        part.get("delayed") or _NONE,
        part.get("ids") or _NONE,
        part.get("leases") or _NO_LEASES,
        live_count,
        claimed_count,
        (d[0], d[1], d[2], d[3]),
        _unpack,
    )
    state = ChannelState.restore_packed(config, packed, part["seq"], part["last_seq"])
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
