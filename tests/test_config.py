"""Settings from ``BACKCHANNEL_*`` and flags (README "Configuration").

Precedence is flag > environment > default, and a malformed value stops the
server at startup with a message naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backchannel import cli
from backchannel.config import Settings, SettingsError, load_settings
from backchannel.http import server


def test_environment_values_of_every_kind_are_read() -> None:
    settings = load_settings(
        {
            "BACKCHANNEL_HOST": "0.0.0.0",
            "BACKCHANNEL_PORT": " 9000 ",
            "BACKCHANNEL_DATA_DIR": "/srv/bc",
            "BACKCHANNEL_FSYNC": "interval",
            "BACKCHANNEL_LONGPOLL_MAX_WAIT_SECONDS": "12.5",
            "BACKCHANNEL_PUBLIC_MINTING_ENABLED": "off",
            "BACKCHANNEL_SANDBOX_ENABLED": "Yes",
            "BACKCHANNEL_RATE_LIMIT": "0",
            "BACKCHANNEL_BASE_URL": "",  # blank: the default stays
            "UNRELATED": "1",
        }
    )
    assert settings == Settings(
        host="0.0.0.0",
        port=9000,
        data_dir=Path("/srv/bc"),
        fsync="interval",
        longpoll_max_wait_seconds=12.5,
        public_minting_enabled=False,
        sandbox_enabled=True,
        rate_limit=0,
    )


def test_flags_win_over_the_environment_and_none_flags_are_ignored() -> None:
    env = {"BACKCHANNEL_PORT": "9000", "BACKCHANNEL_FSYNC": "never", "BACKCHANNEL_HOST": "::1"}
    settings = load_settings(env, port=7000, fsync="always", host=None)
    assert (settings.port, settings.fsync, settings.host) == (7000, "always", "::1")


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("PORT", "80a"),
        ("SANDBOX_ENABLED", "maybe"),
        ("LONGPOLL_MAX_WAIT_SECONDS", "nan"),
        ("GRACEFUL_TIMEOUT_SECONDS", "inf"),
    ],
)
def test_a_value_that_does_not_parse_names_its_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"^BACKCHANNEL_{variable}='{raw}' is not a valid"):
        load_settings({f"BACKCHANNEL_{variable}": raw})


@pytest.mark.parametrize(
    ("variable", "raw", "problem"),
    [
        ("RATE_LIMIT", "-1", "rate_limit must not be negative"),
        ("KEY_MINT_LIMIT", "-5", "key_mint_limit must not be negative"),
        ("LONGPOLL_MAX_WAIT_SECONDS", "-0.5", "longpoll_max_wait_seconds must not be negative"),
        ("INBOX_SIZE", "0", "inbox_size must be positive"),
        ("FSYNC", "sometimes", "fsync must be one of always, interval, never"),
        ("LEASE_DEFAULT_SECONDS", "4", "lease_default_seconds must lie within the lease range"),
    ],
)
def test_a_value_out_of_range_names_its_variable(variable: str, raw: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({f"BACKCHANNEL_{variable}": raw})
    assert str(caught.value) == f"BACKCHANNEL_{variable}='{raw}': {problem}"


def test_a_bad_range_made_by_two_variables_names_both() -> None:
    env = {"BACKCHANNEL_LEASE_MIN_SECONDS": "10", "BACKCHANNEL_LEASE_MAX_SECONDS": "8"}
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert "BACKCHANNEL_LEASE_MIN_SECONDS='10'" in message
    assert "BACKCHANNEL_LEASE_MAX_SECONDS='8'" in message


def test_a_bad_value_from_a_flag_is_not_blamed_on_the_environment() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"BACKCHANNEL_FSYNC": "sometimes"}, fsync="bogus")
    assert str(caught.value) == "fsync must be one of always, interval, never"


def test_serve_takes_flags_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served: list[Settings] = []

    async def fake_serve(settings: Settings, **_: Any) -> None:
        served.append(settings)

    monkeypatch.setattr(server, "serve", fake_serve)
    for name, value in {
        "BACKCHANNEL_PORT": "9000",
        "BACKCHANNEL_FSYNC": "never",
        "BACKCHANNEL_SNAPSHOT_INTERVAL_SECONDS": "60",
        "BACKCHANNEL_MAX_MESSAGE_BYTES": "500",
    }.items():
        monkeypatch.setenv(name, value)
    argv = ["serve", "--port", "0", "--fsync", "interval", "--data-dir", str(tmp_path)]
    assert cli.main([*argv, "--snapshot-interval", "5", "--allow-truncate"]) == 0
    (settings,) = served
    assert settings.port == 0
    assert settings.fsync == "interval"
    assert settings.data_dir == tmp_path
    assert settings.snapshot_interval_seconds == 5
    assert settings.allow_truncate is True
    assert settings.max_message_bytes == 500  # no flag: the environment's value


def test_serve_refuses_a_bad_variable_at_startup_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def must_not_serve(settings: Settings, **_: Any) -> None:
        raise AssertionError("served with bad settings")

    monkeypatch.setattr(server, "serve", must_not_serve)
    monkeypatch.setenv("BACKCHANNEL_RATE_LIMIT", "-1")
    assert cli.main(["serve"]) == 2
    assert capsys.readouterr().err == (
        "backchannel: BACKCHANNEL_RATE_LIMIT='-1': rate_limit must not be negative\n"
    )


# -- webhooks, proxies, logs, TLS ----------------------------------------------


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
