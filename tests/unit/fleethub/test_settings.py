import gc

import pytest

from fleethub import load_settings
from fleethub.cli import tune_gc
from kernel import ConfigError


def test_defaults_run_with_no_file() -> None:
    """With no file, variables or flags the hub has working defaults."""
    s = load_settings(environ={})
    assert (s.mqtt.port, s.http.port, s.store.url) == (1883, 8080, "sqlite:///var/fleethub.db")


def test_precedence_file_env_flags(tmp_path) -> None:
    """A TOML file is overridden by FLEETHUB_* variables, which are overridden by flags."""
    cfg = tmp_path / "f.toml"
    cfg.write_text("[mqtt]\nport = 1000\n[http]\nport = 2000\n[limits]\nmax_depth = 5\n")
    s = load_settings(
        cfg, environ={"FLEETHUB_HTTP_PORT": "3000", "FLEETHUB_MQTT_PORT": "4000"}, overrides={"mqtt.port": 5000}
    )
    assert s.mqtt.port == 5000
    assert s.http.port == 3000
    assert s.limits.max_depth == 5


def test_database_alias_and_booleans() -> None:
    """FLEETHUB_DATABASE sets the store URL; boolean variables accept true/false."""
    s = load_settings(environ={"FLEETHUB_DATABASE": "sqlite:///x.db", "FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true"})
    assert s.store.url == "sqlite:///x.db"
    assert s.mqtt.allow_anonymous is True


def test_secure_by_default() -> None:
    """With no settings at all, MQTT refuses anonymous clients and the API requires tokens."""
    s = load_settings(environ={})
    assert s.mqtt.allow_anonymous is False
    assert s.auth.enabled is True
    assert s.auth.bootstrap_token == ""
    assert s.auth.public_metrics is False


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FLEETHUB_MQTT_TLS_CERTFILE": "c.pem"}, "setting 'mqtt.tls_keyfile' must be set together"),
        ({"FLEETHUB_MQTT_TLS_CLIENT_CERT_AUTH": "true"}, "setting 'mqtt.tls_client_cert_auth'"),
        ({"FLEETHUB_AUTH_BOOTSTRAP_TOKEN": "short"}, "setting 'auth.bootstrap_token' must be empty or at least 32"),
        ({"FLEETHUB_ABUSE_MESSAGE_BURST": "0"}, "setting 'abuse.message_burst' must be at least 1"),
    ],
)
def test_security_settings_are_validated(environ: dict[str, str], message: str) -> None:
    """Security settings that cannot work stop start-up with the fix in the message."""
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FLEETHUB_MQTT_PORT": "70000"}, "setting 'mqtt.port' must be 0-65535"),
        ({"FLEETHUB_MQTT_PORT": "abc"}, "setting 'mqtt.port'"),
        ({"FLEETHUB_DATABASE": "mysql://x"}, "setting 'store.url'"),
        ({"FLEETHUB_LIMITS_MAX_DEPTH": "0"}, "setting 'limits.max_depth' must be at least 1"),
        ({"FLEETHUB_INGEST_BATCH_MAX": "0"}, "setting 'ingest.batch_max'"),
        ({"FLEETHUB_RUNTIME_GC_THRESHOLD_YOUNG": "-1"}, "setting 'runtime.gc_threshold_young' must be 0"),
        ({"FLEETHUB_RUNTIME_GC_THRESHOLD_OLD": "0"}, "setting 'runtime.gc_threshold_old' must be at least 1"),
    ],
)
def test_invalid_settings_name_the_setting(environ, message) -> None:
    """Invalid values fail at start-up with a message naming the setting."""
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_unknown_key_in_file_is_named(tmp_path) -> None:
    """A typo in the TOML file is reported, not ignored."""
    cfg = tmp_path / "f.toml"
    cfg.write_text("[mqtt]\nprot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(cfg, environ={})


def test_missing_file_is_an_error(tmp_path) -> None:
    """A --config path that does not exist fails clearly."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "none.toml", environ={})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (50_000, 20, 10)),
        ({"FLEETHUB_RUNTIME_GC_THRESHOLD_YOUNG": "20000", "FLEETHUB_RUNTIME_GC_THRESHOLD_OLD": "5"}, (20_000, 20, 5)),
    ],
)
def test_collector_thresholds_are_applied(environ: dict[str, str], expected: tuple[int, int, int]) -> None:
    """The hub sets the cyclic collector's thresholds from `[runtime]`; young = 0 leaves the interpreter's."""
    before = gc.get_threshold()
    try:
        tune_gc(load_settings(environ=environ).runtime)
        assert gc.get_threshold() == expected
        gc.set_threshold(*before)
        tune_gc(load_settings(environ={"FLEETHUB_RUNTIME_GC_THRESHOLD_YOUNG": "0"}).runtime)
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)
