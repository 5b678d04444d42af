"""Batch markers: recovery tells an incomplete last batch from damage.

The newest segment is written as three group commits. Every byte of it is
flipped in turn (each position class: header, record length, CRC, payload,
marker frame and marker fields, in every batch), the last batch is cut at
every offset, and logs written before markers (format version 1) still load.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest

from backchannel.storage.framing import (
    BATCH_MARKER_FRAME_SIZE,
    FRAME_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    decode_batch_marker,
    encode_batch_marker,
    encode_frame,
    encode_segment_header,
    find_batch_marker,
)
from backchannel.storage.log import LogWriter, encode_record, list_segments, read_segment
from backchannel.storage.recovery import CorruptLog, recover
from backchannel.storage.segments import segment_name

_BATCHES = ((1, 2), (3, 5), (6, 7))  # the newest segment's group commits


def _records(first: int, last: int) -> list[tuple[int, Any]]:
    return [(seq, ["event", seq, "x" * seq]) for seq in range(first, last + 1)]


def _write(directory: Path) -> tuple[Path, list[int]]:
    """An older segment (one batch) and the newest with ``_BATCHES``; return the
    newest segment and the end offset of each of its batches."""
    writer = LogWriter(directory, 1)
    ends: list[int] = []
    writer.write_batch(_records(1, 1))
    writer.roll()
    for first, last in _BATCHES:
        writer.write_batch(_records(first + 1, last + 1))
        writer.sync()
        ends.append(writer._size)
    writer.close()
    segments = list_segments(directory)
    assert len(segments) == 2
    return segments[-1], ends


def test_each_group_commit_ends_with_a_marker_that_counts_it(tmp_path: Path) -> None:
    newest, ends = _write(tmp_path)
    data = newest.read_bytes()
    start = SEGMENT_HEADER_SIZE
    for (first, last), end in zip(_BATCHES, ends, strict=True):
        marker_at = end - BATCH_MARKER_FRAME_SIZE
        assert find_batch_marker(data, start) == marker_at
        marker = decode_batch_marker(data[marker_at + FRAME_HEADER_SIZE : end])
        assert marker is not None
        assert marker.count == last - first + 1
        assert (marker.length, marker.crc) == (marker_at - start, zlib.crc32(data[start:marker_at]))
        start = end
    assert read_segment(newest).records == _records(2, 8)


def test_a_marker_is_never_a_record_and_needs_a_batch() -> None:
    assert msgpack.packb([1, "x"])[:1] != encode_batch_marker(1, 0, 0)[FRAME_HEADER_SIZE:][:1]
    with pytest.raises(ValueError, match="count"):
        encode_batch_marker(0, 0, 0)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


def test_every_flipped_byte_of_the_newest_segment_is_damage(tmp_path: Path) -> None:
    """Whatever byte is hit, in whatever batch, recovery refuses and names it.

    The three reserved header bytes are the exception: nothing reads them.
    """
    newest, ends = _write(tmp_path / "model")
    original = newest.read_bytes()
    reserved = range(9, SEGMENT_HEADER_SIZE)
    checked = 0
    for offset in range(len(original)):
        if offset in reserved:
            continue
        directory = tmp_path / f"flip-{offset}"
        directory.mkdir()
        for segment in list_segments(newest.parent):
            (directory / segment.name).write_bytes(segment.read_bytes())
        target = directory / newest.name
        _flip(target, offset)
        with pytest.raises(CorruptLog) as info:
            recover(directory)
        assert info.value.path == target, offset
        assert info.value.offset <= offset or offset < SEGMENT_HEADER_SIZE, offset
        assert target.read_bytes() != original  # nothing cut without consent
        # --allow-truncate keeps every batch before the damaged one, whole
        batch = next((i for i, end in enumerate(ends) if offset < end), 0)
        if offset < SEGMENT_HEADER_SIZE:
            batch = 0
        kept_last = _BATCHES[batch - 1][1] + 1 if batch else 1  # seq 1 is the older segment
        result = recover(directory, allow_truncate=True)
        assert result.records == _records(1, kept_last), offset
        checked += 1
    assert checked == len(original) - len(reserved)


def test_a_good_batch_after_a_bad_one_is_named(tmp_path: Path) -> None:
    newest, _ends = _write(tmp_path)
    scan = read_segment(newest)
    second_batch_record = scan.offsets[2]  # seq 4, inside the middle batch
    _flip(newest, second_batch_record + FRAME_HEADER_SIZE + 3)
    with pytest.raises(CorruptLog, match="CRC") as info:
        recover(tmp_path)
    assert info.value.offset == second_batch_record
    assert f"{newest} at byte offset {second_batch_record}" in str(info.value)


@pytest.mark.parametrize("damage", ["length-up", "length-down", "marker-length"])
def test_damaged_lengths_are_not_mistaken_for_a_torn_tail(tmp_path: Path, damage: str) -> None:
    newest, ends = _write(tmp_path)
    scan = read_segment(newest)
    data = bytearray(newest.read_bytes())
    last_record = scan.offsets[-1]
    if damage == "length-up":  # runs past the end of the file: past its own marker
        data[last_record + 3] = 0x7F
    elif damage == "length-down":
        data[last_record] -= 1
    else:  # the last marker claims more bytes than the file holds
        data[ends[-1] - BATCH_MARKER_FRAME_SIZE + 2] = 0x7F
    newest.write_bytes(bytes(data))
    with pytest.raises(CorruptLog):
        recover(tmp_path)


def test_zeros_after_the_last_batch_are_a_torn_tail(tmp_path: Path) -> None:
    """What a crash leaves when the file grew but its blocks were never written."""
    newest, ends = _write(tmp_path)
    data = newest.read_bytes()
    zeroed = read_segment(newest).offsets[-1]  # the last batch's second record, zeros on
    assert ends[1] < zeroed < ends[2]
    newest.write_bytes(data[:zeroed] + bytes(len(data) - zeroed + 4096))
    result = recover(tmp_path)
    assert result.records == _records(1, 6)
    assert newest.stat().st_size == ends[1]
    assert result.truncated_tail


def _v1_segment(directory: Path, first: int, last: int, extra: bytes = b"") -> Path:
    """A segment as written before batch markers: version 1, no markers."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / segment_name(first)
    frames = b"".join(encode_record(seq, body) for seq, body in _records(first, last))
    path.write_bytes(encode_segment_header(version=1) + frames + extra)
    return path


def test_logs_written_before_markers_still_load_and_continue(tmp_path: Path) -> None:
    _v1_segment(tmp_path, 1, 4)
    result = recover(tmp_path)
    assert result.records == _records(1, 4)
    writer = LogWriter(tmp_path, result.last_seq + 1)
    writer.write_batch(_records(5, 6))
    writer.close()
    assert recover(tmp_path).records == _records(1, 6)


def test_a_version_1_tail_keeps_its_old_meaning(tmp_path: Path) -> None:
    """A torn or CRC-bad last frame of a v1 segment is cut, as it always was."""
    bad = bytearray(encode_frame(msgpack.packb([5, ["event", 5, "xxxxx"]])))
    bad[-1] ^= 0x55
    path = _v1_segment(tmp_path, 1, 4, bytes(bad))
    size = path.stat().st_size
    result = recover(tmp_path)
    assert result.records == _records(1, 4)
    assert path.stat().st_size == size - len(bad)
    assert result.truncated_tail


def test_read_only_recovery_changes_nothing(tmp_path: Path) -> None:
    newest, ends = _write(tmp_path)
    data = newest.read_bytes()
    newest.write_bytes(data[: ends[1] + 7])  # a write in progress
    result = recover(tmp_path, read_only=True)
    assert result.records == _records(1, 6)
    assert newest.stat().st_size == ends[1] + 7
    assert not result.truncated_tail
    with pytest.raises(ValueError, match="read_only"):
        recover(tmp_path, read_only=True, allow_truncate=True)
