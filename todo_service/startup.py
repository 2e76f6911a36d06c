"""Checks run once before serving: settings, the database URL, reachability, migrations."""

import ipaddress
import logging
import os
import socket
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from . import auth, embedded, ratelimit
from .config import ConfigError, load_settings
from .migrate import MigrationError, migrate, pending

log = logging.getLogger("todo_service.startup")

# (fragment of libpq's message, what we tell the operator); first match wins.
REASONS = [
    ("password authentication failed", "authentication failed for user {user} (wrong password?)"),
    ("no password supplied", "the server wants a password for user {user} and the URL has none"),
    ("does not exist", "{detail}"),
    ("server does not support ssl", "TLS refused: the server does not support SSL but sslmode requires it"),
    ("ssl", "TLS handshake with {where} failed: {detail}"),
    ("certificate", "TLS certificate problem with {where}: {detail}"),
    ("timeout expired", "no answer from {where} within the connect timeout"),
    ("connection refused", "connection refused by {where} (is PostgreSQL running there?)"),
    ("could not translate host name", "cannot resolve the host of {where}"),
    ("name or service not known", "cannot resolve the host of {where}"),
]


class StartupError(RuntimeError):
    """The service cannot start; the message is the one line an operator needs."""


def describe(url):
    """host:port/dbname as user — everything but the password."""
    parts = conninfo_to_dict(url)
    host = parts.get("host") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}", parts.get("user")


def explain(exc, url):
    """One clear sentence for a failed connection."""
    where, user = describe(url)
    detail = " ".join(str(exc).split()) or type(exc).__name__
    lowered = detail.lower()
    for fragment, template in REASONS:
        if fragment in lowered:
            return f"database {where}: " + template.format(where=where, user=user, detail=detail)
    return f"database {where}: cannot connect: {detail}"


def check_database(url, timeout):
    """Connect once and run a statement; StartupError with a clear line otherwise."""
    try:
        with psycopg.connect(url, connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise StartupError(explain(exc, url)) from None


def check_free(addresses):
    """StartupError if another process listens on one of the (host, port) `addresses`.

    Each worker opens its own SO_REUSEPORT socket (gunicorn.conf.py). A second server doing the
    same on the port would quietly share its traffic instead of failing, so probe with a plain
    socket first, which any listener on the port refuses.
    """
    for address in addresses:
        if not isinstance(address, tuple):
            continue  # a unix socket path
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn: TIME_WAIT is fine
            try:
                probe.bind(address[:2])
            except OSError as exc:
                where, reason = f"{address[0]}:{address[1]}", exc.strerror
                raise StartupError(f"cannot listen on {where}: {reason} (is another server running there?)") from None


def _loopback(host):
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings, addresses=()):
    """Refuse to serve a non-loopback address without authentication, unless AUTH_DISABLED=true.

    `addresses` are the binds gunicorn will listen on ((host, port) or a unix socket path, which
    only this machine can reach); API_HOST is checked too.
    """
    if settings.auth_enabled:
        log.info("%s", auth.describe(settings))
        return
    hosts = [settings.api_host, *(address[0] for address in addresses if isinstance(address, tuple))]
    exposed = [host for host in hosts if not _loopback(host)]
    if exposed and not settings.auth_disabled:
        raise StartupError(f"authentication is off and the service would listen on {exposed[0]}: set AUTH_JWKS_URL "
                           "or AUTH_JWT_SECRET, or AUTH_DISABLED=true behind a gateway that authenticates")
    log.warning("authentication is off (AUTH_JWKS_URL and AUTH_JWT_SECRET unset%s): any caller can reach any "
                "user's tasks", ", AUTH_DISABLED=true" if settings.auth_disabled else "")


def check_key_set_url(settings):
    """Warn about a key set fetched in plain http from another host (each worker fetches it at start)."""
    parts = urlsplit(settings.auth_jwks_url or "")
    if parts.scheme == "http" and not _loopback(parts.hostname or ""):
        log.warning("auth: AUTH_JWKS_URL is plain http on another host; use https, or anyone on the path "
                    "can hand the service signing keys")


def service_url(address):
    """The URL a gunicorn bind address is reached at: http://host:port, or unix:/path."""
    if isinstance(address, tuple):
        host, port = address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return f"fd://{address}" if isinstance(address, int) else f"unix:{address}"


def announce(addresses, docs_enabled):
    """Log where the service listens and where its docs are, in one line.

    gunicorn's own "Listening at:" line names no address when each worker opens its own socket.
    """
    urls = [service_url(address) for address in addresses]
    web = next((url for url in urls if url.startswith("http")), None)
    if not docs_enabled:
        docs = "API docs off (DOCS_ENABLED=false)"
    elif web is None:
        docs = "API docs at /docs"
    else:
        docs = f"API docs at {web}/docs"
    log.info("listening on %s; %s", ", ".join(urls), docs)


def prepare_service(addresses=()):
    """Settings, authentication mode, database choice, reachability and migrations; returns the settings."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise StartupError(f"configuration: {exc}") from None
    check_exposure(settings, addresses)
    check_key_set_url(settings)
    log.info("%s", ratelimit.describe(settings))
    url = settings.database_url
    if url is None:
        url = embedded.start(settings.data_dir)
        os.environ["DATABASE_URL"] = url  # workers forked later use the same server
        settings = load_settings()
    else:
        log.info("database: %s", describe(url)[0])
    check_database(url, settings.connect_timeout)
    if settings.migrate_on_start:
        try:
            migrate(settings.migration_url)
        except (psycopg.Error, MigrationError) as exc:
            raise StartupError(f"migrations failed: {' '.join(str(exc).split())}") from None
    elif missing := pending(settings.migration_url):
        log.warning("migrations pending (MIGRATE_ON_START=false): %s; requests that need them will fail "
                    "until `make migrate` applies them", ", ".join(missing))
    return settings
