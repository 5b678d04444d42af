"""Backups: one consistent copy of a data directory, taken while a server writes it.

Blocking file code: run it in a worker thread or from the CLI.

Theory of operation
===================

A backup is the newest valid snapshot plus every log record after it, up to
the last *complete* batch. Recovery in read-only mode reads exactly that
without touching the directory (``recovery`` rule 5), so a server may be
appending, snapshotting and pruning meanwhile:

- An acknowledged write is fsynced, batch marker included, before it is
  answered, so every write answered before the backup began lies in a
  complete batch of a segment that exists when the backup lists them.
- A batch still being appended has no marker yet and is left out (it was
  not answered).
- A snapshot or segment the server prunes between our listing and our
  read shows up as a missing file or a gap; the whole read is retried
  (``attempts`` times), and a retry starts from the newer snapshot.

The backup file is an uncompressed tar (inspectable with ``tar tvf``):
``backchannel-backup.json`` (what it holds), the snapshot re-written with
its header and CRC, and one log segment of the records after it, written by
``LogWriter`` (format version 2, batch markers). It is written to a temp
file, fsynced and renamed, so a crash never leaves half a backup under the
final name. Before the rename it is checked the way a restore will read it.

``restore_backup`` refuses a directory that holds anything, unpacks only
the names a backup can contain (owner-only modes, fsynced), and runs
recovery on the result; a restore that does not recover cleanly is removed
again and the error raised.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from backchannel.storage.log import DIR_MODE, FILE_MODE, LogWriter, fsync_directory
from backchannel.storage.recovery import CorruptLog, RecoveredLog, recover
from backchannel.storage.segments import list_segments
from backchannel.storage.snapshot import list_snapshots, write_snapshot

__all__ = ["BackupError", "BackupReport", "restore_backup", "write_backup"]

logger = logging.getLogger(__name__)

MANIFEST: Final = "backchannel-backup.json"
BACKUP_FORMAT: Final = 1
BATCH_RECORDS: Final = 10_000
_MEMBER_RE: Final = re.compile(r"^(snapshot-\d{20}\.bcsnap|log-\d{20}\.bclog)$")


class BackupError(Exception):
    """A backup could not be taken or restored; the message says why."""


@dataclass(frozen=True)
class BackupReport:
    """What a backup holds (or what a restore put back).

    Attributes:
        path: the backup file.
        snapshot_seq: seq covered by its snapshot (0: none).
        records: log records after the snapshot.
        last_seq: the newest seq it holds.
        attempts: reads it took (more than 1 when the server pruned meanwhile).
    """

    path: Path
    snapshot_seq: int
    records: int
    last_seq: int
    attempts: int = 1

    def describe(self) -> str:
        return (
            f"{self.path}: snapshot seq {self.snapshot_seq} + {self.records} log records, "
            f"last seq {self.last_seq}"
        )


def _read_consistent(data_dir: Path, attempts: int) -> tuple[RecoveredLog, int]:
    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            return recover(data_dir, read_only=True), attempt
        except FileNotFoundError as exc:  # pruned between listing and reading
            last_error = exc
        except CorruptLog as exc:
            if not exc.reason.startswith("gap"):  # damage, not a race with pruning
                raise BackupError(f"cannot back up {data_dir}: {exc}") from exc
            last_error = exc
        time.sleep(0.05 * attempt)
    raise BackupError(f"no consistent read of {data_dir} in {attempts} attempts: {last_error}")


def _stage(recovered: RecoveredLog, staging: Path) -> None:
    if recovered.snapshot_payload is not None:
        write_snapshot(staging, recovered.snapshot_seq, recovered.snapshot_payload)
    if recovered.records:
        writer = LogWriter(staging, recovered.records[0][0])
        try:
            for start in range(0, len(recovered.records), BATCH_RECORDS):
                writer.write_batch(recovered.records[start : start + BATCH_RECORDS])
        finally:
            writer.close()


def write_backup(data_dir: Path, out: Path, *, attempts: int = 5) -> BackupReport:
    """Write one consistent backup of ``data_dir`` to ``out`` (module docstring).

    Durability:
        When this returns, ``out`` and its name are on stable storage.

    Raises:
        BackupError: no data directory, damage in it, or no consistent read.
        OSError: if the backup file cannot be written.
    """
    if not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a directory")
    recovered, used = _read_consistent(data_dir, attempts)
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        staging = Path(tmp) / "data"
        _stage(recovered, staging)
        check = recover(staging, read_only=True)  # what a restore will read
        if check.last_seq != recovered.last_seq or check.warnings:
            raise BackupError(f"staged backup does not read back cleanly: {check.warnings}")
        manifest = {
            "format": BACKUP_FORMAT,
            "snapshot_seq": recovered.snapshot_seq,
            "records": len(recovered.records),
            "last_seq": recovered.last_seq,
            "source": str(data_dir.absolute()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        temp = Path(tmp) / "backup.tar"
        with tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
            for path in [*list_snapshots(staging), *list_segments(staging)]:
                _add_bytes(tar, path.name, path.read_bytes())
        _fsync_file(temp)
        os.replace(temp, out)
        fsync_directory(out.parent)
    report = BackupReport(
        out, recovered.snapshot_seq, len(recovered.records), recovered.last_seq, used
    )
    logger.info("backup %s", report.describe())
    return report


def restore_backup(backup: Path, data_dir: Path) -> BackupReport:
    """Unpack ``backup`` into ``data_dir``, which must be missing or empty.

    Raises:
        BackupError: a non-empty target, a file that is not a backup, or a
            restore that does not recover cleanly (then nothing is left).
        OSError: on I/O errors.
    """
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(f"refusing to restore into {data_dir}: not an empty directory")
    try:
        tar = tarfile.open(backup, "r:")
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{backup} is not a backchannel backup: {exc}") from exc
    with tar:
        members = {m.name: m for m in tar.getmembers()}
        if MANIFEST not in members:
            raise BackupError(f"{backup} has no {MANIFEST}")
        manifest = json.loads(_member_bytes(tar, members.pop(MANIFEST)))
        if manifest.get("format") != BACKUP_FORMAT:
            raise BackupError(f"{backup}: unsupported backup format {manifest.get('format')!r}")
        for name, member in members.items():
            if not _MEMBER_RE.match(name) or not member.isfile():
                raise BackupError(f"{backup}: unexpected member {name!r}")
        created = not data_dir.exists()
        data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        try:
            for name, member in members.items():
                _write_file(data_dir / name, _member_bytes(tar, member))
            fsync_directory(data_dir)
            result = recover(data_dir)
            if result.last_seq != manifest["last_seq"] or result.warnings:
                raise BackupError(f"restored data does not recover cleanly: {result.warnings}")
        except BaseException:
            for name in members:
                with contextlib.suppress(FileNotFoundError):
                    (data_dir / name).unlink()
            if created:
                shutil.rmtree(data_dir, ignore_errors=True)
            raise
    return BackupReport(
        backup, result.snapshot_seq, len(result.records), result.last_seq, attempts=1
    )


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = FILE_MODE
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise BackupError(f"member {member.name!r} is not a regular file")
    with handle:
        return handle.read()


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
