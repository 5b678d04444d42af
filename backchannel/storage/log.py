"""Log segments on disk: append framed records, read them back, prune them.

Blocking file code: call it from a worker thread (``trio.to_thread``), never
from the event loop.

Theory of operation
===================

The log is a directory of segment files named ``log-<first seq>.bclog``
(20 digits, so names sort like numbers). Each segment is a header and then
frames (layout in ``framing``); each record frame's payload is
``msgpack.packb([seq, body], use_bin_type=True)``, and each batch ends with
a batch marker frame. Sequence numbers are positive and strictly increase
across the whole log, so a segment's records all lie between its own first
seq and the next segment's first seq. Reading segments back lives in
``segments`` (re-exported here).

Rules
-----

1. One batch, one ``os.write``: ``LogWriter.write_frames`` concatenates the
   frames of a batch (plus the segment header for a fresh segment) and its
   batch marker (count, length and CRC of the batch, written last) and hands
   the OS a single buffer. A short write is continued, never dropped. One
   call is one batch: a reader returns a batch's records only with its
   marker, so a crash mid-append loses the whole unacknowledged batch and
   nothing else.
2. A segment is created only when a batch needs it (``O_EXCL``: we never
   append to or overwrite an existing file, so a restart always starts a new
   segment after the recovered tail). The directory is fsynced on the next
   ``sync`` so the new name is durable too.
3. Before a segment is closed (by size, ``roll`` or ``close``) it is fsynced
   if it has unsynced writes. Hence only the newest segment can ever hold a
   torn tail; recovery relies on that to tell a crash from corruption.
4. Files are created owner-only (0600; directories 0700).
5. Any ``OSError`` propagates. After one, the writer is ``failed``: it makes
   no further writes or fsyncs (after a failed fsync the kernel may have
   dropped the dirty pages, and a retried fsync can falsely succeed).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import msgpack

from backchannel.storage.framing import encode_batch_marker, encode_frame, encode_segment_header
from backchannel.storage.segments import (
    SegmentProblem,
    SegmentScan,
    list_segments,
    read_segment,
    segment_first_seq,
    segment_name,
)

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "DIR_MODE",
    "FILE_MODE",
    "LogWriter",
    "SegmentProblem",
    "SegmentScan",
    "WriterFailed",
    "delete_segments_before",
    "encode_record",
    "fsync_directory",
    "list_segments",
    "read_segment",
    "segment_first_seq",
    "segment_name",
]

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700


class WriterFailed(RuntimeError):
    """The writer hit an OSError earlier and refuses further I/O."""


def encode_record(seq: int, body: Any) -> bytes:
    """Frame one log record ``[seq, body]``.

    Raises:
        ValueError: if ``seq`` is not a positive int.
        TypeError: if ``body`` cannot be packed by msgpack.
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq <= 0:
        raise ValueError(f"seq must be a positive int, got {seq!r}")
    payload: bytes = msgpack.packb([seq, body], use_bin_type=True)
    return encode_frame(payload)


def fsync_directory(directory: Path) -> None:
    """fsync a directory so entries created, renamed or removed in it persist."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def delete_segments_before(directory: Path, seq: int) -> list[Path]:
    """Delete segments whose records are all < ``seq``; return what was removed.

    A segment's last seq is bounded by the next segment's first seq, so
    segment *i* is removed only when segment *i+1* starts at or below
    ``seq``. The newest segment is never removed (the writer may have it
    open). After a snapshot covering seq S, call this with the *oldest kept*
    snapshot's S + 1, or recovery cannot fall back to that snapshot.

    Raises:
        OSError: if a removal or the directory fsync fails.
    """
    segments = list_segments(directory)
    removed: list[Path] = []
    for current, following in itertools.pairwise(segments):
        next_first = segment_first_seq(following)
        if next_first is None or next_first > seq:
            break
        current.unlink()
        removed.append(current)
    if removed:
        fsync_directory(directory)
    return removed


class LogWriter:
    """Appends framed records to the newest segment of a log directory.

    Not thread-safe: use it from one thread at a time (the journal task
    makes every call through ``trio.to_thread.run_sync``, one at a time).

    Args:
        directory: the log directory (created if missing).
        next_seq_hint: the lowest seq the next batch may carry, normally
            ``recovered.last_seq + 1``.
        segment_bytes: a batch that finds the open segment at or above this
            size starts a new segment (segments can exceed it by one batch).

    Raises:
        ValueError: if an existing segment starts at or after
            ``next_seq_hint`` (the hint would rewrite history).
    """

    def __init__(
        self,
        directory: Path,
        next_seq_hint: int,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if next_seq_hint <= 0:
            raise ValueError(f"next_seq_hint must be positive, got {next_seq_hint}")
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        existing = list_segments(directory)
        if existing:
            newest_first = segment_first_seq(existing[-1])
            if newest_first is not None and newest_first >= next_seq_hint:
                raise ValueError(
                    f"{existing[-1]} starts at seq {newest_first}, "
                    f"not below next_seq_hint {next_seq_hint}"
                )
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._next_min_seq = next_seq_hint
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._file_dirty = False
        self._dir_dirty = False
        self._failed: OSError | None = None

    @property
    def current_path(self) -> Path | None:
        """The open segment, or None between segments."""
        return self._path

    @property
    def failed(self) -> bool:
        """True once any OSError has escaped from this writer."""
        return self._failed is not None

    def write_batch(self, records: Sequence[tuple[int, Any]]) -> None:
        """Frame ``(seq, body)`` records and append them with one write.

        Raises:
            ValueError: on a non-positive or non-increasing seq.
            TypeError: if a body cannot be packed.
            OSError: if the write fails (the writer is then failed).
            WriterFailed: if an earlier call failed.
        """
        self.write_frames([(seq, encode_record(seq, body)) for seq, body in records])

    def write_frames(self, frames: Sequence[tuple[int, bytes]]) -> None:
        """Append already-encoded records (``(seq, encode_record(seq, body))``) as one batch.

        The batch is closed by its marker in the same write (module rule 1).
        Lets the caller pack bodies early (and fail early on unpackable
        ones) while the write happens later in a thread. Not durable until
        ``sync``.

        Raises:
            ValueError: on a non-positive or non-increasing seq.
            OSError: if the write fails (the writer is then failed).
            WriterFailed: if an earlier call failed.
        """
        self._check_usable()
        if not frames:
            return
        expected = self._next_min_seq
        for seq, _ in frames:
            if seq < expected:
                raise ValueError(f"seq {seq} out of order: expected at least {expected}")
            expected = seq + 1
        with self._failing_on_oserror():
            parts: list[bytes] = []
            if self._fd is not None and self._size >= self.segment_bytes:
                self._close_current()
            if self._fd is None:
                self._open_segment(frames[0][0])
                parts.append(encode_segment_header())
            crc = length = 0
            for _, frame in frames:
                parts.append(frame)
                crc = zlib.crc32(frame, crc)
                length += len(frame)
            parts.append(encode_batch_marker(len(frames), crc, length))
            self._write_all(b"".join(parts))
        self._next_min_seq = expected

    def sync(self) -> None:
        """Make everything written so far durable (fsync file, then directory).

        Skips the fsync when nothing was written since the last one.

        Raises:
            OSError: if an fsync fails (the writer is then failed).
            WriterFailed: if an earlier call failed.
        """
        self._check_usable()
        with self._failing_on_oserror():
            self._sync_current()

    def roll(self) -> None:
        """Sync and close the current segment; the next write opens a new one.

        Raises:
            OSError: if the fsync or close fails (the writer is then failed).
            WriterFailed: if an earlier call failed.
        """
        self._check_usable()
        with self._failing_on_oserror():
            self._close_current()

    def close(self) -> None:
        """Sync (unless failed) and close the current segment. Idempotent.

        Raises:
            OSError: if the fsync or close fails.
        """
        if self._failed is not None:
            fd, self._fd, self._path = self._fd, None, None
            if fd is not None:
                os.close(fd)
            return
        with self._failing_on_oserror():
            self._close_current()

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise WriterFailed("log writer failed earlier") from self._failed

    @contextlib.contextmanager
    def _failing_on_oserror(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if self._failed is None:
                self._failed = exc
            raise

    def _open_segment(self, first_seq: int) -> None:
        path = self.directory / segment_name(first_seq)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(path, flags, FILE_MODE)
        self._path = path
        self._size = 0
        self._dir_dirty = True
        logger.debug("opened log segment %s", path)

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            self._file_dirty = True
            self._size += written
            view = view[written:]

    def _sync_current(self) -> None:
        if self._fd is not None and self._file_dirty:
            os.fsync(self._fd)
            self._file_dirty = False
        if self._dir_dirty:
            fsync_directory(self.directory)
            self._dir_dirty = False

    def _close_current(self) -> None:
        self._sync_current()
        fd, self._fd, self._path = self._fd, None, None
        if fd is not None:
            os.close(fd)
