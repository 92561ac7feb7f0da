"""Settings: defaults, then the TOML file, then GRADERQUEUE_* variables, then overrides."""

from __future__ import annotations

import pytest

from graderqueue.config import load_settings
from graderqueue.errors import ConfigError


def test_defaults():
    settings = load_settings(environ={})
    assert settings.max_fails == 2
    assert settings.default_timeout_sec == 300
    assert settings.trusted_proxies == ()
    assert settings.debug_password == ""
    assert settings.delivery_concurrency == 8
    assert settings.is_sqlite


def test_file_then_environment_then_overrides(tmp_path):
    config = tmp_path / "gq.toml"
    config.write_text('max_fails = 5\ntrusted_proxies = ["127.0.0.1"]\nkey_name = "from-file"\n')
    env = {"GRADERQUEUE_CONFIG": str(config), "GRADERQUEUE_MAX_FAILS": "7"}
    settings = load_settings({"key_name": "override"}, environ=env)
    assert settings.max_fails == 7
    assert settings.trusted_proxies == ("127.0.0.1",)
    assert settings.key_name == "override"


def test_environment_lists_and_booleans():
    env = {
        "GRADERQUEUE_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8",
        "GRADERQUEUE_ADMIN_ENABLED": "false",
        "GRADERQUEUE_LANG_EXTENSIONS": '{"c": ".c"}',
    }
    settings = load_settings(environ=env)
    assert settings.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    assert settings.admin_enabled is False
    assert settings.lang_extensions == {"c": ".c"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRADERQUEUE_MAX_FAILS": "two"}, "max_fails"),
        ({"GRADERQUEUE_ADMIN_ENABLED": "maybe"}, "admin_enabled"),
        ({"GRADERQUEUE_WAKEUP_STRATEGY": "middle"}, "wakeup_strategy"),
        ({"GRADERQUEUE_DELIVERY_CONCURRENCY": "0"}, "delivery_concurrency must be at least 1"),
        ({"GRADERQUEUE_CONFIG": "/nonexistent/gq.toml"}, "cannot read"),
    ],
)
def test_bad_values_are_clear_errors(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


def test_unknown_key_in_file_is_an_error(tmp_path):
    config = tmp_path / "gq.toml"
    config.write_text("trusted_proxy = '127.0.0.1'\n")  # typo of trusted_proxies
    with pytest.raises(ConfigError, match="unknown setting 'trusted_proxy'"):
        load_settings(environ={"GRADERQUEUE_CONFIG": str(config)})
