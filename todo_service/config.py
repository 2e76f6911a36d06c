"""Settings read once from the environment (and `.env`), validated, typed."""

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import limits
import psycopg
from dotenv import load_dotenv
from psycopg.conninfo import conninfo_to_dict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}
LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
RATE_LIMIT_STORES = {"memory", "redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster"}


class ConfigError(ValueError):
    """A setting holds a value the service cannot run with."""


def _raw(env, name, default):
    value = env.get(name, "").strip()
    return value if value else default


def _number(env, name, default, low, high, kind=int):
    raw = _raw(env, name, str(default))
    try:
        value = kind(raw)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {noun}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside {low}..{high}")
    return value


def _int(env, name, default, low, high):
    return _number(env, name, default, low, high, int)


def _float(env, name, default, low, high):
    return _number(env, name, default, low, high, float)


def _bool(env, name, default):
    raw = _raw(env, name, "").lower()
    if not raw:
        return default
    if raw in TRUE_WORDS | FALSE_WORDS:
        return raw in TRUE_WORDS
    raise ConfigError(f"{name}={raw!r} is not one of true/false, 1/0, yes/no, on/off")


def _choice(env, name, default, choices):
    raw = _raw(env, name, default)
    if raw.lower() not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(sorted(choices))}")
    return raw.lower()


def _origins(env):
    origins = [o.strip().rstrip("/") for o in _raw(env, "CORS_ORIGINS", "http://localhost:3000").split(",")]
    origins = [o for o in origins if o]
    for origin in origins:
        parts = urlsplit(origin)
        if origin == "*" or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"CORS_ORIGINS entry {origin!r} is not an origin like https://app.example.com")
    return tuple(origins)


def _database_url(env, name):
    """A postgresql:// URL or a libpq "key=value" string, checked for syntax only."""
    url = _raw(env, name, None)
    if url is None:
        return None
    if "://" in url and urlsplit(url).scheme not in ("postgres", "postgresql"):
        raise ConfigError(f"{name} must be a postgresql:// URL")
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError(f"{name} is not a valid PostgreSQL connection string") from None
    return url


def _http_url(env, name):
    """An http(s):// URL, or None when unset."""
    url = _raw(env, name, None)
    if url is not None and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
        raise ConfigError(f"{name}={url!r} is not an http:// or https:// URL")
    return url


def _secret(env, name, min_bytes):
    """A shared secret of at least `min_bytes` bytes, or None when unset; never echoed in errors."""
    secret = env.get(name) or None
    if secret is not None and len(secret.encode("utf-8")) < min_bytes:
        raise ConfigError(f"{name} must be at least {min_bytes} bytes long")
    return secret


def _rate(env, name, default):
    """One rate such as "600/minute" (N per second, minute, hour or day), or None for "off"."""
    raw = _raw(env, name, default)
    if raw.lower() in FALSE_WORDS | {"off", "none"}:
        return None
    try:
        items = limits.parse_many(raw)
    except ValueError:
        items = []
    if len(items) != 1:
        raise ConfigError(f"{name}={raw!r} is not one rate like 600/minute (or off)")
    return raw


def _store_url(env, name):
    """memory:// or a Redis URL: the store the rate-limit counters live in."""
    url = _raw(env, name, "memory://")
    if urlsplit(url).scheme not in RATE_LIMIT_STORES or "://" not in url:
        raise ConfigError(f"{name} must be memory:// or a redis:// URL")
    return url


def _detect_pooler(url):
    """Neon's pooled endpoints carry `-pooler` in the host name; they are PgBouncer in transaction mode."""
    hosts = conninfo_to_dict(url).get("host") or "" if url else ""
    return any("-pooler." in host for host in hosts.split(","))


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    database_url: str | None
    database_url_direct: str | None
    api_host: str
    api_port: int
    cors_origins: tuple[str, ...]
    log_level: str
    log_format: str
    pool_min_size: int
    pool_max_size: int
    pool_timeout: float
    pool_max_idle: float
    pool_max_lifetime: float
    pool_check: str
    connect_timeout: int
    statement_timeout_ms: int
    pgbouncer: bool
    prepare_threshold: int | None
    pgbouncer_prepared: bool
    migrate_on_start: bool
    data_dir: Path
    web_concurrency: int
    worker_class: str
    threads: int
    reuse_port: bool
    list_cache_mb: float
    idempotency_ttl_hours: float
    docs_enabled: bool = True
    auth_jwks_url: str | None = None
    auth_jwt_secret: str | None = field(default=None, repr=False)
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_user_claim: str = "sub"
    auth_leeway_seconds: int = 30
    auth_disabled: bool = False
    max_tasks_per_user: int = 10_000
    rate_limit: str | None = None
    rate_limit_writes: str | None = None
    rate_limit_storage_url: str = "memory://"
    metrics_enabled: bool = True
    metrics_token: str | None = field(default=None, repr=False)
    sync_tombstone_days: float = 30.0
    sync_max_waiters: int = 100
    sync_poll_ms: int = 100

    @property
    def auth_enabled(self):
        """Tokens are required when a key set or a shared secret is configured."""
        return bool(self.auth_jwks_url or self.auth_jwt_secret)

    @property
    def migration_url(self):
        """Migrations may use a direct (unpooled) URL; otherwise the main one."""
        return self.database_url_direct or self.database_url


def load_settings(env=None):
    """Read settings from `env` (default: the process environment after loading `.env`)."""
    if env is None:
        load_dotenv(PROJECT_ROOT / ".env", override=False)
        env = os.environ
    database_url = _database_url(env, "DATABASE_URL")
    pgbouncer = _bool(env, "DATABASE_PGBOUNCER", _detect_pooler(database_url))
    prepare = _int(env, "DATABASE_PREPARE_THRESHOLD", 5, 0, 1000)
    # PgBouncer 1.21+ with max_prepared_statements keeps protocol-level prepared statements in
    # transaction mode (Neon's pooler does); older poolers do not, so it is off unless asked for.
    pgbouncer_prepared = _bool(env, "DATABASE_PGBOUNCER_PREPARED", False)
    threads = _int(env, "GUNICORN_THREADS", 8, 1, 256)
    # One connection per worker thread, opened up front: no thread waits for one, none sits idle.
    pool_min = _int(env, "DB_POOL_MIN_SIZE", threads, 0, 100)
    pool_max = _int(env, "DB_POOL_MAX_SIZE", max(threads, pool_min), 1, 100)
    if pool_max < pool_min:
        raise ConfigError(f"DB_POOL_MAX_SIZE={pool_max} is below DB_POOL_MIN_SIZE={pool_min}")
    return Settings(
        database_url=database_url,
        database_url_direct=_database_url(env, "DATABASE_URL_DIRECT"),
        api_host=_raw(env, "API_HOST", "127.0.0.1"),
        api_port=_int(env, "API_PORT", 8000, 1, 65535),
        cors_origins=_origins(env),
        log_level=_choice(env, "LOG_LEVEL", "info", {lvl.lower() for lvl in LOG_LEVELS}).upper(),
        log_format=_choice(env, "LOG_FORMAT", "text", {"text", "json"}),
        pool_min_size=pool_min,
        pool_max_size=pool_max,
        pool_timeout=_float(env, "DB_POOL_TIMEOUT", 3.0, 0.1, 60),
        pool_max_idle=_float(env, "DB_POOL_MAX_IDLE", 240.0, 1, 86400),
        pool_max_lifetime=_float(env, "DB_POOL_MAX_LIFETIME", 1800.0, 10, 86400),
        pool_check=_choice(env, "DB_POOL_CHECK", "poll", {"poll", "query", "none"}),
        connect_timeout=_int(env, "DB_CONNECT_TIMEOUT", 3, 1, 60),
        statement_timeout_ms=_int(env, "DB_STATEMENT_TIMEOUT_MS", 5000, 0, 600_000),
        pgbouncer=pgbouncer,
        prepare_threshold=None if (pgbouncer and not pgbouncer_prepared) or prepare == 0 else prepare,
        pgbouncer_prepared=pgbouncer_prepared,
        migrate_on_start=_bool(env, "MIGRATE_ON_START", True),
        data_dir=PROJECT_ROOT / _raw(env, "EMBEDDED_DATA_DIR", ".data/postgres"),
        web_concurrency=_int(env, "WEB_CONCURRENCY", 0, 0, 256),
        worker_class=_choice(env, "GUNICORN_WORKER_CLASS", "gthread", {"sync", "gthread", "gevent"}),
        threads=threads,
        reuse_port=_bool(env, "GUNICORN_REUSE_PORT", True),
        list_cache_mb=_float(env, "LIST_CACHE_MB", 16.0, 0, 4096),
        docs_enabled=_bool(env, "DOCS_ENABLED", True),
        auth_jwks_url=_http_url(env, "AUTH_JWKS_URL"),
        auth_jwt_secret=_secret(env, "AUTH_JWT_SECRET", 32),
        auth_issuer=_raw(env, "AUTH_ISSUER", None),
        auth_audience=_raw(env, "AUTH_AUDIENCE", None),
        auth_user_claim=_raw(env, "AUTH_USER_CLAIM", "sub"),
        auth_leeway_seconds=_int(env, "AUTH_LEEWAY_SECONDS", 30, 0, 3600),
        auth_disabled=_bool(env, "AUTH_DISABLED", False),
        idempotency_ttl_hours=_float(env, "IDEMPOTENCY_TTL_HOURS", 24.0, 0.001, 8760),
        max_tasks_per_user=_int(env, "MAX_TASKS_PER_USER", 10_000, 1, 10_000_000),
        rate_limit=_rate(env, "RATE_LIMIT", "600/minute"),
        rate_limit_writes=_rate(env, "RATE_LIMIT_WRITES", "300/minute"),
        rate_limit_storage_url=_store_url(env, "RATE_LIMIT_STORAGE_URL"),
        metrics_enabled=_bool(env, "METRICS_ENABLED", True),
        metrics_token=_secret(env, "METRICS_TOKEN", 16),
        sync_tombstone_days=_float(env, "SYNC_TOMBSTONE_DAYS", 30.0, 0.00001, 3650),
        sync_max_waiters=_int(env, "SYNC_MAX_WAITERS", 100, 0, 1000),
        sync_poll_ms=_int(env, "SYNC_POLL_MS", 100, 10, 5000),
    )
