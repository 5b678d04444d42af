"""Operator tools: ``backchannel snapshot inspect FILE`` and ``snapshot verify DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

from backchannel.storage.log import list_segments, read_segment
from backchannel.storage.snapshot import CorruptSnapshot, list_snapshots, load_snapshot
from backchannel.storage.state import load_snapshot_payload


def inspect_command(path: Path) -> int:
    """Print a summary of one snapshot: seq, size, channels and their counts."""
    try:
        seq, payload = load_snapshot(path)
        world, _clock = load_snapshot_payload(payload)
    except (OSError, CorruptSnapshot, ValueError) as exc:
        print(f"{path}: cannot read snapshot: {exc}", file=sys.stderr)
        return 1
    live = sum(c.live_count for c in world.channels.values())
    print(f"snapshot {path.name}: seq={seq} bytes={path.stat().st_size}")
    print(
        f"keys={len(world.keys)} actors={len(world.actors)} channels={len(world.channels)} "
        f"live_messages={live} idempotency_entries={len(world.idempotency)}"
    )
    for state in world.channels.values():
        config = state.config
        leases = sum(1 for m in state.live.values() if m.lease_token is not None)
        print(
            f"  {config.id} {config.name!r} mode={config.mode} live={len(state.live)} "
            f"history={len(state.history)} leases={leases} covers_seq={state.applied_seq}"
        )
    return 0


def verify_command(directory: Path) -> int:
    """Check every snapshot and log segment; non-zero exit status on any corruption."""
    if not directory.is_dir():
        print(f"{directory}: not a directory", file=sys.stderr)
        return 1
    problems = 0
    for path in list_snapshots(directory):
        try:
            seq, payload = load_snapshot(path)
            load_snapshot_payload(payload)
            print(f"ok   {path.name} seq={seq}")
        except (OSError, CorruptSnapshot, ValueError) as exc:
            problems += 1
            print(f"BAD  {path.name}: {exc}")
    for path in list_segments(directory):
        scan = read_segment(path)
        if scan.problem is None:
            print(f"ok   {path.name} records={len(scan.records)}")
        else:
            problems += 1
            print(f"BAD  {path.name}: {scan.problem} at offset {scan.problem_offset}")
    print(f"{problems} problem(s)")
    return 1 if problems else 0
