"""Starting and stopping the real server: clear refusals, the embedded database, clean shutdown."""

import logging
import os
import signal
import socket
import subprocess
import time

import psycopg
import pytest
import requests

from tests.conftest import SERVICE_ENV
from tests.pgservers import PgCluster
from tests.support import ROOT, LiveServer, auth_headers, free_port
from todo_service.migrate import migration_files
from todo_service.startup import announce


def failed_start(env, within=5.0):
    """Start gunicorn with `env`; assert it exits non-zero within `within` seconds; return its output."""
    server = LiveServer(env)
    started = time.monotonic()
    server.start(wait=False)
    code = server.proc.wait(timeout=within + 5)
    elapsed = time.monotonic() - started
    output = server.output()
    server.log.close()
    assert code != 0, output
    assert elapsed < within, f"took {elapsed:.1f}s"
    return output


def test_unreachable_database_exits_non_zero_within_5s_naming_the_host():
    port = free_port()
    output = failed_start({"DATABASE_URL": f"postgresql://todo:s3cret-pw@127.0.0.1:{port}/todo"})
    lines = [line for line in output.splitlines() if "startup failed" in line]
    assert len(lines) == 1, output
    assert f"127.0.0.1:{port}/todo" in lines[0] and "refused" in lines[0]
    assert "s3cret-pw" not in output


def test_unknown_database_is_named(server_url):
    url = psycopg.conninfo.make_conninfo(server_url, dbname="no_such_db_here")
    output = failed_start({"DATABASE_URL": url})
    assert 'database "no_such_db_here" does not exist' in output


@pytest.fixture(scope="module")
def guarded_cluster():
    """A PostgreSQL that wants a password and offers no TLS."""
    cluster = PgCluster("guarded").init(password="right-password").start()
    yield cluster
    cluster.destroy()


def test_wrong_password_is_named(guarded_cluster):
    output = failed_start({"DATABASE_URL": guarded_cluster.url(password="wrong-password")})
    line = next(line for line in output.splitlines() if "startup failed" in line)
    assert "authentication failed for user postgres" in line
    assert "wrong-password" not in output


def test_refused_tls_is_named(guarded_cluster):
    output = failed_start({"DATABASE_URL": guarded_cluster.url(password="right-password") + "?sslmode=require"})
    line = next(line for line in output.splitlines() if "startup failed" in line)
    assert "TLS refused: the server does not support SSL" in line
    assert "right-password" not in output


def test_right_password_starts(guarded_cluster):
    server = LiveServer({"DATABASE_URL": guarded_cluster.url(password="right-password"), "WEB_CONCURRENCY": "1"})
    server.start()
    try:
        assert requests.post(server.url("/api/a/tasks"), json={"title": "t"}, timeout=10).status_code == 201
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("name,value", [("API_PORT", "abc"), ("DB_POOL_MAX_SIZE", "lots"), ("LOG_FORMAT", "xml")])
def test_bad_setting_stops_startup_with_a_clear_line(database_url, name, value):
    output = failed_start({"DATABASE_URL": database_url, name: value})
    assert f"configuration: {name}=" in output


def test_embedded_database_serves_and_stops_with_the_server(tmp_path):
    data_dir = tmp_path / "pg"
    server = LiveServer({"DATABASE_URL": "", "EMBEDDED_DATA_DIR": str(data_dir), "LOG_LEVEL": "info",
                         "WEB_CONCURRENCY": "2"})
    server.start(timeout=60)
    try:
        created = requests.post(server.url("/api/alice/tasks"), json={"title": "embedded"}, timeout=10)
        assert created.status_code == 201
        assert requests.get(server.url("/readyz"), timeout=10).status_code == 200
        assert (data_dir / "postmaster.pid").exists()
    finally:
        code = server.stop()
    assert code == 0
    assert "embedded PostgreSQL" in server.log_path.read_text()
    assert not (data_dir / "postmaster.pid").exists(), "PostgreSQL still running after gunicorn stopped"
    # Data survives a restart of the whole service.
    server = LiveServer({"DATABASE_URL": "", "EMBEDDED_DATA_DIR": str(data_dir), "WEB_CONCURRENCY": "1"})
    server.start(timeout=60)
    try:
        titles = [t["title"] for t in requests.get(server.url("/api/alice/tasks"), timeout=10).json()]
        assert titles == ["embedded"]
    finally:
        assert server.stop() == 0


def test_instances_starting_together_migrate_an_empty_database_once(empty_database):
    env = {"DATABASE_URL": empty_database, "MIGRATE_ON_START": "true", "WEB_CONCURRENCY": "1", **SERVICE_ENV}
    servers = [LiveServer(env) for _ in range(3)]
    for server in servers:
        server.start(wait=False)
    try:
        for server in servers:
            server.wait_ready()
            assert requests.post(server.url("/api/a/tasks"), json={"title": "t"}, headers=auth_headers("a"),
                                 timeout=10).status_code == 201
    finally:
        codes = [server.stop() for server in servers]
    assert codes == [0, 0, 0]
    with psycopg.connect(empty_database, prepare_threshold=None) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [version for version, _, _ in migration_files()]


def test_a_port_in_use_stops_startup_with_a_clear_line(database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        output = failed_start({"DATABASE_URL": database_url, "GUNICORN_BIND": f"127.0.0.1:{port}",
                               "MIGRATE_ON_START": "false", **SERVICE_ENV})
    lines = [line for line in output.splitlines() if "startup failed" in line]
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], output


def test_a_second_server_on_the_same_port_is_refused(live_server, database_url):
    output = failed_start({"DATABASE_URL": database_url, "GUNICORN_BIND": f"127.0.0.1:{live_server.port}",
                           "MIGRATE_ON_START": "false", **SERVICE_ENV})
    assert f"cannot listen on 127.0.0.1:{live_server.port}" in output
    assert requests.get(live_server.url("/healthz"), timeout=5).status_code == 200


def test_a_unix_socket_bind_serves(database_url, tmp_path):
    """Per-worker sockets are for TCP only: on a unix socket the workers share the master's."""
    path = tmp_path / "todo.sock"
    server = LiveServer({"DATABASE_URL": database_url, "GUNICORN_BIND": f"unix:{path}", "WEB_CONCURRENCY": "2",
                         "MIGRATE_ON_START": "false", **SERVICE_ENV})
    server.start(wait=False)
    try:
        deadline, reply = time.monotonic() + 20, b""
        while time.monotonic() < deadline and not reply.startswith(b"HTTP/1.1 200"):
            assert server.proc.poll() is None, server.output()
            try:
                with socket.socket(socket.AF_UNIX) as client:
                    client.settimeout(5)
                    client.connect(str(path))
                    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    reply = client.recv(4096)
            except OSError:
                time.sleep(0.1)
        assert reply.startswith(b"HTTP/1.1 200"), server.output()
        assert "Worker failed to boot" not in server.output() and "EOPNOTSUPP" not in server.output()
    finally:
        assert server.stop() == 0


def test_pending_migrations_are_named_when_not_applied_at_start(empty_database):
    server = LiveServer({"DATABASE_URL": empty_database, "MIGRATE_ON_START": "false", "WEB_CONCURRENCY": "1",
                         **SERVICE_ENV})
    server.start()
    try:
        lines = [line for line in server.output().splitlines() if "migrations pending" in line]
        assert len(lines) == 1 and all(version in lines[0] for version, _, _ in migration_files()), lines
    finally:
        assert server.stop() == 0
    with psycopg.connect(empty_database, prepare_threshold=None) as conn:
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None


def startup_log(env):
    """The log of a gunicorn that started with `env` and was stopped again."""
    server = LiveServer({"WEB_CONCURRENCY": "1", "MIGRATE_ON_START": "false", "LOG_LEVEL": "info",
                         **SERVICE_ENV, **env})
    server.start()
    assert server.stop() == 0
    return server.log_path.read_text(), server.port


def test_startup_log_names_the_url_and_the_docs_url_in_one_line(database_url):
    log, port = startup_log({"DATABASE_URL": database_url})
    lines = [line for line in log.splitlines() if f"http://127.0.0.1:{port}" in line]
    assert len(lines) == 1, log
    assert f"listening on http://127.0.0.1:{port}; API docs at http://127.0.0.1:{port}/docs" in lines[0]


def test_startup_log_says_when_docs_are_off(database_url):
    log, port = startup_log({"DATABASE_URL": database_url, "DOCS_ENABLED": "false"})
    line = next(line for line in log.splitlines() if f"http://127.0.0.1:{port}" in line)
    assert line.endswith(f"listening on http://127.0.0.1:{port}; API docs off (DOCS_ENABLED=false)")


def test_the_line_names_ipv6_and_unix_socket_binds(caplog):
    with caplog.at_level(logging.INFO, logger="todo_service.startup"):
        announce([("::1", 8000), "/run/todo.sock"], docs_enabled=True)
        announce(["/run/todo.sock"], docs_enabled=True)
    assert [record.getMessage() for record in caplog.records] == [
        "listening on http://[::1]:8000, unix:/run/todo.sock; API docs at http://[::1]:8000/docs",
        "listening on unix:/run/todo.sock; API docs at /docs",
    ]


def make_dev(host, **env):
    """`make dev` with API_HOST=`host` and authentication off; (exit code, stderr), or None if it kept serving."""
    env = {"PATH": "/usr/bin:/bin", "API_HOST": host, "API_PORT": str(free_port()), "DATABASE_URL": "", **env}
    proc = subprocess.Popen(["make", "-s", "dev"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the debug server started: stop it and its reloader
        proc.communicate()
        return None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
def test_make_dev_refuses_a_non_loopback_host_without_authentication(host):
    result = make_dev(host)
    assert result is not None, "make dev served without authentication"
    code, err = result
    assert code != 0 and f"authentication is off and the service would listen on {host}" in err, err


def test_the_exposure_check_lets_loopback_and_a_declared_gateway_through(database_url):
    from flask.testing import FlaskCliRunner

    from tests.conftest import settings_for
    from todo_service import create_app

    auth_off = {"AUTH_JWKS_URL": "", "AUTH_JWT_SECRET": ""}  # whatever the suite's own mode is
    for host, env in [("127.0.0.1", {}), ("localhost", {}), ("0.0.0.0", {"AUTH_DISABLED": "true"})]:
        app = create_app({"SETTINGS": settings_for(database_url, **auth_off, **env), "TESTING": True})
        result = FlaskCliRunner(app).invoke(args=["check-exposure", "--host", host])
        assert result.exit_code == 0, result.output
    app = create_app({"SETTINGS": settings_for(database_url, **auth_off), "TESTING": True})
    refused = FlaskCliRunner(app).invoke(args=["check-exposure", "--host", "0.0.0.0"])
    assert refused.exit_code != 0 and "AUTH_DISABLED=true" in refused.output
