import gc

import msgspec
import pytest

from fleethub import Settings, load_settings
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
        ({"FLEETHUB_AUTH_BROKER_SECRET": "short"}, "setting 'auth.broker_secret' must be empty or at least 32"),
        ({"FLEETHUB_ABUSE_MESSAGE_BURST": "0"}, "setting 'abuse.message_burst' must be at least 1"),
        (
            {"FLEETHUB_AUTH_TOKEN_TTL_DAYS": "400"},
            "setting 'auth.token_ttl_days' must be at most auth.max_token_ttl_days, got 400",
        ),
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
        ({"FLEETHUB_HTTP_PORT": "-1"}, r"setting 'http.port' must be 0-65535 \(0 picks a free port\), got -1$"),
        ({"FLEETHUB_DATABASE": "mysql://x"}, "setting 'store.url' must be a sqlite:///path.db or .*, got 'mysql://x'$"),
        ({"FLEETHUB_STORE_PG_CHUNK_INTERVAL_HOURS": "5"}, "'store.pg_chunk_interval_hours' must be 1-24 dividing 24"),
        ({"FLEETHUB_INGEST_COMMIT_RETRY_MAX_S": "0"}, "setting 'ingest.commit_retry_max_s' must be positive, got 0.0$"),
        ({"FLEETHUB_COMMANDS_QUEUE_MAX": "0"}, "setting 'commands.queue_max' must be at least 1, got 0$"),
        ({"FLEETHUB_CONSOLE_TILE_MAX_ZOOM": "25"}, "setting 'console.tile_max_zoom' must be 1-24, got 25$"),
        (
            {"FLEETHUB_MAINTENANCE_ODOMETER_FIELD": ""},
            "setting 'maintenance.odometer_field' must be not empty, got ''$",
        ),
        (
            {"FLEETHUB_HTTP_EXPORT_CHUNK_BYTES": "10"},
            "setting 'http.export_chunk_bytes' must be at least 1024, got 10$",
        ),
        ({"FLEETHUB_ABUSE_LOGIN_BACKOFF_BASE_S": "-1"}, "setting 'abuse.login_backoff_base_s' must be 0 or more"),
        ({"FLEETHUB_COMMANDS_DEFAULT_TTL_S": "1e9"}, "'commands.default_ttl_s' must be at most commands.max_ttl_s"),
        ({"FLEETHUB_STORE_PG_POOL_MAX_SIZE": "1"}, "'store.pg_pool_max_size' must be at least store.pg_pool_min_size"),
    ],
)
def test_invalid_settings_name_the_setting(environ, message) -> None:
    """Invalid values fail at start-up with a message naming the setting."""
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_nested_constraints_name_the_full_setting(tmp_path) -> None:
    """A constraint on a setting inside a table of a section is reported by its whole dotted name and value."""
    cfg = tmp_path / "f.toml"
    cfg.write_text("[rules.limits]\nmax_depth = 0\n")
    with pytest.raises(ConfigError, match=r"^setting 'rules\.limits\.max_depth' must be 1-100, got 0$"):
        load_settings(cfg, environ={})
    cfg.write_text('[store]\nsqlite_readers = 0\nurl = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match=r"^setting 'store\.sqlite_readers' must be at least 1, got 0$"):
        load_settings(cfg, environ={})
    cfg.write_text("[store]\nsqlite_readers = 1\n")
    assert load_settings(cfg, environ={}).store.sqlite_readers == 1


def test_constraints_are_declared_on_the_fields() -> None:
    """Ranges are read from the Structs (as the settings reference does), not only enforced by hand."""
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    sections = {f.name: f.type for f in info.fields}
    found = {}
    for section in ("mqtt", "store", "ingest", "commands", "abuse", "limits", "console"):
        struct = sections[section]
        assert isinstance(struct, msgspec.inspect.StructType)
        for field in struct.fields:
            if isinstance(field.type, msgspec.inspect.Metadata):
                found[f"{section}.{field.name}"] = field.type
    port = found["mqtt.port"].type
    assert isinstance(port, msgspec.inspect.IntType)
    assert (port.ge, port.le) == (0, 65535)
    assert found["ingest.batch_max"].type == msgspec.inspect.IntType(ge=1)
    assert found["commands.max_job_rate"].type == msgspec.inspect.FloatType(gt=0)
    assert found["abuse.message_rate_per_s"].type == msgspec.inspect.FloatType(ge=0)
    assert found["limits.max_depth"].type == msgspec.inspect.IntType(ge=1)
    assert "description" in (found["store.retention_days"].extra_json_schema or {})


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


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FLEETHUB_MAINTENANCE_MAX_GAP_S": "0"}, "maintenance.max_gap_s"),
        ({"FLEETHUB_NOTIFICATIONS_MAX_ATTEMPTS": "0"}, "notifications.max_attempts"),
        ({"FLEETHUB_NOTIFICATIONS_SMTP_SECURITY": "ssl3"}, "notifications.smtp_security"),
        ({"FLEETHUB_REPORTS_MAX_DAYS": "0"}, "reports.max_days"),
    ],
)
def test_maintenance_notification_and_report_settings_are_validated(environ: dict[str, str], message: str) -> None:
    """An out-of-range maintenance, notifications or reports setting stops start-up, naming the setting."""
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_the_broker_secret_comes_from_the_environment_and_is_never_echoed() -> None:
    secret = "b" * 40
    assert load_settings(environ={"FLEETHUB_AUTH_BROKER_SECRET": secret}).auth.broker_secret == secret
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={"FLEETHUB_AUTH_BROKER_SECRET": "too-short-secret"})
    assert "too-short-secret" not in str(refused.value)
