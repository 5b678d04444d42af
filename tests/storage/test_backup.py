"""Backups of a data directory on disk, and restores (``storage/backup.py``)."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from backchannel.cli import main
from backchannel.storage.backup import BackupError, restore_backup, write_backup
from backchannel.storage.log import LogWriter, list_segments
from backchannel.storage.recovery import recover
from backchannel.storage.snapshot import write_snapshot


def _records(first: int, last: int) -> list[tuple[int, Any]]:
    return [(seq, ["event", seq, {"b": b"\x00\xc1", "s": "é"}]) for seq in range(first, last + 1)]


def _data_dir(directory: Path) -> Path:
    """Log 1..9 in two segments, a snapshot at 4, and a batch 10..11 still being appended."""
    writer = LogWriter(directory, 1)
    writer.write_batch(_records(1, 4))
    writer.roll()
    writer.write_batch(_records(5, 7))
    writer.write_batch(_records(8, 9))
    writer.write_batch(_records(10, 11))
    writer.close()
    write_snapshot(directory, 4, b"state at 4")
    newest = list_segments(directory)[-1]
    os.truncate(newest, newest.stat().st_size - 5)  # the last append, cut short
    return directory


def test_backup_holds_the_newest_snapshot_and_complete_batches_after_it(tmp_path: Path) -> None:
    source = _data_dir(tmp_path / "data")
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    report = write_backup(source, tmp_path / "b.tar")
    assert (report.snapshot_seq, report.records, report.last_seq) == (4, 5, 9)
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before  # read only
    with tarfile.open(tmp_path / "b.tar") as tar:
        names = sorted(tar.getnames())
    assert names == [
        "backchannel-backup.json",
        "log-00000000000000000005.bclog",
        "snapshot-00000000000000000004.bcsnap",
    ]

    target = tmp_path / "restored"
    restored = restore_backup(tmp_path / "b.tar", target)
    assert restored.last_seq == 9
    result = recover(target)
    assert (result.snapshot_seq, bytes(result.snapshot_payload or b"")) == (4, b"state at 4")
    assert result.records == _records(5, 9)
    assert result.warnings == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    for path in target.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_restore_refuses_a_non_empty_directory_and_foreign_files(tmp_path: Path) -> None:
    write_backup(_data_dir(tmp_path / "data"), tmp_path / "b.tar")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("mine")
    with pytest.raises(BackupError, match="not an empty directory"):
        restore_backup(tmp_path / "b.tar", busy)
    assert [p.name for p in busy.iterdir()] == ["something"]
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(BackupError, match="not a backchannel backup"):
        restore_backup(tmp_path / "junk.tar", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_a_damaged_backup_is_not_restored(tmp_path: Path) -> None:
    write_backup(_data_dir(tmp_path / "data"), tmp_path / "b.tar")
    data = bytearray((tmp_path / "b.tar").read_bytes())
    at = data.index(b"\xc1BCB")  # the first batch marker inside the tar
    data[at - 2] ^= 0x55  # its CRC field
    (tmp_path / "bad.tar").write_bytes(bytes(data))
    with pytest.raises(Exception, match="corrupt log segment"):
        restore_backup(tmp_path / "bad.tar", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_backup_refuses_a_damaged_data_directory(tmp_path: Path) -> None:
    source = _data_dir(tmp_path / "data")
    first = list_segments(source)[0]
    data = bytearray(first.read_bytes())
    data[20] ^= 0x55
    first.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=r"corrupt log segment .* at byte offset 12"):
        write_backup(source, tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()


def test_cli_backup_and_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _data_dir(tmp_path / "data")
    out = tmp_path / "b.tar"
    assert main(["backup", "--data-dir", str(source), "--out", str(out)]) == 0
    assert "last seq 9" in capsys.readouterr().out
    assert main(["restore", str(out), "--data-dir", str(tmp_path / "r")]) == 0
    assert main(["restore", str(out), "--data-dir", str(tmp_path / "r")]) == 1
    assert "not an empty directory" in capsys.readouterr().err
