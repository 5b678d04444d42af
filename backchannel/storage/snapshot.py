"""Snapshot files: one checksummed blob of packed state per covered seq.

Blocking file code: call it from a worker thread.

Theory of operation
===================

A snapshot captures the whole state after applying every log record up to
and including ``seq``. The payload is whatever bytes the caller packed
(msgpack of the runtime's state); this module only frames it::

    +--------------------------+---------+----------+------------+--------------+-------+
    | magic b"BCSNAP" (6)      | version | reserved | seq (u64)  | length (u64) | crc32 |
    +--------------------------+---------+----------+------------+--------------+-------+
     0                          6         7          8            16             24    28
    struct "<6sB1xQQI" (28 bytes), then ``length`` payload bytes, nothing after.

Rules
-----

1. Written atomically: ``snapshot-<seq>.bcsnap.tmp`` is written, fsynced,
   renamed over ``snapshot-<seq>.bcsnap`` and the directory fsynced. A
   reader therefore sees either no snapshot for ``seq`` or a complete one;
   a crash leaves at most a ``.tmp`` file, which ``prune_snapshots`` removes.
2. Loading verifies magic, version, exact length, CRC and that the header's
   seq matches the file name; any mismatch is ``CorruptSnapshot`` so that
   recovery can fall back to an older snapshot.
3. Files are created owner-only (0600).
4. Keep more than one snapshot (``prune_snapshots(keep=2)``) and keep the
   log from the oldest kept one onwards, or the fallback has nothing to
   replay from.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from backchannel.storage.log import DIR_MODE, FILE_MODE, fsync_directory

__all__ = [
    "SNAPSHOT_HEADER",
    "SNAPSHOT_HEADER_SIZE",
    "SNAPSHOT_MAGIC",
    "SNAPSHOT_VERSION",
    "CorruptSnapshot",
    "list_snapshots",
    "load_snapshot",
    "prune_snapshots",
    "snapshot_name",
    "snapshot_seq",
    "write_snapshot",
]

logger = logging.getLogger(__name__)

SNAPSHOT_MAGIC: Final = b"BCSNAP"
SNAPSHOT_VERSION: Final = 1
SNAPSHOT_HEADER: Final = struct.Struct("<6sB1xQQI")
SNAPSHOT_HEADER_SIZE: Final = 28
assert SNAPSHOT_HEADER.size == struct.calcsize("<6sB1xQQI") == SNAPSHOT_HEADER_SIZE

_SNAPSHOT_RE: Final = re.compile(r"^snapshot-(\d{20})\.bcsnap$")
_TMP_RE: Final = re.compile(r"^snapshot-\d{20}\.bcsnap\.tmp$")


class CorruptSnapshot(Exception):
    """A snapshot file failed validation.

    Attributes:
        path: the file.
        reason: what was wrong, for logs and startup reports.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"corrupt snapshot {path}: {reason}")
        self.path = path
        self.reason = reason


def snapshot_name(seq: int) -> str:
    """File name of the snapshot covering ``seq``."""
    if seq < 0:
        raise ValueError(f"seq must not be negative, got {seq}")
    return f"snapshot-{seq:020d}.bcsnap"


def snapshot_seq(path: Path) -> int | None:
    """Seq encoded in a snapshot file name, or None if not a snapshot."""
    match = _SNAPSHOT_RE.match(path.name)
    return int(match.group(1)) if match else None


def write_snapshot(
    directory: Path, seq: int, payload: bytes | memoryview | Sequence[bytes | memoryview]
) -> Path:
    """Atomically write the snapshot covering ``seq``; return its final path.

    ``payload`` may be given as pieces, written one after the other without
    ever being joined, so a large snapshot is never copied in memory.

    Durability:
        When this returns, the file and its name are on stable storage
        (file fsync before the rename, directory fsync after it).

    Raises:
        OSError: on any I/O failure; the temp file is removed first
            (a failure to remove it is logged, the original error raised).
    """
    pieces = [payload] if isinstance(payload, bytes | bytearray | memoryview) else list(payload)
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    final = directory / snapshot_name(seq)
    temp = final.with_name(final.name + ".tmp")
    crc = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
    size = sum(len(piece) for piece in pieces)
    header = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, seq, size, crc)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            for piece in (header, *pieces):
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
    except OSError:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            logger.warning("could not remove temp snapshot %s", temp, exc_info=True)
        raise
    fsync_directory(directory)
    return final


def load_snapshot(path: Path) -> tuple[int, memoryview]:
    """Map and verify a snapshot; return ``(seq, payload)``.

    The payload is a read-only view of the file mapped into memory, not a
    copy: a 400 MB snapshot is checked and decoded straight from the page
    cache (reading it into a new buffer took four times as long, issue 15).
    The view stays valid while referenced, even after the file is
    removed; snapshot files are never changed in place (rule 1).

    Raises:
        CorruptSnapshot: bad magic, version, length, CRC, or a header seq
            that disagrees with the file name.
        OSError: if the file cannot be read.
    """
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < SNAPSHOT_HEADER_SIZE:
            raise CorruptSnapshot(path, f"file of {size} bytes is shorter than the header")
        view = memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
    header = view[:SNAPSHOT_HEADER_SIZE]
    payload = view[SNAPSHOT_HEADER_SIZE:]
    magic, version, seq, length, crc = SNAPSHOT_HEADER.unpack_from(header, 0)
    if magic != SNAPSHOT_MAGIC:
        raise CorruptSnapshot(path, f"bad magic {magic!r}")
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshot(path, f"unsupported version {version}")
    actual = len(payload)
    if actual != length:
        raise CorruptSnapshot(path, f"header says {length} payload bytes, file has {actual}")
    if zlib.crc32(payload) != crc:
        raise CorruptSnapshot(path, "payload CRC mismatch")
    named = snapshot_seq(path)
    if named is not None and named != seq:
        raise CorruptSnapshot(path, f"header seq {seq} does not match file name seq {named}")
    return int(seq), payload


def list_snapshots(directory: Path) -> list[Path]:
    """Snapshot files in ``directory``, newest (highest seq) first."""
    if not directory.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for path in directory.iterdir():
        seq = snapshot_seq(path)
        if seq is not None and path.is_file():
            found.append((seq, path))
    found.sort(reverse=True)
    return [path for _, path in found]


def prune_snapshots(directory: Path, keep: int = 2) -> list[Path]:
    """Remove all but the ``keep`` newest snapshots and any leftover temp files.

    Do not run it concurrently with ``write_snapshot`` in the same directory:
    it would remove the temp file being written.

    Returns:
        The removed paths.

    Raises:
        ValueError: if ``keep`` < 1.
        OSError: if a removal fails.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    doomed = list_snapshots(directory)[keep:]
    if directory.is_dir():
        doomed.extend(p for p in directory.iterdir() if _TMP_RE.match(p.name))
    for path in doomed:
        path.unlink()
    if doomed:
        fsync_directory(directory)
    return doomed
