"""Recovery: snapshot choice and fallback, tail truncation, mid-log corruption."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack
import pytest

from backchannel.storage.framing import BATCH_MARKER_FRAME_SIZE, SEGMENT_HEADER_SIZE, encode_frame
from backchannel.storage.log import LogWriter, list_segments, read_segment, segment_name
from backchannel.storage.recovery import CorruptLog, recover
from backchannel.storage.snapshot import list_snapshots, snapshot_name, write_snapshot


def _records(first: int, last: int) -> list[tuple[int, Any]]:
    return [(seq, ["event", seq]) for seq in range(first, last + 1)]


def _log(directory: Path, *segments: tuple[int, int]) -> list[Path]:
    """Write one segment per (first, last) range; return the segment paths."""
    writer = LogWriter(directory, segments[0][0])
    for first, last in segments:
        writer.write_batch(_records(first, last))
        writer.roll()
    writer.close()
    return list_segments(directory)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


def test_missing_directory_is_created(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    result = recover(directory)
    assert directory.is_dir()
    assert (result.snapshot_path, result.records, result.last_seq) == (None, [], 0)


def test_empty_directory(tmp_path: Path) -> None:
    result = recover(tmp_path)
    assert result.snapshot_seq == 0
    assert result.snapshot_payload is None
    assert result.records == []
    assert result.warnings == []
    assert not result.truncated_tail
    assert result.last_seq == 0


def test_log_only(tmp_path: Path) -> None:
    _log(tmp_path, (1, 5), (6, 9))
    result = recover(tmp_path)
    assert result.records == _records(1, 9)
    assert result.last_seq == 9
    assert "9" in result.describe()


def test_newest_snapshot_and_later_records(tmp_path: Path) -> None:
    _log(tmp_path, (1, 5), (6, 12))
    write_snapshot(tmp_path, 3, b"old")
    write_snapshot(tmp_path, 7, b"new")
    result = recover(tmp_path)
    assert result.snapshot_path == tmp_path / snapshot_name(7)
    assert (result.snapshot_seq, bytes(result.snapshot_payload or b"")) == (7, b"new")
    assert result.records == _records(8, 12)
    assert result.last_seq == 12
    assert result.warnings == []


def test_snapshot_covering_everything(tmp_path: Path) -> None:
    _log(tmp_path, (1, 5))
    write_snapshot(tmp_path, 9, b"state")
    result = recover(tmp_path)
    assert result.records == []
    assert result.last_seq == 9


def test_corrupt_newest_snapshot_falls_back_with_warning(tmp_path: Path) -> None:
    _log(tmp_path, (1, 12))
    write_snapshot(tmp_path, 3, b"old")
    newest = write_snapshot(tmp_path, 7, b"new")
    _flip(newest, 30)
    result = recover(tmp_path)
    assert (result.snapshot_seq, bytes(result.snapshot_payload or b"")) == (3, b"old")
    assert result.records == _records(4, 12)
    assert len(result.warnings) == 1
    assert newest.name in result.warnings[0]
    assert "CRC" in result.warnings[0]
    # quarantined: out of the snapshot list, so pruning cannot keep it
    assert not newest.exists()
    assert newest.with_name(newest.name + ".corrupt").exists()
    assert [p.name for p in list_snapshots(tmp_path)] == ["snapshot-00000000000000000003.bcsnap"]


def test_all_snapshots_corrupt_replays_whole_log(tmp_path: Path) -> None:
    _log(tmp_path, (1, 4))
    _flip(write_snapshot(tmp_path, 2, b"a"), 0)
    _flip(write_snapshot(tmp_path, 3, b"b"), 0)
    result = recover(tmp_path)
    assert result.snapshot_path is None
    assert result.records == _records(1, 4)
    assert len(result.warnings) == 2


def test_fallback_to_snapshot_whose_log_was_pruned_is_a_gap(tmp_path: Path) -> None:
    _log(tmp_path, (8, 12))
    write_snapshot(tmp_path, 3, b"old")
    _flip(write_snapshot(tmp_path, 7, b"new"), 30)
    with pytest.raises(CorruptLog, match="gap") as info:
        recover(tmp_path)
    assert info.value.path.name == segment_name(8)
    assert info.value.offset == SEGMENT_HEADER_SIZE


def _last_batch_cuts() -> list[int]:
    batch = b"".join(encode_frame(msgpack.packb([s, ["event", s]])) for s in (4, 5))
    return list(range(1, len(batch) + BATCH_MARKER_FRAME_SIZE))


@pytest.mark.parametrize("keep", _last_batch_cuts())
def test_torn_tail_truncated_at_every_offset_of_the_last_batch(tmp_path: Path, keep: int) -> None:
    """A cut anywhere in the last batch (records or marker) drops that whole batch."""
    writer = LogWriter(tmp_path, 1)
    writer.write_batch(_records(1, 3))
    writer.write_batch(_records(4, 5))
    writer.close()
    [path] = list_segments(tmp_path)
    scan = read_segment(path)
    last_start = scan.batch_starts[-1]
    assert path.stat().st_size == last_start + _last_batch_cuts()[-1] + 1
    os.truncate(path, last_start + keep)
    result = recover(tmp_path)
    assert result.records == _records(1, 3)
    assert result.truncated_tail
    assert result.last_seq == 3
    assert path.stat().st_size == last_start
    assert any("torn" in w and path.name in w for w in result.warnings)
    again = recover(tmp_path)
    assert (again.records, again.warnings, again.truncated_tail) == (_records(1, 3), [], False)


def test_crc_bad_record_in_the_last_complete_batch_is_damage(tmp_path: Path) -> None:
    """Before batch markers this was taken for a torn tail and cut silently."""
    _first, last = _log(tmp_path, (1, 3), (4, 6))
    offsets = read_segment(last).offsets
    _flip(last, offsets[1] + 9)
    size = last.stat().st_size
    with pytest.raises(CorruptLog, match="CRC") as info:
        recover(tmp_path)
    assert (info.value.path, info.value.offset) == (last, offsets[1])
    assert last.stat().st_size == size
    result = recover(tmp_path, allow_truncate=True)
    assert result.records == _records(1, 3)
    assert not last.exists()  # its only batch held the damage


def test_last_segment_without_records_is_removed(tmp_path: Path) -> None:
    first, last = _log(tmp_path, (1, 3), (4, 6))
    os.truncate(last, SEGMENT_HEADER_SIZE + 3)
    result = recover(tmp_path)
    assert result.records == _records(1, 3)
    assert result.truncated_tail
    assert list_segments(tmp_path) == [first]
    # the next writer can now create that segment again
    writer = LogWriter(tmp_path, result.last_seq + 1)
    writer.write_batch(_records(4, 4))
    writer.close()
    assert recover(tmp_path).records == _records(1, 4)


def test_zero_filled_tail_is_truncated(tmp_path: Path) -> None:
    [path] = _log(tmp_path, (1, 3))
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(bytes(4096))
    result = recover(tmp_path)
    assert result.records == _records(1, 3)
    assert path.stat().st_size == size


def test_mid_log_corruption_raises_naming_file_and_offset(tmp_path: Path) -> None:
    first, second, third = _log(tmp_path, (1, 3), (4, 6), (7, 9))
    bad_offset = read_segment(second).offsets[1]
    _flip(second, bad_offset + 10)
    sizes = [p.stat().st_size for p in (first, second, third)]
    with pytest.raises(CorruptLog) as info:
        recover(tmp_path)
    assert info.value.path == second
    assert info.value.offset == bad_offset
    assert str(second) in str(info.value)
    assert f"offset {bad_offset}" in str(info.value)
    assert [p.stat().st_size for p in (first, second, third)] == sizes


def test_torn_record_in_earlier_segment_is_corruption(tmp_path: Path) -> None:
    first, _second = _log(tmp_path, (1, 3), (4, 6))
    os.truncate(first, first.stat().st_size - 2)
    with pytest.raises(CorruptLog, match="torn"):
        recover(tmp_path)


def test_allow_truncate_cuts_segment_and_deletes_later(tmp_path: Path) -> None:
    first, second, third = _log(tmp_path, (1, 3), (4, 6), (7, 9))
    bad_offset = read_segment(second).offsets[1]
    _flip(second, bad_offset + 10)
    result = recover(tmp_path, allow_truncate=True)
    # the cut keeps whole batches: (4, 6) was one batch, so all of it goes
    assert result.records == _records(1, 3)
    assert result.last_seq == 3
    assert result.truncated_tail
    assert list_segments(tmp_path) == [first]
    assert any(second.name in w and str(bad_offset) in w for w in result.warnings)
    assert any(third.name in w for w in result.warnings)


def test_bad_header_in_last_segment_is_corruption(tmp_path: Path) -> None:
    _first, last = _log(tmp_path, (1, 3), (4, 6))
    data = last.read_bytes()
    last.write_bytes(b"GARBAGE!" + data[8:])
    with pytest.raises(CorruptLog, match="header"):
        recover(tmp_path)
    result = recover(tmp_path, allow_truncate=True)
    assert result.records == _records(1, 3)
    assert not last.exists()


def test_out_of_order_segments_are_corruption(tmp_path: Path) -> None:
    _log(tmp_path, (1, 5))
    stray = tmp_path / "other"
    _log(stray, (3, 4))
    (stray / segment_name(3)).rename(tmp_path / segment_name(3))
    with pytest.raises(CorruptLog, match="does not follow"):
        recover(tmp_path)
