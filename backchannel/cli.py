"""``backchannel serve | mcp | snapshot inspect FILE | snapshot verify DIR | backup | restore``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from backchannel.config import SettingsError, load_settings
from backchannel.logformat import configure


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backchannel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="bind port (default 8080; 0 picks one)")
    serve.add_argument("--data-dir", type=Path, help="snapshots and log (default snapshots/)")
    serve.add_argument("--fsync", choices=["always", "interval", "never"], help="durability policy")
    serve.add_argument("--snapshot-interval", type=float, help="seconds between snapshots")
    serve.add_argument(
        "--allow-truncate",
        action="store_true",
        default=None,
        help="start even if the log is corrupt before its tail, dropping what follows",
    )
    serve.add_argument("--certfile", help="serve HTTPS with this PEM certificate (chain)")
    serve.add_argument("--keyfile", help="the certificate's PEM private key")
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument("--log-format", choices=["text", "json"], help="log lines (default text)")
    mcp = commands.add_parser(
        "mcp",
        help="serve the MCP tools over stdio, bridged to a server's /mcp "
        "(env BACKCHANNEL_BASE_URL, BACKCHANNEL_API_KEY, BACKCHANNEL_KEY_FILE, "
        "BACKCHANNEL_AGENT_LABEL)",
    )
    mcp.add_argument("--log-level", default="WARNING", help="logged to stderr")
    snap = commands.add_parser("snapshot", help="inspect or verify stored state")
    snap_commands = snap.add_subparsers(dest="snapshot_command", required=True)
    inspect = snap_commands.add_parser("inspect", help="summarise one snapshot file")
    inspect.add_argument("file", type=Path)
    verify = snap_commands.add_parser("verify", help="check every snapshot and log segment")
    verify.add_argument("directory", type=Path)
    backup = commands.add_parser(
        "backup", help="write one consistent backup of a data directory (a server may be running)"
    )
    backup.add_argument("--data-dir", type=Path, required=True)
    backup.add_argument("--out", type=Path, required=True, help="the backup file to write")
    restore = commands.add_parser("restore", help="unpack a backup into an empty data directory")
    restore.add_argument("file", type=Path)
    restore.add_argument("--data-dir", type=Path, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "mcp":
        return _mcp(args)
    if args.command in ("backup", "restore"):
        return _backup_or_restore(args)
    from backchannel.storage.inspect import inspect_command, verify_command

    if args.snapshot_command == "inspect":
        return inspect_command(args.file)
    return verify_command(args.directory)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            fsync=args.fsync,
            snapshot_interval_seconds=args.snapshot_interval,
            allow_truncate=args.allow_truncate,
            certfile=args.certfile,
            keyfile=args.keyfile,
            log_format=args.log_format,
        )
    except SettingsError as exc:
        print(f"backchannel: {exc}", file=sys.stderr)
        return 2
    configure(str(args.log_level), settings.log_format)
    from backchannel.http.server import serve
    from backchannel.runtime.service import StartupError
    from backchannel.storage.recovery import CorruptLog

    try:
        trio.run(lambda: serve(settings, handle_signals=True))
    except (StartupError, CorruptLog) as exc:
        print(f"backchannel: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _mcp(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,  # stdout carries the protocol
    )
    from backchannel.mcp_stdio import run

    try:
        return run(os.environ)
    except KeyboardInterrupt:
        return 130


def _backup_or_restore(args: argparse.Namespace) -> int:
    from backchannel.storage.backup import BackupError, restore_backup, write_backup

    try:
        if args.command == "backup":
            report = write_backup(args.data_dir, args.out)
            print(f"backup written: {report.describe()}")
        else:
            report = restore_backup(args.file, args.data_dir)
            print(f"restored into {args.data_dir}: {report.describe()}")
    except (BackupError, OSError) as exc:
        print(f"backchannel {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0
