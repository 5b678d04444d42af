"""Log segments: writing, reading back, rolling, pruning, failures."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import msgpack
import pytest

from backchannel.storage.framing import BATCH_MARKER_FRAME_SIZE, SEGMENT_HEADER_SIZE, encode_frame
from backchannel.storage.log import (
    LogWriter,
    WriterFailed,
    delete_segments_before,
    encode_record,
    list_segments,
    read_segment,
    segment_first_seq,
    segment_name,
)


def _records(first: int, count: int) -> list[tuple[int, Any]]:
    return [
        (seq, {"n": seq, "blob": b"\x00\x01", "tags": ["a", "b"]})
        for seq in range(first, first + count)
    ]


def _write(directory: Path, batches: list[list[tuple[int, Any]]], **kwargs: Any) -> LogWriter:
    writer = LogWriter(directory, batches[0][0][0], **kwargs)
    for batch in batches:
        writer.write_batch(batch)
        writer.sync()
    return writer


def test_segment_names_sort_numerically() -> None:
    assert segment_name(7) == "log-00000000000000000007.bclog"
    assert segment_first_seq(Path(segment_name(123))) == 123
    assert segment_first_seq(Path("log-7.bclog")) is None
    with pytest.raises(ValueError, match="positive"):
        segment_name(0)


def test_write_batch_and_read_back(tmp_path: Path) -> None:
    writer = _write(tmp_path, [_records(1, 3), _records(4, 2)])
    writer.close()
    [segment] = list_segments(tmp_path)
    assert segment.name == segment_name(1)
    scan = read_segment(segment)
    assert scan.records == _records(1, 5)
    assert scan.problem is None
    assert scan.valid_end == segment.stat().st_size
    assert scan.offsets[0] == SEGMENT_HEADER_SIZE


def test_one_batch_is_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: Any) -> int:
        calls.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    writer = LogWriter(tmp_path, 1)
    writer.write_batch(_records(1, 50))
    writer.write_batch(_records(51, 50))
    writer.close()
    assert len(calls) == 2
    assert sum(calls) == list_segments(tmp_path)[0].stat().st_size


def test_short_writes_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    writer = LogWriter(tmp_path, 1)
    writer.write_batch(_records(1, 4))
    writer.close()
    assert read_segment(list_segments(tmp_path)[0]).records == _records(1, 4)


def test_seqs_must_increase(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path, 5)
    with pytest.raises(ValueError, match="out of order"):
        writer.write_batch([(4, "x")])
    with pytest.raises(ValueError, match="out of order"):
        writer.write_batch([(5, "x"), (5, "y")])
    writer.write_batch([(5, "x"), (7, "y")])
    with pytest.raises(ValueError, match="out of order"):
        writer.write_batch([(7, "z")])
    writer.close()
    assert read_segment(list_segments(tmp_path)[0]).records == [(5, "x"), (7, "y")]


def test_unpackable_body_raises_before_any_io(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path, 1)
    with pytest.raises(TypeError):
        writer.write_batch([(1, object())])
    assert list_segments(tmp_path) == []
    with pytest.raises(ValueError, match="positive"):
        encode_record(0, "x")


def test_segments_roll_by_size(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path, 1, segment_bytes=200)
    for first in range(1, 40, 3):
        writer.write_batch(_records(first, 3))
    writer.close()
    segments = list_segments(tmp_path)
    assert len(segments) > 2
    firsts = [segment_first_seq(p) or 0 for p in segments]
    assert firsts == sorted(firsts)
    everything = [r for p in segments for r in read_segment(p).records]
    assert everything == _records(1, 39)
    for path in segments:
        scan = read_segment(path)
        assert scan.problem is None
        assert scan.records[0][0] == segment_first_seq(path)


def test_roll_starts_new_segment_named_after_next_batch(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path, 1)
    writer.write_batch(_records(1, 2))
    writer.roll()
    assert writer.current_path is None
    writer.roll()  # nothing open: no-op
    writer.write_batch(_records(3, 2))
    writer.close()
    assert [p.name for p in list_segments(tmp_path)] == [segment_name(1), segment_name(3)]


def test_never_reuses_an_existing_segment(tmp_path: Path) -> None:
    _write(tmp_path, [_records(1, 2)]).close()
    with pytest.raises(ValueError, match="next_seq_hint"):
        LogWriter(tmp_path, 1)
    writer = LogWriter(tmp_path, 3)
    writer.write_batch(_records(3, 1))
    writer.close()
    assert len(list_segments(tmp_path)) == 2


def test_oserror_propagates_and_writer_refuses_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = LogWriter(tmp_path, 1)
    writer.write_batch(_records(1, 1))

    def no_space(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(OSError, match="No space") as info:
        writer.write_batch(_records(2, 1))
    assert info.value.errno == errno.ENOSPC
    assert writer.failed
    monkeypatch.undo()
    with pytest.raises(WriterFailed):
        writer.write_batch(_records(2, 1))
    with pytest.raises(WriterFailed):
        writer.sync()
    writer.close()


def test_fsync_failure_propagates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = LogWriter(tmp_path, 1)
    writer.write_batch(_records(1, 1))

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        writer.sync()
    assert writer.failed
    writer.close()  # closes the fd without another fsync


def test_read_segment_torn_tail_drops_the_whole_incomplete_batch(tmp_path: Path) -> None:
    _write(tmp_path, [_records(1, 2), _records(3, 3)]).close()
    [path] = list_segments(tmp_path)
    full = read_segment(path)
    with path.open("r+b") as f:
        f.truncate(full.valid_end - 3)
    scan = read_segment(path)
    assert scan.records == _records(1, 2)
    assert scan.problem == "torn"
    assert scan.valid_end == full.offsets[2] == full.batch_starts[2]
    assert scan.problem_offset == full.valid_end - BATCH_MARKER_FRAME_SIZE  # the cut-off marker


@pytest.mark.parametrize("size", [0, 5, SEGMENT_HEADER_SIZE])
def test_read_segment_empty_or_short_file(tmp_path: Path, size: int) -> None:
    _write(tmp_path, [_records(1, 1)]).close()
    [path] = list_segments(tmp_path)
    os.truncate(path, size)
    scan = read_segment(path)
    assert scan.records == []
    if size < SEGMENT_HEADER_SIZE:
        assert (scan.problem, scan.problem_offset, scan.valid_end) == ("torn", 0, 0)
    else:
        assert (scan.problem, scan.valid_end) == (None, SEGMENT_HEADER_SIZE)


def test_read_segment_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_segment(tmp_path / segment_name(1))


def test_read_segment_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / segment_name(1)
    path.write_bytes(b"NOTALOG!\x01\x00\x00\x00" + encode_record(1, "x"))
    scan = read_segment(path)
    assert (scan.problem, scan.problem_offset, scan.records) == ("header", 0, [])


def test_read_segment_bad_record_with_good_crc(tmp_path: Path) -> None:
    _write(tmp_path, [_records(1, 2)]).close()
    [path] = list_segments(tmp_path)
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(encode_frame(msgpack.packb({"not": "a record"})))
    scan = read_segment(path)
    assert scan.records == _records(1, 2)
    assert (scan.problem, scan.problem_offset) == ("record", size)


def test_read_segment_first_record_must_match_name(tmp_path: Path) -> None:
    _write(tmp_path, [_records(1, 2)]).close()
    [path] = list_segments(tmp_path)
    renamed = path.rename(tmp_path / segment_name(2))
    scan = read_segment(renamed)
    assert (scan.problem, scan.records) == ("record", [])


def test_delete_segments_before(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path, 1)
    for first in (1, 11, 21, 31):
        writer.write_batch(_records(first, 10))
        writer.roll()
    writer.close()
    names = [p.name for p in list_segments(tmp_path)]
    # seq 25 lives in the third segment: the two before it go
    removed = delete_segments_before(tmp_path, 25)
    assert [p.name for p in removed] == names[:2]
    assert [p.name for p in list_segments(tmp_path)] == names[2:]
    # seq 21 starts the (now first) segment: nothing below it to delete
    assert delete_segments_before(tmp_path, 21) == []
    # everything is below 100, but the newest segment always stays
    assert [p.name for p in delete_segments_before(tmp_path, 100)] == [names[2]]
    assert [p.name for p in list_segments(tmp_path)] == [names[3]]


def test_delete_segments_before_boundary(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path, 1)
    writer.write_batch(_records(1, 10))
    writer.roll()
    writer.write_batch(_records(11, 10))
    writer.close()
    # records <= 10 are covered; seq 11 is needed and starts segment two
    assert [p.name for p in delete_segments_before(tmp_path, 11)] == [segment_name(1)]


def test_list_segments_ignores_other_files_and_missing_dir(tmp_path: Path) -> None:
    assert list_segments(tmp_path / "absent") == []
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "log-1.bclog").write_text("x")
    _write(tmp_path, [_records(5, 1)]).close()
    assert [p.name for p in list_segments(tmp_path)] == [segment_name(5)]
