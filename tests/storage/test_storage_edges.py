"""Edges of the storage rules that mutation testing found unheld.

Each test fixes one boundary: a seq equal to the last one is not "after"
it, a gap of exactly one seq is a gap, an empty segment named for the last
seq is out of place, what ``allow_truncate`` returns stops at the problem,
and a snapshot file is written through ``<name>.tmp`` with mode 0644 into a
directory made on the way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from backchannel.storage.framing import encode_segment_header
from backchannel.storage.log import LogWriter, list_segments, segment_name
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


def test_a_snapshot_is_written_through_a_tmp_file_with_mode_0644(
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
    assert path.stat().st_mode & 0o777 == 0o644
    assert load_snapshot(path) == (7, b"state")
