"""Segment files as a reader sees them: names, listing, and what one holds.

Blocking file code: call it from a worker thread, never from the event loop.

Theory of operation
===================

A segment is named ``log-<first seq>.bclog`` (20 digits, so names sort like
numbers) and holds a header and frames (layout in ``framing``); a record's
payload is ``msgpack.packb([seq, body])``. ``read_segment`` returns the
records of *complete* batches only and classifies why reading stopped.

Rules
-----

1. Version 2 (written since batch markers): a batch is the records since
   the previous marker, closed by a marker whose count, length and CRC
   match them. Records of a batch without its marker are not returned.
2. The end of a segment is a *torn tail* (``problem == "torn"``, a crash
   artefact) only when what follows the last complete batch is a prefix of
   one append: whole valid records, then nothing, a frame cut off by the
   end of the file, or zero bytes from a frame boundary to the end (blocks
   a crash allocated but never wrote) — *and* no valid marker appears
   anywhere after the bad spot. Zeros that start inside a frame are taken
   for damage: refusing is the conservative reading.
3. Anything else is damage: a CRC-bad frame with bytes after it that are
   not all zero, a record that does not decode, seqs out of order, a marker
   that does not match its batch, or any valid marker after the bad spot
   (a later batch landed, so the bad one was complete: only a flipped or
   lost byte explains it). ``problem_offset`` names the first bad byte.
4. ``valid_end`` is always the end of the last complete batch: the only
   safe place to cut, so that a cut segment still ends on a batch boundary.
5. Version 1 segments (one record per commit, no markers) are read as
   before: each record is its own batch, and a torn or CRC-bad frame at the
   end is a torn tail (``tail_only``), as that format could not tell more.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgpack

from backchannel.storage.framing import (
    BATCH_MARKER_FRAME_SIZE,
    BATCH_MARKER_MAGIC,
    FRAME_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    SegmentHeaderError,
    decode_batch_marker,
    decode_frames,
    decode_segment_header,
    find_batch_marker,
    is_batch_marker_payload,
)

__all__ = [
    "SegmentProblem",
    "SegmentScan",
    "list_segments",
    "read_segment",
    "segment_first_seq",
    "segment_name",
]

_SEGMENT_RE: Final = re.compile(r"^log-(\d{20})\.bclog$")

SegmentProblem = Literal["torn", "crc", "header", "record", "batch", "frame"]
"""Why reading a segment stopped early.

"torn": the end of the file is a crash artefact (rule 2; for a version 1
segment also a torn or CRC-bad last frame). "crc": a whole frame whose CRC
does not match. "header": a complete header with a wrong magic or version.
"record": a frame with a good CRC whose payload is not a ``[seq, body]``
pair with a positive, increasing seq. "batch": a marker that does not match
its batch, or a batch whose marker is missing although a later one exists.
"frame": a frame running past the end of the file although a valid marker
follows it (its length field was damaged).
"""


@dataclass(frozen=True)
class SegmentScan:
    """What ``read_segment`` found in one segment file.

    Attributes:
        path: the segment file.
        records: ``(seq, body)`` of every record in a complete batch, in order.
        offsets: byte offset of each record's frame, parallel to ``records``.
        valid_end: byte offset just past the last complete batch (0 if even
            the header is unusable): where a cut keeps whole batches.
        problem: ``None`` if the file ended cleanly, else why reading stopped.
        problem_offset: byte offset of the first bad byte, or ``None``.
        batch_starts: offset of the batch each record belongs to, parallel
            to ``records``: cutting there keeps the batches before it whole.
        version: the segment format version (0 if the header is unusable).
    """

    path: Path
    records: list[tuple[int, Any]]
    offsets: list[int]
    valid_end: int
    problem: SegmentProblem | None
    problem_offset: int | None
    batch_starts: list[int]
    version: int = 2

    @property
    def tail_only(self) -> bool:
        """The problem is one a crash mid-append leaves (acceptable only at the log's end)."""
        if self.version == 1:
            return self.problem in ("torn", "crc")
        return self.problem == "torn"


def segment_name(first_seq: int) -> str:
    """File name of the segment whose first record has ``first_seq``."""
    if first_seq <= 0:
        raise ValueError(f"seq must be positive, got {first_seq}")
    return f"log-{first_seq:020d}.bclog"


def segment_first_seq(path: Path) -> int | None:
    """First seq encoded in a segment file name, or None if not a segment."""
    match = _SEGMENT_RE.match(path.name)
    return int(match.group(1)) if match else None


def list_segments(directory: Path) -> list[Path]:
    """Segment files in ``directory`` sorted by first seq (missing dir: [])."""
    if not directory.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for path in directory.iterdir():
        first = segment_first_seq(path)
        if first is not None and path.is_file():
            found.append((first, path))
    found.sort()
    return [path for _, path in found]


def _decode_record(payload: bytes) -> tuple[int, Any] | None:
    try:
        item = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.UnpackException):
        return None
    if not isinstance(item, list) or len(item) != 2:
        return None
    seq, body = item
    if isinstance(seq, bool) or not isinstance(seq, int) or seq <= 0:
        return None
    return seq, body


class _Reader:
    """Walks the frames of one segment, committing records batch by batch."""

    def __init__(self, path: Path, data: bytes, version: int) -> None:
        self.path = path
        self.data = data
        self.version = version
        self.named_first = segment_first_seq(path)
        self.records: list[tuple[int, Any]] = []
        self.offsets: list[int] = []
        self.starts: list[int] = []
        self.pending: list[tuple[tuple[int, Any], int]] = []
        self.batch_start = SEGMENT_HEADER_SIZE

    def _in_order(self, seq: int) -> bool:
        previous = self.pending[-1][0][0] if self.pending else None
        if previous is None and self.records:
            previous = self.records[-1][0]
        if previous is not None:
            return seq > previous
        return self.named_first is None or seq == self.named_first

    def _commit(self, end: int) -> None:
        for record, offset in self.pending:
            self.records.append(record)
            self.offsets.append(offset)
            self.starts.append(self.batch_start)
        self.pending = []
        self.batch_start = end

    def scan(self) -> SegmentScan:
        frames = decode_frames(self.data, SEGMENT_HEADER_SIZE)
        problem: SegmentProblem | None = frames.problem
        bad: int | None = frames.problem_offset
        for payload, offset in zip(frames.payloads, frames.offsets, strict=True):
            end = offset + FRAME_HEADER_SIZE + len(payload)
            if self.version >= 2 and is_batch_marker_payload(payload):
                marker = decode_batch_marker(payload)
                batch = self.data[self.batch_start : offset]
                if (
                    marker is None
                    or marker.count != len(self.pending)
                    or marker.length != len(batch)
                    or marker.crc != zlib.crc32(batch)
                ):
                    problem, bad = "batch", offset
                    break
                self._commit(end)
                continue
            record = _decode_record(payload)
            if record is None or not self._in_order(record[0]):
                problem, bad = "record", offset
                break
            self.pending.append((record, offset))
            if self.version == 1:
                self._commit(end)
        return self._result(problem, bad)

    def _result(self, problem: SegmentProblem | None, bad: int | None) -> SegmentScan:
        if self.version >= 2:
            if problem is None and self.pending:
                problem, bad = "torn", self.batch_start  # records, then the end: no marker
            if problem is not None:
                assert bad is not None
                problem = self._classify(problem, bad)
        return SegmentScan(
            self.path,
            self.records,
            self.offsets,
            self.batch_start,
            problem,
            bad,
            self.starts,
            self.version,
        )

    def _classify(self, problem: SegmentProblem, bad: int) -> SegmentProblem:
        """Rule 2 and 3 of the module docstring."""
        later = find_batch_marker(self.data, bad + 1)
        if later is not None:
            return "frame" if problem == "torn" else problem
        if problem == "torn":
            rest = self.data[bad:]
            whole_marker = rest[FRAME_HEADER_SIZE : FRAME_HEADER_SIZE + len(BATCH_MARKER_MAGIC)]
            # a cut-off append never holds a whole marker frame: its length field was hit
            if len(rest) >= BATCH_MARKER_FRAME_SIZE and whole_marker == BATCH_MARKER_MAGIC:
                return "batch"
            return "torn"
        if problem == "crc" and not self.data[bad:].strip(b"\x00"):
            return "torn"
        return problem


def read_segment(path: Path) -> SegmentScan:
    """Read and validate every record of one segment file (module rules).

    Reading stops at the first problem (see ``SegmentProblem``); the
    records of the complete batches before it are returned. The first
    record must carry the seq in the file name and later ones must increase.

    Raises:
        OSError: if the file cannot be read (including a missing file).
    """
    data = path.read_bytes()
    header = data[:SEGMENT_HEADER_SIZE]
    if len(header) < SEGMENT_HEADER_SIZE or header == bytes(SEGMENT_HEADER_SIZE):
        return SegmentScan(path, [], [], 0, "torn", 0, [], 0)
    try:
        version = decode_segment_header(header)
    except SegmentHeaderError:
        return SegmentScan(path, [], [], 0, "header", 0, [], 0)
    return _Reader(path, data, version).scan()
