"""Pure byte layout of the append-only log. No file I/O lives here.

Theory of operation
===================

A log segment file is a fixed header followed by frames, back to back::

    segment file
    +--------------------------------+---------+---------+-----+---------+
    | segment header (12 bytes)      | frame 0 | frame 1 | ... | frame n |
    +--------------------------------+---------+---------+-----+---------+

    segment header, struct "<8sB3x"
    +-----------------------------+---------+--------------+
    | magic b"BCLOG\\0\\0\\0" (8) | version | reserved (3) |
    +-----------------------------+---------+--------------+
     0                             8         9              12

    frame, struct "<II" then payload
    +----------------+-----------------+---------------------------+
    | length (u32 LE)| crc32 (u32 LE)  | payload (length bytes)    |
    +----------------+-----------------+---------------------------+
     0                4                 8                   8+length

The payload is opaque here (the log module puts msgpack in it); the CRC is
``zlib.crc32(payload)``. Records are never newline-delimited: the length
prefix is the only boundary.

Rules
-----

1. A frame is valid only if its whole header and whole payload are present
   and the CRC matches. Scanning stops at the first frame that is not.
2. A frame whose header or payload runs past the end of the data is "torn":
   the write that produced it did not finish (a crash mid-append).
3. A frame whose bytes are all present but whose CRC does not match is
   "crc": the bytes on disk are not the bytes we wrote.
4. An empty payload is never written (``encode_frame`` refuses it), so a
   frame of length 0 is reported as "crc". This matters because a crash can
   leave zero-filled blocks at the end of a file, and an all-zero header
   would otherwise look valid (``crc32(b"") == 0``).

Batches (format version 2)
--------------------------

From version 2 on, every group commit ends with a *batch marker*: one more
frame whose payload is::

    batch marker payload, struct "<4sIIQ"
    +------------------+------------+-------------+-------------------+
    | magic b"\xc1BCB" | count (u32)| crc32 (u32) | length (u64)      |
    +------------------+------------+-------------+-------------------+
     0                  4            8             12                  20

``count`` is the number of record frames since the previous marker (or the
segment header), ``length`` their total bytes and ``crc32`` the CRC of
those bytes. The first byte, 0xC1, is never used by msgpack, so a marker
can never be mistaken for a record payload (which is msgpack), and never
appears inside a UTF-8 string either. A batch is written with one
``os.write`` and its marker last, so a crash mid-append leaves records
without their marker: an *incomplete* batch. ``find_batch_marker`` finds a
valid marker frame anywhere in a byte string; that is how a reader learns
that a complete batch follows a bad spot, which a torn append cannot
produce. Version 1 segments (no markers) are still read.

What the frame scan alone cannot see: whether good frames follow a bad one.
Callers decide what a problem means from its position and from the markers
after it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "BATCH_MARKER",
    "BATCH_MARKER_FRAME_SIZE",
    "BATCH_MARKER_MAGIC",
    "BATCH_MARKER_SIZE",
    "FORMAT_VERSION",
    "FRAME_HEADER",
    "FRAME_HEADER_SIZE",
    "MAX_PAYLOAD",
    "SEGMENT_HEADER",
    "SEGMENT_HEADER_SIZE",
    "SEGMENT_MAGIC",
    "SUPPORTED_VERSIONS",
    "BatchMarker",
    "FrameProblem",
    "FrameScan",
    "SegmentHeaderError",
    "decode_batch_marker",
    "decode_frames",
    "decode_segment_header",
    "encode_batch_marker",
    "encode_frame",
    "encode_segment_header",
    "find_batch_marker",
    "is_batch_marker_payload",
]

FRAME_HEADER: Final = struct.Struct("<II")
FRAME_HEADER_SIZE: Final = 8
assert FRAME_HEADER.size == struct.calcsize("<II") == FRAME_HEADER_SIZE

SEGMENT_MAGIC: Final = b"BCLOG\x00\x00\x00"
FORMAT_VERSION: Final = 2
"""What the writer produces: version 2 closes every batch with a marker."""
SUPPORTED_VERSIONS: Final = (1, 2)
SEGMENT_HEADER: Final = struct.Struct("<8sB3x")
SEGMENT_HEADER_SIZE: Final = 12
assert SEGMENT_HEADER.size == struct.calcsize("<8sB3x") == SEGMENT_HEADER_SIZE
assert len(SEGMENT_MAGIC) == 8

BATCH_MARKER_MAGIC: Final = b"\xc1BCB"
BATCH_MARKER: Final = struct.Struct("<4sIIQ")
BATCH_MARKER_SIZE: Final = 20
BATCH_MARKER_FRAME_SIZE: Final = FRAME_HEADER_SIZE + BATCH_MARKER_SIZE
assert BATCH_MARKER.size == struct.calcsize("<4sIIQ") == BATCH_MARKER_SIZE
assert len(BATCH_MARKER_MAGIC) == 4

MAX_PAYLOAD: Final = 0xFFFF_FFFF
"""Largest payload a u32 length prefix can describe."""

FrameProblem = Literal["torn", "crc"]


@dataclass(frozen=True)
class FrameScan:
    """Result of scanning a byte string for frames.

    Attributes:
        payloads: payloads of the valid frames, in order.
        offsets: start offset (in the scanned data) of each valid frame.
        valid_end: offset just past the last valid frame; equals the scan's
            start when no frame was valid.
        problem: ``None`` if the data ended cleanly on a frame boundary,
            otherwise why scanning stopped ("torn" or "crc").
        problem_offset: start offset of the offending frame, or ``None``.
            When set it always equals ``valid_end``.
    """

    payloads: list[bytes]
    offsets: list[int]
    valid_end: int
    problem: FrameProblem | None
    problem_offset: int | None


@dataclass(frozen=True)
class BatchMarker:
    """A decoded batch marker: the batch's record count, CRC and byte length."""

    count: int
    crc: int
    length: int


class SegmentHeaderError(ValueError):
    """The segment header has the wrong magic or an unknown version."""


def encode_frame(payload: bytes) -> bytes:
    """Frame one payload: length and CRC32 header, then the payload.

    Raises:
        ValueError: if the payload is empty or longer than ``MAX_PAYLOAD``.
    """
    size = len(payload)
    if size == 0:
        raise ValueError("refusing to frame an empty payload")
    if size > MAX_PAYLOAD:
        raise ValueError(f"payload of {size} bytes does not fit a u32 length")
    return FRAME_HEADER.pack(size, zlib.crc32(payload)) + payload


def decode_frames(data: bytes, start: int) -> FrameScan:
    """Scan ``data`` from offset ``start`` for consecutive frames.

    Args:
        data: the bytes to scan (typically a whole segment file).
        start: where the first frame begins (after the segment header).

    Returns:
        A ``FrameScan``; scanning stops at the end of data or at the first
        torn or CRC-bad frame (see the module rules).

    Raises:
        ValueError: if ``start`` lies outside ``data``.
    """
    end = len(data)
    if not 0 <= start <= end:
        raise ValueError(f"start {start} outside data of length {end}")
    view = memoryview(data)
    payloads: list[bytes] = []
    offsets: list[int] = []
    offset = start
    problem: FrameProblem | None = None
    while offset < end:
        body_start = offset + FRAME_HEADER_SIZE
        if body_start > end:
            problem = "torn"
            break
        length, crc = FRAME_HEADER.unpack_from(data, offset)
        body_end = body_start + length
        if body_end > end:
            problem = "torn"
            break
        payload = bytes(view[body_start:body_end])
        if length == 0 or zlib.crc32(payload) != crc:
            problem = "crc"
            break
        payloads.append(payload)
        offsets.append(offset)
        offset = body_end
    return FrameScan(
        payloads=payloads,
        offsets=offsets,
        valid_end=offset,
        problem=problem,
        problem_offset=offset if problem is not None else None,
    )


def encode_segment_header(version: int = FORMAT_VERSION) -> bytes:
    """Return the 12-byte header that opens every segment file."""
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, version)


def decode_segment_header(data: bytes) -> int:
    """Check the segment header at the start of ``data``; return its version.

    Raises:
        ValueError: if ``data`` is shorter than ``SEGMENT_HEADER_SIZE``.
        SegmentHeaderError: on a wrong magic or an unsupported version.
    """
    if len(data) < SEGMENT_HEADER_SIZE:
        raise ValueError(f"segment header needs {SEGMENT_HEADER_SIZE} bytes, got {len(data)}")
    magic, version = SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        raise SegmentHeaderError(f"bad magic {magic!r}")
    if version not in SUPPORTED_VERSIONS:
        raise SegmentHeaderError(f"unsupported format version {version}")
    return int(version)


def encode_batch_marker(count: int, crc: int, length: int) -> bytes:
    """The marker frame that closes a batch of ``count`` record frames.

    Args:
        count: record frames in the batch (at least 1).
        crc: ``zlib.crc32`` of the batch's record frames, back to back.
        length: total bytes of those frames.

    Raises:
        ValueError: on a count below 1 or values that do not fit the layout.
    """
    if not 1 <= count <= 0xFFFF_FFFF or not 0 <= crc <= 0xFFFF_FFFF or length < 0:
        raise ValueError(f"bad batch marker fields count={count} crc={crc} length={length}")
    return encode_frame(BATCH_MARKER.pack(BATCH_MARKER_MAGIC, count, crc, length))


def decode_batch_marker(payload: bytes) -> BatchMarker | None:
    """The marker in a frame payload, or None if the payload is not a marker.

    A payload that starts with the marker magic but has the wrong size is
    not a marker either; the caller sees it as a bad frame.
    """
    if len(payload) != BATCH_MARKER_SIZE or not payload.startswith(BATCH_MARKER_MAGIC):
        return None
    _magic, count, crc, length = BATCH_MARKER.unpack(payload)
    return BatchMarker(count=count, crc=crc, length=length)


def is_batch_marker_payload(payload: bytes) -> bool:
    """True if a frame payload claims to be a marker (starts with its magic)."""
    return payload[:1] == BATCH_MARKER_MAGIC[:1]


def find_batch_marker(data: bytes, start: int) -> int | None:
    """Offset of the first whole, CRC-valid marker frame starting at or after ``start``.

    Looks at raw bytes, not at frame boundaries, so it finds a marker even
    past a frame whose length field is damaged.
    """
    at = max(start, 0) + FRAME_HEADER_SIZE
    while (found := data.find(BATCH_MARKER_MAGIC, at)) != -1:
        frame_start = found - FRAME_HEADER_SIZE
        end = frame_start + BATCH_MARKER_FRAME_SIZE
        if end <= len(data):
            length, crc = FRAME_HEADER.unpack_from(data, frame_start)
            if length == BATCH_MARKER_SIZE and zlib.crc32(data[found:end]) == crc:
                return frame_start
        at = found + 1
    return None
