"""Settings from the environment: defaults, overrides, and clear refusals."""

import pytest

from todo_service.config import ConfigError, load_settings


def test_defaults():
    settings = load_settings({})
    assert settings.database_url is None
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert settings.cors_origins == ("http://localhost:3000",)
    assert settings.log_level == "INFO" and settings.log_format == "text"
    assert settings.migrate_on_start is True and settings.pgbouncer is False
    assert settings.prepare_threshold == 5
    assert settings.pool_min_size <= settings.pool_max_size
    assert settings.reuse_port is True and settings.list_cache_mb == 16
    assert settings.idempotency_ttl_hours == 24
    assert settings.docs_enabled is True and load_settings({"DOCS_ENABLED": "false"}).docs_enabled is False


def test_overrides():
    settings = load_settings({
        "DATABASE_URL": "postgresql://u:p@db.example.com:6543/app?sslmode=require",
        "API_HOST": "0.0.0.0", "API_PORT": "9000", "CORS_ORIGINS": "https://a.example, http://localhost:3000/",
        "LOG_LEVEL": "debug", "LOG_FORMAT": "JSON", "DB_POOL_MAX_SIZE": "10", "MIGRATE_ON_START": "off",
    })
    assert settings.api_port == 9000 and settings.api_host == "0.0.0.0"
    assert settings.cors_origins == ("https://a.example", "http://localhost:3000")
    assert settings.log_level == "DEBUG" and settings.log_format == "json"
    assert settings.pool_max_size == 10 and settings.migrate_on_start is False


def test_neon_pooler_host_turns_off_prepared_statements():
    pooled = load_settings({"DATABASE_URL": "postgresql://u:p@ep-cool-1-pooler.eu-central-1.aws.neon.tech/db"})
    assert pooled.pgbouncer is True and pooled.prepare_threshold is None
    direct = load_settings({"DATABASE_URL": "postgresql://u:p@ep-cool-1.eu-central-1.aws.neon.tech/db"})
    assert direct.pgbouncer is False and direct.prepare_threshold == 5
    forced = load_settings({"DATABASE_URL": "postgresql://u@127.0.0.1:6432/db", "DATABASE_PGBOUNCER": "true"})
    assert forced.pgbouncer is True and forced.prepare_threshold is None


def test_prepared_statements_behind_a_pooler_only_when_asked():
    pooled = "postgresql://u:p@ep-cool-1-pooler.eu-central-1.aws.neon.tech/db"
    asked = load_settings({"DATABASE_URL": pooled, "DATABASE_PGBOUNCER_PREPARED": "true"})
    assert asked.pgbouncer is True and asked.pgbouncer_prepared is True and asked.prepare_threshold == 5
    never = load_settings({"DATABASE_URL": pooled, "DATABASE_PGBOUNCER_PREPARED": "true",
                           "DATABASE_PREPARE_THRESHOLD": "0"})
    assert never.prepare_threshold is None
    assert load_settings({"DATABASE_URL": pooled}).pgbouncer_prepared is False


def test_migrations_may_use_a_direct_url():
    settings = load_settings({"DATABASE_URL": "postgresql://u@pooled/db", "DATABASE_URL_DIRECT": "postgresql://u@direct/db"})
    assert settings.migration_url == "postgresql://u@direct/db"
    assert load_settings({"DATABASE_URL": "postgresql://u@h/db"}).migration_url == "postgresql://u@h/db"


@pytest.mark.parametrize("env,names", [
    ({"API_PORT": "abc"}, "API_PORT"),
    ({"API_PORT": "70000"}, "API_PORT"),
    ({"API_PORT": "0"}, "API_PORT"),
    ({"DB_POOL_MAX_SIZE": "many"}, "DB_POOL_MAX_SIZE"),
    ({"DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "2"}, "DB_POOL_MAX_SIZE"),
    ({"DB_POOL_TIMEOUT": "soon"}, "DB_POOL_TIMEOUT"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ({"MIGRATE_ON_START": "maybe"}, "MIGRATE_ON_START"),
    ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
    ({"CORS_ORIGINS": "localhost:3000"}, "CORS_ORIGINS"),
    ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL"),
    ({"DATABASE_URL": "host='unterminated"}, "DATABASE_URL"),
    ({"GUNICORN_WORKER_CLASS": "tornado"}, "GUNICORN_WORKER_CLASS"),
    ({"GUNICORN_REUSE_PORT": "sometimes"}, "GUNICORN_REUSE_PORT"),
    ({"LIST_CACHE_MB": "lots"}, "LIST_CACHE_MB"),
    ({"LIST_CACHE_MB": "-1"}, "LIST_CACHE_MB"),
    ({"IDEMPOTENCY_TTL_HOURS": "a day"}, "IDEMPOTENCY_TTL_HOURS"),
    ({"IDEMPOTENCY_TTL_HOURS": "0"}, "IDEMPOTENCY_TTL_HOURS"),
    ({"DATABASE_PGBOUNCER_PREPARED": "sometimes"}, "DATABASE_PGBOUNCER_PREPARED"),
    ({"DOCS_ENABLED": "perhaps"}, "DOCS_ENABLED"),
    ({"MAX_TASKS_PER_USER": "0"}, "MAX_TASKS_PER_USER"),
    ({"SYNC_TOMBSTONE_DAYS": "a month"}, "SYNC_TOMBSTONE_DAYS"),
    ({"SYNC_TOMBSTONE_DAYS": "0"}, "SYNC_TOMBSTONE_DAYS"),
    ({"SYNC_MAX_WAITERS": "-1"}, "SYNC_MAX_WAITERS"),
    ({"SYNC_POLL_MS": "1"}, "SYNC_POLL_MS"),
    ({"METRICS_ENABLED": "perhaps"}, "METRICS_ENABLED"),
    ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN"),
])
def test_bad_values_are_refused_naming_the_variable(env, names):
    with pytest.raises(ConfigError, match=names):
        load_settings(env)


def test_empty_values_mean_default():
    settings = load_settings({"DATABASE_URL": "", "API_PORT": " ", "WEB_CONCURRENCY": ""})
    assert settings.database_url is None and settings.api_port == 8000 and settings.web_concurrency == 0
