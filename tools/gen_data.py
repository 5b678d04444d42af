"""Write a data directory holding N live messages, for restart benchmarks.

    python tools/gen_data.py --dir DIR --messages 1000000 [--channels 10]
                             [--log-messages 100000]

The state is built through the same core ``apply`` the server uses and
written as one snapshot (plus an empty log), exactly what a server would
leave after a clean shutdown. Messages get a 30-day TTL so none expire
during the benchmark. ``--log-messages M`` then appends M more posts to
the log (the storage module's own writer), as a crash after the snapshot
leaves them: a restart replays them.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backchannel.core.events import MessagePosted, to_wire  # noqa: E402
from backchannel.core.world import World  # noqa: E402
from backchannel.storage.log import LogWriter  # noqa: E402
from backchannel.storage.snapshot import write_snapshot  # noqa: E402
from backchannel.storage.state import pack_channel, pack_registry, pack_snapshot  # noqa: E402

TTL_SECONDS = 30 * 86_400


def build(messages: int, channels: int, content_bytes: int) -> tuple[World, int]:
    now = time.time_ns() // 1000
    world = World()
    _raw, minted = world.decide_mint("generator", now)
    seq = 1
    world.apply_global(minted, seq)
    key = world.keys[minted.key_id]
    for index in range(channels):
        spec: dict[str, Any] = {
            "name": f"bench-{index}",
            "mode": "claimable",
            "access": "open",
            "discoverable": True,
            "description": "",
            "metadata_schema": {},
            "pinned_message": None,
            "ttl_seconds": TTL_SECONDS,
            "retention_days": 7,
            "max_messages": None,
            "max_writes_per_minute": None,
            "webhook_url": None,
            "webhook_secret": None,
        }
        seq += 1
        created = world.decide_create_channel(key, spec, [], now)
        world.apply_global(created, seq)
    for n, event in enumerate(posts(world, messages, content_bytes, now)):
        world.channels[event.channel_id].apply(event, seq + 1 + n)
    return world, seq + messages


def posts(world: World, count: int, content_bytes: int, now: int) -> Iterator[MessagePosted]:
    """``count`` posts by the generator's key, round-robin over the world's channels."""
    key_id = next(iter(world.keys))
    ids = list(world.channels)
    content = "x" * content_bytes
    expires = now + TTL_SECONDS * 1_000_000
    for n in range(count):
        yield MessagePosted(
            ids[n % len(ids)],
            str(uuid.uuid4()),
            content,
            {"n": n},
            now + n,
            expires + n,
            key_id,
            None,
            None,
            "generator",
            [],
        )


def write_log(
    directory: Path, world: World, after_seq: int, count: int, content_bytes: int
) -> None:
    """Append ``count`` posts after ``after_seq`` to the log, in batches, synced once."""
    writer = LogWriter(directory, after_seq + 1)
    now = time.time_ns() // 1000 + 1_000_000
    batch: list[tuple[int, Any]] = []
    for n, event in enumerate(posts(world, count, content_bytes, now)):
        batch.append((after_seq + 1 + n, to_wire(event)))
        if len(batch) == 1_000:
            writer.write_batch(batch)
            batch = []
    if batch:
        writer.write_batch(batch)
    writer.sync()
    writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--content-bytes", type=int, default=300)
    parser.add_argument("--log-messages", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    world, seq = build(args.messages, args.channels, args.content_bytes)
    parts = [pack_channel(state) for state in world.channels.values()]
    payload = pack_snapshot(time.time_ns() // 1000, pack_registry(world), parts)
    args.dir.mkdir(parents=True, exist_ok=True)
    path = write_snapshot(args.dir, seq, payload)
    if args.log_messages:
        write_log(args.dir, world, seq, args.log_messages, args.content_bytes)
    print(
        f"wrote {path} ({len(payload) / 1e6:.1f} MB): {args.messages} messages in "
        f"{args.channels} channels, seq {seq}, then {args.log_messages} in the log, "
        f"{time.perf_counter() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
