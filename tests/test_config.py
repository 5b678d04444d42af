"""Settings from BACKCHANNEL_* variables: the new webhook, proxy, log and TLS settings."""

from __future__ import annotations

import pytest

from backchannel.config import SettingsError, load_settings


def test_webhook_and_proxy_settings_parse() -> None:
    settings = load_settings(
        {
            "BACKCHANNEL_WEBHOOK_RETRY_SECONDS": "0.5, 1,2",
            "BACKCHANNEL_WEBHOOK_TIMEOUT_SECONDS": "3",
            "BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE": "true",
            "BACKCHANNEL_TRUSTED_PROXIES": "127.0.0.1/32, 10.0.0.0/8,::1",
            "BACKCHANNEL_ALLOWED_HOSTS": "Bus.Example.com,other",
            "BACKCHANNEL_LOG_FORMAT": "json",
        }
    )
    assert settings.webhook_retry_schedule == (0.5, 1.0, 2.0)
    assert settings.webhook_timeout_seconds == 3.0
    assert settings.webhook_allow_private is True
    assert [str(n) for n in settings.trusted_networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert settings.allowed_host_list == ("bus.example.com", "other")
    defaults = load_settings({})
    assert defaults.webhook_retry_schedule == (60.0, 120.0, 240.0, 300.0)
    assert defaults.webhook_concurrency == 16
    assert defaults.webhook_allow_private is False
    assert defaults.metrics_enabled is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_RETRY_SECONDS", "60,soon"),
        ("WEBHOOK_RETRY_SECONDS", "-1"),
        ("WEBHOOK_CONCURRENCY", "0"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,not-a-cidr"),
        ("LOG_FORMAT", "xml"),
        ("CERTFILE", "only-the-cert.pem"),
    ],
)
def test_a_malformed_value_stops_startup(name: str, value: str) -> None:
    with pytest.raises(SettingsError):
        load_settings({f"BACKCHANNEL_{name}": value})
