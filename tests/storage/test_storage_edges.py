"""Edges of the storage rules that mutation testing found unheld.

Each test fixes one boundary: a seq equal to the last one is not "after"
it, a gap of exactly one seq is a gap, an empty segment named for the last
seq is out of place, what ``allow_truncate`` returns stops at the problem,
and a snapshot file is written through ``<name>.tmp`` with mode 0600 (owner
only, whatever the umask) into a directory made on the way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from backchannel.storage.framing import encode_segment_header
from backchannel.storage.log import (
    LogWriter,
    encode_record,
    list_segments,
    read_segment,
    segment_name,
)
from backchannel.storage.recovery import CorruptLog, recover
from backchannel.storage.snapshot import load_snapshot, snapshot_name, write_snapshot


def _records(first: int, last: int) -> list[tuple[int, Any]]:
    return [(seq, ["event", seq]) for seq in range(first, last + 1)]


def _segment(directory: Path, first: int, last: int) -> Path:
    """One segment of records first..last, written in a scratch dir and moved in."""
    scratch = directory / f"scratch-{first}-{last}"
    writer = LogWriter(scratch, first)
    writer.write_batch(_records(first, last))
    writer.close()
    target = directory / segment_name(first)
    (scratch / segment_name(first)).rename(target)
    scratch.rmdir()
    return target


def test_a_segment_repeating_the_last_seq_is_corruption(tmp_path: Path) -> None:
    _segment(tmp_path, 1, 5)
    _segment(tmp_path, 5, 6)
    with pytest.raises(CorruptLog, match="seq 5 does not follow seq 5"):
        recover(tmp_path)


def test_a_gap_of_one_seq_is_corruption(tmp_path: Path) -> None:
    first = _segment(tmp_path, 1, 3)
    second = _segment(tmp_path, 5, 6)
    with pytest.raises(CorruptLog, match="gap: seq 5 follows seq 3") as info:
        recover(tmp_path)
    assert info.value.path == second

    result = recover(tmp_path, allow_truncate=True)
    assert result.records == _records(1, 3)  # nothing from beyond the gap
    assert result.last_seq == 3
    assert list_segments(tmp_path) == [first]


def test_an_empty_segment_named_for_the_last_seq_is_corruption(tmp_path: Path) -> None:
    _segment(tmp_path, 1, 4)
    (tmp_path / segment_name(4)).write_bytes(encode_segment_header())
    with pytest.raises(CorruptLog, match="empty segment named for seq 4 follows seq 4"):
        recover(tmp_path)


def test_a_snapshot_is_written_through_a_tmp_file_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[tuple[str, str]] = []
    stock_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        renamed.append((Path(src).name, Path(dst).name))
        stock_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    umask = os.umask(0o022)
    try:
        path = write_snapshot(tmp_path / "new" / "dir", 7, b"state")
    finally:
        os.umask(umask)
    assert renamed == [(snapshot_name(7) + ".tmp", snapshot_name(7))]
    assert path.stat().st_mode & 0o777 == 0o600
    seq, payload = load_snapshot(path)
    assert (seq, bytes(payload)) == (7, b"state")


def _fd_flags(path: Path) -> list[int]:
    """The open-file flags of every descriptor of this process open on ``path``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                info = Path(f"/proc/self/fdinfo/{fd}").read_text()
                found.append(int(info.split("flags:")[1].split()[0], 8))
    return found


def test_a_segment_is_appended_through_one_close_on_exec_descriptor(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    writer = LogWriter(directory, 1)
    assert writer.current_path is None
    writer.write_batch(_records(1, 2))
    path = directory / segment_name(1)
    assert writer.current_path == path
    [flags] = _fd_flags(path)
    assert flags & os.O_APPEND
    assert flags & os.O_CLOEXEC
    assert flags & os.O_ACCMODE == os.O_WRONLY
    assert path.stat().st_mode & 0o777 == 0o600  # owner only (issue 14)
    writer.roll()
    assert writer.current_path is None
    assert _fd_flags(path) == []
    writer.close()


def test_a_writer_refuses_nonsense_and_syncs_nothing_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="next_seq_hint must be positive, got 0"):
        LogWriter(tmp_path, 0)
    with pytest.raises(ValueError, match="segment_bytes must be positive, got 0"):
        LogWriter(tmp_path, 1, segment_bytes=0)
    fsyncs: list[int] = []
    stock = os.fsync

    def fsync(fd: int) -> None:
        fsyncs.append(fd)
        stock(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = LogWriter(tmp_path, 1, segment_bytes=1)
    writer.sync()
    assert fsyncs == []
    writer.write_batch(_records(1, 1))
    writer.sync()
    assert len(fsyncs) == 2  # the file, then the directory that got its name
    writer.sync()
    assert len(fsyncs) == 2
    writer.close()


def test_a_scan_reports_its_file_and_where_it_stopped(tmp_path: Path) -> None:
    torn = tmp_path / segment_name(1)
    torn.write_bytes(b"\x00" * 5)
    scan = read_segment(torn)
    assert (scan.path, scan.records, scan.offsets, scan.valid_end) == (torn, [], [], 0)
    assert (scan.problem, scan.problem_offset) == ("torn", 0)

    foreign = tmp_path / segment_name(2)
    foreign.write_bytes(b"NOTALOG!\x01\x00\x00\x00")
    scan = read_segment(foreign)
    assert (scan.path, scan.valid_end, scan.problem, scan.problem_offset) == (
        foreign, 0, "header", 0
    )  # fmt: skip

    _segment(tmp_path, 3, 4)
    repeated = tmp_path / segment_name(3)
    end = repeated.stat().st_size
    with repeated.open("ab") as f:
        f.write(encode_record(4, ["event", 4]))  # the same seq again
    scan = read_segment(repeated)
    assert scan.path == repeated
    assert scan.records == _records(3, 4)
    assert (scan.valid_end, scan.problem, scan.problem_offset) == (end, "record", end)
