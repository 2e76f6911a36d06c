"""Authentication in the real server: the safe-default startup rule, the startup and request logs,
big headers through gunicorn, and `make token` for people running it."""

import subprocess

import jwt
import pytest
import requests

from tests.authkit import SECRET, KeySetServer, SigningKey, claims_for
from tests.support import ROOT, LiveServer, free_port
from tests.test_startup import failed_start

BASE = {"MIGRATE_ON_START": "false", "WEB_CONCURRENCY": "1"}


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.com"])
def test_without_authentication_a_non_loopback_address_is_refused(database_url, host):
    output = failed_start({"DATABASE_URL": database_url, "API_HOST": host, **BASE})
    lines = [line for line in output.splitlines() if "startup failed" in line]
    assert len(lines) == 1, output
    assert "AUTH_JWKS_URL" in lines[0] and "AUTH_JWT_SECRET" in lines[0] and "AUTH_DISABLED" in lines[0]


def test_a_non_loopback_bind_is_refused_too(database_url):
    port = free_port()
    output = failed_start({"DATABASE_URL": database_url, "GUNICORN_BIND": f"0.0.0.0:{port}", **BASE})
    assert "startup failed: authentication is off" in output


@pytest.mark.parametrize("env", [{"AUTH_DISABLED": "true"}, {"AUTH_JWT_SECRET": SECRET}])
def test_a_non_loopback_address_starts_with_auth_or_auth_disabled(database_url, env):
    port = free_port()
    server = LiveServer({"DATABASE_URL": database_url, "API_HOST": "0.0.0.0", "GUNICORN_BIND": f"0.0.0.0:{port}",
                         "LOG_LEVEL": "info", **BASE, **env}, port=port)
    server.start()
    try:
        status = requests.get(server.url("/api/alice/tasks"), timeout=10).status_code
        assert status == (200 if "AUTH_DISABLED" in env else 401)
    finally:
        assert server.stop() == 0
    if "AUTH_DISABLED" in env:
        output = server.log_path.read_text()
        warnings = [line for line in output.splitlines() if "authentication is off" in line]
        assert len(warnings) == 1 and "WARNING" in warnings[0], output


def test_loopback_without_authentication_starts_with_one_warning(database_url):
    server = LiveServer({"DATABASE_URL": database_url, "LOG_LEVEL": "info", **BASE})
    server.start()
    try:
        assert requests.get(server.url("/api/alice/tasks"), timeout=10).status_code == 200
    finally:
        server.stop()
    warnings = [line for line in server.log_path.read_text().splitlines() if "authentication is off" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]


def test_a_short_secret_stops_startup_naming_the_variable(database_url):
    output = failed_start({"DATABASE_URL": database_url, "AUTH_JWT_SECRET": "short-secret-value", **BASE})
    assert "configuration: AUTH_JWT_SECRET must be at least 32 bytes" in output
    assert "short-secret-value" not in output


def test_the_startup_log_names_the_mode_never_the_secret(database_url):
    keys = KeySetServer([SigningKey("EdDSA", "k1")]).start()
    server = LiveServer({"DATABASE_URL": database_url, "LOG_LEVEL": "info", "AUTH_JWKS_URL": keys.url,
                         "AUTH_JWT_SECRET": SECRET, "AUTH_ISSUER": "https://auth.example.com",
                         "AUTH_AUDIENCE": "https://app.example.com", "AUTH_USER_CLAIM": "uid", **BASE})
    server.start()
    server.stop()
    keys.stop()
    output = server.log_path.read_text()
    mode = [line for line in output.splitlines() if "authentication on" in line]
    assert len(mode) == 1, output
    for part in (f"127.0.0.1:{keys.port}", "secret yes", "issuer https://auth.example.com",
                 "audience https://app.example.com", "claim uid"):
        assert part in mode[0], mode[0]
    assert SECRET not in output and "authentication is off" not in output


def test_an_unreachable_key_set_at_startup_is_a_warning_not_a_refusal(database_url):
    server = LiveServer({"DATABASE_URL": database_url, "LOG_LEVEL": "info", **BASE,
                         "AUTH_JWKS_URL": f"http://127.0.0.1:{free_port()}/jwks"})
    server.start()
    try:
        token = SigningKey("EdDSA", "k1").sign(claims_for("alice"))
        response = requests.get(server.url("/api/alice/tasks"), headers={"Authorization": f"Bearer {token}"},
                                timeout=10)
        assert response.status_code == 503 and response.json()["error_code"] == "AUTH_UNAVAILABLE"
        assert response.headers["Retry-After"]
    finally:
        assert server.stop() == 0
    assert "cannot fetch the key set" in server.log_path.read_text()


@pytest.fixture(scope="module")
def auth_server(database_url):
    server = LiveServer({"DATABASE_URL": database_url, "LOG_LEVEL": "info", "AUTH_JWT_SECRET": SECRET, **BASE,
                         "WEB_CONCURRENCY": "2"})
    server.start()
    yield server
    server.stop()


def test_the_request_log_names_the_user_never_the_token(auth_server):
    token = jwt.encode(claims_for("log-reader"), SECRET, algorithm="HS256")
    response = requests.post(auth_server.url("/api/log-reader/tasks"), json={"title": "t"}, timeout=10,
                             headers={"Authorization": f"Bearer {token}", "X-Request-ID": "auth-log-1"})
    assert response.status_code == 201
    lines = [line for line in auth_server.output().splitlines() if "auth-log-1" in line]
    assert any(line.endswith("user=log-reader") for line in lines), lines
    assert token not in auth_server.output() and token.split(".")[2] not in auth_server.output()


@pytest.mark.parametrize("size", [9 * 1024, 16 * 1024, 100 * 1024])
def test_a_huge_authorization_header_is_431_or_401_never_500(auth_server, size):
    try:
        response = requests.get(auth_server.url("/api/alice/tasks"), timeout=10,
                                headers={"Authorization": "Bearer " + "a" * size})
    except requests.ConnectionError:
        pytest.fail("the connection was dropped instead of answered")
    assert response.status_code in (401, 431)
    assert requests.get(auth_server.url("/healthz"), timeout=5).status_code == 200


def test_a_preflight_and_a_401_over_http_carry_cors_headers(auth_server):
    origin = "http://localhost:3000"
    preflight = requests.options(auth_server.url("/api/alice/tasks"), timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "Authorization"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    refused = requests.get(auth_server.url("/api/alice/tasks"), headers={"Origin": origin}, timeout=10)
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == origin
    assert refused.json()["error_code"] == "AUTH_REQUIRED"


def test_make_token_prints_a_token_the_service_accepts(auth_server):
    result = subprocess.run(["make", "-s", "token", "USER=alice"], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "AUTH_JWT_SECRET": SECRET}, timeout=60)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and 3500 <= claims["exp"] - claims["iat"] <= 3600
    response = requests.post(auth_server.url("/api/alice/tasks"), json={"title": "from make token"}, timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201


def test_make_token_without_a_secret_says_what_to_set():
    result = subprocess.run(["make", "-s", "token", "USER=alice"], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode != 0 and "AUTH_JWT_SECRET" in result.stderr and not result.stdout.strip()
