"""Damage a crash cannot explain, in the newest segment too (recovery rule 4).

A crash can only tear or zero the tail of the newest segment; recovery cuts
that silently. A frame with a good CRC whose payload is not a record, or an
empty segment named for a seq the log has already passed, is a bug or a
foreign file: refusing to start is the only way not to lose acknowledged
writes quietly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from backchannel.storage.framing import encode_frame, encode_segment_header
from backchannel.storage.log import LogWriter, list_segments, read_segment, segment_name
from backchannel.storage.recovery import CorruptLog, recover
from backchannel.storage.snapshot import snapshot_name, write_snapshot


def _records(first: int, last: int) -> list[tuple[int, Any]]:
    return [(seq, ["event", seq]) for seq in range(first, last + 1)]


def _log(directory: Path, *segments: tuple[int, int]) -> list[Path]:
    writer = LogWriter(directory, segments[0][0])
    for first, last in segments:
        writer.write_batch(_records(first, last))
        writer.roll()
    writer.close()
    return list_segments(directory)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # never valid msgpack
        msgpack.packb({"not": "a record"}),
        msgpack.packb([0, "seq must be positive"]),
        msgpack.packb([7, "body", "extra"]),
    ],
)
def test_a_good_crc_record_that_cannot_be_decoded_in_the_newest_segment_is_corruption(
    tmp_path: Path, payload: bytes
) -> None:
    _first, last = _log(tmp_path, (1, 3), (4, 6))
    bad_offset = last.stat().st_size
    with last.open("ab") as f:
        f.write(encode_frame(payload))
    size = last.stat().st_size
    with pytest.raises(CorruptLog) as info:
        recover(tmp_path)
    assert (info.value.path, info.value.offset) == (last, bad_offset)
    # 0xC1 opens a batch marker, so that frame is a bad marker rather than a bad record
    assert ("batch marker" if payload == b"\xc1" else "undecodable") in info.value.reason
    assert last.stat().st_size == size  # nothing cut without the operator's consent

    result = recover(tmp_path, allow_truncate=True)
    assert result.records == _records(1, 6)
    assert last.stat().st_size == bad_offset
    assert any(last.name in w and str(bad_offset) in w for w in result.warnings)


def test_a_good_crc_record_out_of_order_in_the_newest_segment_is_corruption(
    tmp_path: Path,
) -> None:
    _first, last = _log(tmp_path, (1, 3), (4, 6))
    with last.open("ab") as f:
        f.write(encode_frame(msgpack.packb([5, ["event", 5]], use_bin_type=True)))
    with pytest.raises(CorruptLog, match="undecodable or out-of-order"):
        recover(tmp_path)


def test_an_empty_newest_segment_named_for_an_earlier_seq_is_corruption(tmp_path: Path) -> None:
    first, _second = _log(tmp_path, (1, 5), (6, 8))
    _second.unlink()
    stray = tmp_path / segment_name(3)
    stray.write_bytes(encode_segment_header())
    assert read_segment(stray).problem is None  # a clean, empty segment on its own
    with pytest.raises(CorruptLog, match="empty segment named for seq 3 follows seq 5") as info:
        recover(tmp_path)
    assert (info.value.path, info.value.offset) == (stray, 0)
    assert stray.exists()

    result = recover(tmp_path, allow_truncate=True)
    assert result.records == _records(1, 5)
    assert list_segments(tmp_path) == [first]


def test_an_empty_segment_named_for_an_earlier_seq_mid_log_is_corruption(tmp_path: Path) -> None:
    first, second = _log(tmp_path, (1, 5), (6, 8))
    stray = tmp_path / segment_name(4)
    stray.write_bytes(encode_segment_header())
    assert list_segments(tmp_path) == [first, stray, second]
    with pytest.raises(CorruptLog, match="empty segment named for seq 4 follows seq 5"):
        recover(tmp_path)


def test_an_empty_newest_segment_named_for_the_next_seq_is_a_crash_artefact(
    tmp_path: Path,
) -> None:
    """The counterpart: created, then the process died before its first record."""
    first, second = _log(tmp_path, (1, 5), (6, 8))
    second.unlink()
    fresh = tmp_path / segment_name(6)
    fresh.write_bytes(encode_segment_header())
    result = recover(tmp_path)
    assert result.records == _records(1, 5)
    assert list_segments(tmp_path) == [first]
    assert result.truncated_tail


def test_the_startup_line_says_what_was_loaded(tmp_path: Path) -> None:
    _log(tmp_path, (1, 3), (4, 6))
    assert recover(tmp_path).describe() == ("recovered no snapshot + 6 log records, last seq 6")
    write_snapshot(tmp_path, 4, b"state")
    last = list_segments(tmp_path)[-1]
    with last.open("ab") as f:
        f.write(b"\x00\x01")  # a torn tail: one warning
    assert recover(tmp_path).describe() == (
        f"recovered snapshot {snapshot_name(4)} (seq 4) + 2 log records, last seq 6 (1 warnings)"
    )
