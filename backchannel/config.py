"""One frozen :class:`Settings` object, read from ``BACKCHANNEL_*`` and flags.

Every limit the server enforces is a setting with a documented default.
Precedence: command-line flag > environment variable > default. A malformed
value fails fast at startup with a message naming the variable; it never
crashes a request later.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Literal

FsyncPolicy = Literal["always", "interval", "never"]


class SettingsError(ValueError):
    """A setting has a value the server cannot run with.

    Attributes:
        names: the fields at fault, so :func:`load_settings` can name the
            environment variables they came from.
    """

    def __init__(self, message: str, *names: str) -> None:
        super().__init__(message)
        self.names = names


@dataclass(frozen=True, slots=True)
class Settings:
    """Server configuration. Field ``x`` is read from env ``BACKCHANNEL_X``."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("snapshots")
    fsync: FsyncPolicy = "always"
    fsync_interval_seconds: float = 1.0
    snapshot_interval_seconds: float = 300.0
    allow_truncate: bool = False
    base_url: str = ""
    instance_kind: str = "self-hosted"
    admin_token: str = ""
    # per-key and per-IP limiters (contract §3.9); 0 = unlimited / disabled
    rate_limit: int = 120
    rate_limit_window: int = 60
    key_mint_limit: int = 5
    key_mint_window: int = 3600
    public_minting_enabled: bool = True
    # size limits
    max_message_bytes: int = 10_000
    max_body_bytes: int = 1_048_576
    max_name_chars: int = 200
    max_text_chars: int = 4_000
    max_metadata_bytes: int = 65_536
    max_idempotency_key_chars: int = 255
    # channel defaults
    default_ttl_seconds: int = 86_400
    default_retention_days: int = 7
    default_discoverable: bool = True
    # leases (contract §0.13: 5–3600, default 300)
    lease_min_seconds: int = 5
    lease_max_seconds: int = 3_600
    lease_default_seconds: int = 300
    # long-poll (contract §0.2)
    longpoll_enabled: bool = True
    longpoll_max_wait_seconds: float = 30.0
    longpoll_max_waiters: int = 10_000  # parked long-polls and open streams together
    stream_buffer_events: int = 256  # frames a stream may fall behind before it is ended
    stream_keepalive_seconds: float = 15.0  # quiet before a stream sends a comment line
    stream_max_per_key: int = 1_000  # open streams one key may hold (429 past it)
    # runtime
    inbox_size: int = 1_024
    # an idle channel's actor task ends after this long (runtime.passivation); 0 = never
    passive_after_seconds: float = 60.0
    idempotency_ttl_seconds: int = 86_400
    # seconds between purges of expired sessions and idempotent replies (runtime/hub.py)
    purge_interval_seconds: float = 3_600.0
    graceful_timeout_seconds: float = 5.0
    idle_timeout_seconds: float = 60.0
    # the sandbox channel (contract §3.14)
    sandbox_enabled: bool = True
    sandbox_ttl_seconds: int = 600
    sandbox_max_messages: int = 200
    sandbox_max_writes_per_minute: int = 60
    sandbox_heartbeat_seconds: float = 60.0
    # invitations (contract §2.5, §3.9): per-IP lookups per 60 s (0 = unlimited)
    invitation_lookup_limit: int = 10
    invitation_onboarding_url: str = ""
    # webhooks (contract §0.6, §3.13)
    webhook_retry_seconds: str = "60,120,240,300"
    webhook_timeout_seconds: float = 10.0
    webhook_concurrency: int = 16
    webhook_per_host_concurrency: int = 8
    webhook_allow_private: bool = False
    webhook_max_pending: int = 100_000
    # clients behind proxies, advertised URL (contract §3.17, §3.18)
    trusted_proxies: str = ""
    allowed_hosts: str = ""
    # observability and TLS
    metrics_enabled: bool = True
    access_log: bool = True
    log_format: str = "text"
    certfile: str = ""
    keyfile: str = ""
    # hypercorn adjustments (http/hypercorn_tuning.py); off = stock hypercorn, same wire, slower
    http_tuning: bool = True
    # seconds between "vitals" log lines (runtime/vitals.py); 0 = none
    vitals_log_seconds: float = 0.0
    # seconds between returns of freed heap to the OS (runtime/heap.py); 0 = never
    malloc_trim_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.fsync not in ("always", "interval", "never"):
            raise SettingsError("fsync must be one of always, interval, never", "fsync")
        positive = (
            "max_message_bytes",
            "max_body_bytes",
            "inbox_size",
            "longpoll_max_waiters",
            "stream_buffer_events",
            "stream_keepalive_seconds",
            "stream_max_per_key",
            "rate_limit_window",
            "key_mint_window",
            "lease_min_seconds",
            "webhook_timeout_seconds",
            "webhook_concurrency",
            "webhook_per_host_concurrency",
            "webhook_max_pending",
            "purge_interval_seconds",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be positive", name)
        if not self.lease_min_seconds <= self.lease_default_seconds <= self.lease_max_seconds:
            raise SettingsError(
                "lease_default_seconds must lie within the lease range",
                "lease_default_seconds",
                "lease_min_seconds",
                "lease_max_seconds",
            )
        for name in (
            "longpoll_max_wait_seconds",
            "rate_limit",
            "key_mint_limit",
            "passive_after_seconds",
            "malloc_trim_seconds",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative", name)
        self.webhook_retry_schedule  # noqa: B018  (validates)
        self.trusted_networks  # noqa: B018  (validates)
        if self.log_format not in ("text", "json"):
            raise SettingsError("log_format must be text or json", "log_format")
        if bool(self.certfile) != bool(self.keyfile):
            raise SettingsError(
                "certfile and keyfile must be given together", "certfile", "keyfile"
            )

    @property
    def webhook_retry_schedule(self) -> tuple[float, ...]:
        """Seconds to wait before each retry; attempts in all = retries + 1."""
        try:
            delays = tuple(float(p) for p in self.webhook_retry_seconds.split(",") if p.strip())
        except ValueError:
            delays = (-1.0,)
        if any(not 0 <= d < 86_400 * 7 for d in delays):
            raise SettingsError(
                "BACKCHANNEL_WEBHOOK_RETRY_SECONDS must be a comma list of seconds, e.g. 60,120"
            )
        return delays

    @property
    def trusted_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """``TRUSTED_PROXIES`` as networks. Unlike upstream, a malformed entry stops startup."""
        networks: list[IPv4Network | IPv6Network] = []
        for part in self.trusted_proxies.split(","):
            if part.strip():
                try:
                    networks.append(ip_network(part.strip(), strict=False))
                except ValueError:
                    raise SettingsError(
                        f"BACKCHANNEL_TRUSTED_PROXIES: {part.strip()!r} is not a CIDR"
                    ) from None
        return tuple(networks)

    @property
    def allowed_host_list(self) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())

    @property
    def read_timeout(self) -> float:
        """Seconds a connection may stay silent before it is closed.

        Hypercorn's ``read_timeout`` also cuts a long-poll older than it, so
        it stays well above the long-poll cap (stack-notes pitfall 1).
        """
        return max(self.idle_timeout_seconds, self.longpoll_max_wait_seconds * 1.5 + 1)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(name: str, kind: Any, raw: str) -> Any:
    text = raw.strip()
    try:
        if kind in (bool, "bool"):
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if kind in (int, "int"):
            return int(text)
        if kind in (float, "float"):
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(text)
            return value
        if kind in (Path, "Path"):
            return Path(text)
    except ValueError:
        raise SettingsError(f"BACKCHANNEL_{name.upper()}={raw!r} is not a valid {kind}") from None
    return text


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``env`` (default: ``os.environ``) and explicit overrides.

    Overrides whose value is None are ignored, so argparse results can be
    passed straight through.
    """
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = source.get(f"BACKCHANNEL_{f.name.upper()}")
        if raw is not None and raw != "":
            kind = f.type if not isinstance(f.type, str) else f.type.split("[")[0]
            if f.name == "fsync":
                kind = str
            values[f.name] = _convert(f.name, kind, raw)
    flags = {k: v for k, v in overrides.items() if v is not None}
    values.update(flags)
    try:
        return Settings(**values)
    except SettingsError as exc:
        named = [
            f"BACKCHANNEL_{name.upper()}={source[f'BACKCHANNEL_{name.upper()}']!r}"
            for name in exc.names
            if name not in flags and source.get(f"BACKCHANNEL_{name.upper()}")
        ]
        if not named:
            raise
        raise SettingsError(f"{', '.join(named)}: {exc}", *exc.names) from None
