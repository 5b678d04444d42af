"""The snapshot task: the whole state to one msgpack file, now and then.

A snapshot must not stall request handling: the registry is packed in one
step, then each channel in its own step with a checkpoint in between, and
the bytes are written (temp file, fsync, rename, fsync directory) in a
worker thread. Afterwards log segments wholly covered by the snapshot and
snapshots beyond the newest two are deleted.

Cancellation: the worker-thread write is not abandoned on cancel (trio's
default), so a cancelled snapshot never leaves a half-renamed file.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from backchannel.runtime.hub import Hub
from backchannel.storage import log as segment_log
from backchannel.storage import snapshot as snapshot_files
from backchannel.storage.state import (
    Chunk,
    PartColumns,
    channel_pieces,
    history_rows,
    pack_registry,
    pack_rows,
    packed_channel_pieces,
    snapshot_pieces,
)

log = logging.getLogger(__name__)
CHUNK_ROWS = 1_000  # rows packed per event-loop step: a few ms, never a stall


@dataclass(frozen=True, slots=True)
class SnapshotReport:
    path: Path
    seq: int
    channels: int
    messages: int
    bytes: int
    seconds: float
    longest_step_seconds: float


async def take_snapshot(hub: Hub, directory: Path) -> SnapshotReport:
    """Write one snapshot of ``hub.world`` and prune what it makes redundant."""
    started = time.perf_counter()
    world = hub.world
    step_started = time.perf_counter()
    covered = hub.journal.last_seq
    registry = pack_registry(world)
    channels = list(world.channels.values())
    longest = time.perf_counter() - step_started
    parts: list[list[Chunk]] = []
    messages = 0
    for state in channels:
        packed = state.packed
        if packed is not None:  # never read since the restart: its chunks as they are
            await trio.lowlevel.checkpoint()
            parts.append(packed_channel_pieces(state, packed))
            messages += packed.live_count
            continue
        capture = state.begin_capture()
        try:
            live: list[bytes] = []
            history: list[bytes] = []
            columns = PartColumns()
            for rows_of, total, out, add in (
                (capture.rows, len(capture.messages), live, columns.add_live),
                (
                    partial(history_rows, capture),
                    len(capture.history),
                    history,
                    columns.add_history,
                ),
            ):
                for start in range(0, total, CHUNK_ROWS):
                    await trio.lowlevel.checkpoint()
                    step_started = time.perf_counter()
                    rows = rows_of(start, start + CHUNK_ROWS)
                    add(rows)
                    out.append(pack_rows(rows))
                    longest = max(longest, time.perf_counter() - step_started)
            await trio.lowlevel.checkpoint()
            parts.append(channel_pieces(capture, live, history, columns))
            messages += len(columns.ids)
        finally:
            state.end_capture()
    # a channel deleted meanwhile stays out: its deletion may precede what others hold
    parts = [
        part
        for state, part in zip(channels, parts, strict=True)
        if state.config.id in world.channels
    ]
    pieces = snapshot_pieces(hub.clock.now(), registry, parts)
    size = sum(len(piece) for piece in pieces)
    # CRC and write run in the thread (zlib and os.write release the GIL)
    path = await trio.to_thread.run_sync(snapshot_files.write_snapshot, directory, covered, pieces)
    await trio.to_thread.run_sync(_prune, directory, covered)
    report = SnapshotReport(
        path,
        covered,
        len(parts),
        messages,
        size,
        time.perf_counter() - started,
        longest,
    )
    hub.last_snapshot = report
    if hub.metrics is not None:
        hub.metrics.observe_snapshot(report.seconds)
    log.info(
        "snapshot %s: seq=%d channels=%d messages=%d bytes=%d in %.3fs (longest step %.1f ms)",
        path.name,
        covered,
        report.channels,
        messages,
        report.bytes,
        report.seconds,
        report.longest_step_seconds * 1000,
    )
    return report


def _prune(directory: Path, covered: int) -> None:
    snapshot_files.prune_snapshots(directory, keep=2)
    snapshots = snapshot_files.list_snapshots(directory)
    # keep the log needed by the oldest snapshot we keep, so a fallback can still replay
    oldest_kept = min((_seq_of(p) for p in snapshots), default=covered)
    segment_log.delete_segments_before(directory, oldest_kept + 1)


def _seq_of(path: Path) -> int:
    return int(path.name.split("-")[1].split(".")[0])


async def run_snapshotter(hub: Hub, directory: Path, interval: float) -> None:
    """Take a snapshot every ``interval`` seconds (±10 % jitter). Never returns unless cancelled."""
    while True:
        await trio.sleep(interval * random.uniform(0.9, 1.1))
        try:
            await hub.journal.roll()
            await take_snapshot(hub, directory)
        except OSError:
            log.exception("snapshot failed; the log still holds every change")
