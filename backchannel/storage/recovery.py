"""Recovery: the newest valid snapshot plus the log records after it.

Pure file logic: bodies are returned as msgpack decoded them; what they
mean is the runtime's business.

Theory of operation
===================

1. Snapshots are tried newest first; one that raises ``CorruptSnapshot`` is
   skipped with a warning and the next older one is tried. With none
   usable, recovery starts from seq 0 (an empty state).
2. Segments are read oldest first. Records with seq <= the snapshot's seq
   are already in the snapshot and are skipped; the rest must continue the
   snapshot without a gap (S+1, S+2, ...), or the state would be missing
   history: that happens when the log before an older snapshot was pruned
   and the newer snapshot is now corrupt.
3. An incomplete last batch in the *newest* segment is a crash artefact
   (an append that never finished and was never acknowledged, because a
   batch is acknowledged only after its records and marker are fsynced,
   and a segment is fsynced before a newer one is created; see
   ``segments`` for how it is told from damage). It is cut off with
   ``os.truncate`` + fsync at the end of the last complete batch, and a
   newest segment left without records is removed so the next writer can
   create it afresh. Both are reported in ``warnings``.
4. Any other problem (in an older segment, a bad header, a bad record or
   marker inside a complete batch, a good batch after a bad one, seqs out
   of order, a gap) means acknowledged data may be lost, so it raises
   ``CorruptLog`` naming the file and the byte offset of the first bad
   byte. With ``allow_truncate=True`` the operator accepts the loss: the
   segment is cut at the start of the batch holding the problem, every
   later segment is deleted, and the result is a consistent prefix of
   history, reported in ``warnings``.
5. ``read_only=True`` (for backups of a directory a server may be writing)
   changes nothing on disk: a corrupt snapshot is skipped without being
   renamed, and an incomplete last batch is left alone and not returned
   (it is a write in progress, not yet acknowledged).

What this does not detect: silent loss of a whole newest segment. Segments
written before batch markers (format version 1) are read as before: a torn
or CRC-bad last frame of the newest one is taken for a torn tail.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backchannel.storage.framing import SEGMENT_HEADER_SIZE
from backchannel.storage.log import DIR_MODE, fsync_directory
from backchannel.storage.segments import (
    SegmentScan,
    list_segments,
    read_segment,
    segment_first_seq,
)
from backchannel.storage.snapshot import CorruptSnapshot, list_snapshots, load_snapshot

__all__ = ["CorruptLog", "RecoveredLog", "recover"]

logger = logging.getLogger(__name__)

_REASONS = {
    "torn": "torn record (incomplete last batch)",
    "crc": "record CRC mismatch",
    "header": "bad segment header",
    "record": "undecodable or out-of-order record",
    "batch": "batch marker missing or not matching its batch",
    "frame": "frame length runs past a later complete batch",
}


class CorruptLog(Exception):
    """The log is damaged somewhere a crash cannot explain.

    Attributes:
        path: the segment file.
        offset: byte offset of the first bad byte in it.
        reason: what was wrong.
    """

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"corrupt log segment {path} at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True)
class RecoveredLog:
    """Everything needed to rebuild state, plus what recovery had to do.

    Attributes:
        snapshot_path: the snapshot loaded, or None.
        snapshot_seq: the seq it covers (0 without a snapshot).
        snapshot_payload: its payload (a view of the mapped file), or None.
        records: ``(seq, body)`` after ``snapshot_seq``, consecutive, in order.
        warnings: one line per skipped snapshot, truncation or removal.
        truncated_tail: True if any log file was truncated or removed.
        last_seq: the highest seq seen (snapshot or log); the next record
            must get ``last_seq + 1``.
    """

    snapshot_path: Path | None
    snapshot_seq: int
    snapshot_payload: memoryview | None
    records: list[tuple[int, Any]]
    warnings: list[str]
    truncated_tail: bool
    last_seq: int

    def describe(self) -> str:
        """One line for the startup report."""
        source = (
            f"snapshot {self.snapshot_path.name} (seq {self.snapshot_seq})"
            if self.snapshot_path is not None
            else "no snapshot"
        )
        text = f"recovered {source} + {len(self.records)} log records, last seq {self.last_seq}"
        if self.warnings:
            text += f" ({len(self.warnings)} warnings)"
        return text


def recover(
    directory: Path, *, allow_truncate: bool = False, read_only: bool = False
) -> RecoveredLog:
    """Load the newest valid snapshot and the log records after it.

    Blocking: call from a worker thread.

    Args:
        directory: the data directory (created if missing, unless read-only).
        allow_truncate: accept losing data after a mid-log problem; see the
            module docstring, rule 4.
        read_only: change nothing on disk (rule 5); excludes allow_truncate.

    Returns:
        A ``RecoveredLog``. Unless read-only, the directory is left ready
        for a ``LogWriter`` with ``next_seq_hint=result.last_seq + 1``.

    Raises:
        CorruptLog: on damage a crash cannot explain (unless allow_truncate).
        OSError: on I/O errors, including during truncation.
        ValueError: if both allow_truncate and read_only are given.
    """
    if allow_truncate and read_only:
        raise ValueError("allow_truncate needs to change files; read_only forbids it")
    if not read_only:
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    warnings: list[str] = []
    snapshot_path: Path | None = None
    snap_seq = 0
    payload: memoryview | None = None
    for candidate in list_snapshots(directory):
        try:
            snap_seq, payload = load_snapshot(candidate)
        except CorruptSnapshot as exc:
            if read_only:
                warnings.append(f"skipped {exc}")
                continue
            # quarantined, so pruning can never keep it as one of the last two
            quarantine = candidate.with_name(candidate.name + ".corrupt")
            candidate.rename(quarantine)
            warnings.append(f"skipped {exc}; kept as {quarantine.name}")
            continue
        snapshot_path = candidate
        break

    segments = list_segments(directory)
    records: list[tuple[int, Any]] = []
    log_last = 0
    truncated = False
    for index, path in enumerate(segments):
        scan = read_segment(path)
        is_last = index == len(segments) - 1
        problem = _first_problem(scan, log_last, snap_seq)
        keep = len(scan.records) if problem is None else problem[0]
        for seq, body in scan.records[:keep]:
            if seq > snap_seq:
                records.append((seq, body))
            log_last = seq
        if problem is None:
            if is_last and not scan.records and not read_only:
                _remove(path)
                warnings.append(f"removed {path.name}: no records")
                truncated = True
            continue
        kept, offset, cut, reason = problem
        crash_tail = is_last and kept == len(scan.records) and scan.tail_only
        if not crash_tail and not allow_truncate:
            raise CorruptLog(path, offset, reason)
        if read_only:
            warnings.append(f"left {path.name} alone after byte offset {cut}: write in progress")
            break
        warnings.append(_cut(path, cut, kept, f"{reason} at byte offset {offset}"))
        truncated = True
        if not crash_tail:
            for later in segments[index + 1 :]:
                _remove(later)
                warnings.append(f"removed {later.name}: follows a truncation")
            break
    for warning in warnings:
        logger.warning("recovery: %s", warning)
    return RecoveredLog(
        snapshot_path=snapshot_path,
        snapshot_seq=snap_seq,
        snapshot_payload=payload,
        records=records,
        warnings=warnings,
        truncated_tail=truncated,
        last_seq=max(snap_seq, log_last),
    )


def _first_problem(
    scan: SegmentScan, log_last: int, snap_seq: int
) -> tuple[int, int, int, str] | None:
    """First reason to stop in ``scan``: (records kept, bad offset, cut offset, reason).

    ``log_last`` is the highest log seq accepted so far. Records must exceed
    it, and must not skip any seq above the snapshot's. The cut offset is
    the start of the batch holding the problem, so whole batches survive.
    """
    for index, ((seq, _), offset) in enumerate(zip(scan.records, scan.offsets, strict=True)):
        covered = max(log_last, snap_seq)
        reason = None
        if seq <= log_last:
            reason = f"seq {seq} does not follow seq {log_last}"
        elif seq > covered + 1:
            reason = f"gap: seq {seq} follows seq {covered}"
        if reason is not None:
            cut = scan.batch_starts[index]
            return bisect_left(scan.offsets, cut), offset, cut, reason
        log_last = seq
    if not scan.records and scan.problem is None:
        first = segment_first_seq(scan.path)
        if first is not None and first <= log_last:
            return 0, 0, 0, f"empty segment named for seq {first} follows seq {log_last}"
    if scan.problem is not None:
        offset = scan.problem_offset if scan.problem_offset is not None else scan.valid_end
        return len(scan.records), offset, scan.valid_end, _REASONS[scan.problem]
    return None


def _cut(path: Path, cut: int, kept: int, why: str) -> str:
    """Truncate ``path`` at ``cut`` (remove it if no record survives)."""
    size = path.stat().st_size
    if kept == 0 or cut <= SEGMENT_HEADER_SIZE:
        _remove(path)
        return f"removed {path.name}: {why}, no complete batch before it"
    os.truncate(path, cut)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return f"truncated {path.name} at byte offset {cut} ({size - cut} bytes dropped): {why}"


def _remove(path: Path) -> None:
    path.unlink()
    fsync_directory(path.parent)
