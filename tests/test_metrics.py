"""GET /metrics: Prometheus series summed over gunicorn's workers, by route template, and protected."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import jwt
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.authkit import SECRET, claims_for
from tests.conftest import SERVICE_ENV, settings_for
from tests.support import LiveServer, free_port, wait_for_lock_wait
from todo_service import create_app, db

METRICS_TOKEN = "scrape-token-for-the-metrics-tests"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}
DURATION = "http_server_request_duration_seconds"
STALE_CAUSE = "LEFT_BY_AN_EARLIER_RUN"


def parse(text):
    """{(sample name, frozenset of labels): value} of an exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name, **labels):
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def user_headers(user):
    """A valid HS256 token for `user` (the metrics server checks AUTH_JWT_SECRET)."""
    return {"Authorization": f"Bearer {jwt.encode(claims_for(user), SECRET, algorithm='HS256')}"}


def _stale_samples(directory):
    """Leave a counter sample in `directory` the way an earlier run's worker would have."""
    code = f"from todo_service import metrics; metrics.count(metrics.OUTAGES, {STALE_CAUSE!r})"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory})


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("metrics"))
    _stale_samples(directory)
    return directory


@pytest.fixture(scope="module")
def server(database_url, metrics_dir):
    """gunicorn with two workers, authentication on (HS256), a metrics token and a configured directory."""
    live = LiveServer({"DATABASE_URL": database_url, "WEB_CONCURRENCY": "2", "MIGRATE_ON_START": "false",
                       **SERVICE_ENV, "AUTH_JWT_SECRET": SECRET, "METRICS_TOKEN": METRICS_TOKEN,
                       "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "DB_POOL_MIN_SIZE": "2", "DB_POOL_MAX_SIZE": "3",
                       "DB_STATEMENT_TIMEOUT_MS": "60000"})
    live.start()
    yield live
    live.stop()


def scrape(server):
    response = requests.get(server.url("/metrics"), headers=SCRAPE, timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def test_requests_are_counted_across_workers(server, clean_db):
    before = scrape(server)
    for _ in range(40):  # a new connection each: the kernel spreads them over both workers
        response = requests.get(server.url("/api/counted/tasks/987654"), headers=user_headers("counted"), timeout=10)
        assert response.status_code == 404
    after = scrape(server)
    labels = {"http_request_method": "GET", "http_route": "/api/{user_id}/tasks/{task_id}",
              "http_response_status_code": "404"}
    assert value(after, f"{DURATION}_count", **labels) - value(before, f"{DURATION}_count", **labels) == 40
    assert value(after, f"{DURATION}_bucket", le="+Inf", **labels) == value(after, f"{DURATION}_count", **labels)


def _duration_series(samples):
    return {labels for name, labels in samples if name == f"{DURATION}_count"}


def _visit(server, users):
    session = requests.Session()
    for user in users:
        headers = user_headers(user)
        session.get(server.url(f"/api/{user}/tasks"), headers=headers, timeout=10)
        session.get(server.url(f"/api/{user}/tasks/1"), headers=headers, timeout=10)
        session.get(server.url(f"/no/such/{user}"), timeout=10)
        session.request("BREW", server.url(f"/api/{user}/tasks"), headers=headers, timeout=10)


def test_series_are_per_route_template_never_per_user(server, clean_db):
    _visit(server, [f"first-{n}" for n in range(15)])
    series = _duration_series(scrape(server))
    _visit(server, [f"second-{n}-{uuid.uuid4().hex[:6]}" for n in range(15)])
    after = _duration_series(scrape(server))
    assert after == series
    routes = {dict(labels)["http_route"] for labels in after}
    assert {"/api/{user_id}/tasks", "/api/{user_id}/tasks/{task_id}", "unmatched"} <= routes
    assert not any("first-" in route or "second-" in route for route in routes)
    assert "_OTHER" in {dict(labels)["http_request_method"] for labels in after}


def test_statement_durations_by_name(server, clean_db):
    headers = user_headers("timed")
    before = scrape(server)
    created = requests.post(server.url("/api/timed/tasks"), json={"title": "t"}, headers=headers, timeout=10)
    requests.get(server.url(f"/api/timed/tasks/{created.json()['id']}"), headers=headers, timeout=10)
    after = scrape(server)
    for statement in ("create_task", "get_task"):
        count = "db_client_operation_duration_seconds_count"
        assert value(after, count, db_query_summary=statement) - value(before, count, db_query_summary=statement) == 1
        assert value(after, "db_client_operation_duration_seconds_sum", db_query_summary=statement) > 0


def test_pool_gauges_sum_over_the_workers(server, clean_db):
    for _ in range(20):  # new connections, so both workers open their pools
        requests.get(server.url("/readyz"), timeout=10)
    deadline = time.monotonic() + 15  # other workers report every POOL_SAMPLE_SECONDS
    while value(scrape(server), "db_client_connection_max") != 6 and time.monotonic() < deadline:
        time.sleep(0.5)
    samples = scrape(server)
    assert value(samples, "db_client_connection_max") == 6  # DB_POOL_MAX_SIZE=3 in each of two workers
    connections = sum(value(samples, "db_client_connection_count", db_client_connection_state=state)
                      for state in ("idle", "used"))
    assert 4 <= connections <= 6  # at least DB_POOL_MIN_SIZE=2 each
    assert value(samples, "db_client_connection_pending_requests") == 0


def test_auth_failures_by_reason(server, clean_db):
    before = scrape(server)
    url = server.url("/api/alice/tasks")
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer not-a-token"}, timeout=10).status_code == 401
    assert requests.get(url, headers=user_headers("mallory"), timeout=10).status_code == 403
    after = scrape(server)
    for reason in ("AUTH_REQUIRED", "INVALID_TOKEN", "FORBIDDEN"):
        assert value(after, "todo_auth_failures_total", reason=reason) \
            - value(before, "todo_auth_failures_total", reason=reason) == 1, reason


def test_idempotent_replays_are_counted(server, clean_db):
    headers = {**user_headers("keyed"), "Idempotency-Key": uuid.uuid4().hex}
    before = scrape(server)
    for _ in range(3):
        response = requests.post(server.url("/api/keyed/tasks"), json={"title": "once"}, headers=headers, timeout=10)
        assert response.status_code == 201
    after = scrape(server)
    assert value(after, "todo_idempotent_replays_total") - value(before, "todo_idempotent_replays_total") == 2


def test_list_cache_hits_and_misses_are_counted(server, clean_db):
    session, headers = requests.Session(), user_headers("lister")  # one connection: one worker's cache
    session.post(server.url("/api/lister/tasks"), json={"title": "listed"}, headers=headers, timeout=10)
    before = scrape(server)
    session.get(server.url("/api/lister/tasks"), headers=headers, timeout=10)
    middle = scrape(server)
    session.get(server.url("/api/lister/tasks"), headers=headers, timeout=10)
    after = scrape(server)

    def delta(new, old, result):
        return value(new, "todo_list_cache_lookups_total", result=result) \
            - value(old, "todo_list_cache_lookups_total", result=result)

    assert (delta(middle, before, "miss"), delta(middle, before, "hit")) == (1, 0)
    assert (delta(after, middle, "miss"), delta(after, middle, "hit")) == (0, 1)


def test_samples_of_an_earlier_run_are_wiped_at_start(server, metrics_dir):
    samples = scrape(server)
    assert not any(name == "todo_outages_total" and dict(labels).get("cause") == STALE_CAUSE
                   for name, labels in samples)
    assert any(name.endswith(".db") for name in os.listdir(metrics_dir))  # the configured directory is in use


def test_metrics_need_the_metrics_token_and_no_user_token(server):
    url = server.url("/metrics")
    missing = requests.get(url, timeout=10)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["error_code"] == "UNAUTHORIZED"
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert requests.get(url, headers=user_headers("alice"), timeout=10).status_code == 401
    good = requests.get(url, headers=SCRAPE, timeout=10)
    assert good.status_code == 200 and good.headers["Content-Type"].startswith("text/plain")
    openmetrics = requests.get(url, headers={**SCRAPE, "Accept": "application/openmetrics-text"}, timeout=10)
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")


def _workers(master_pid):
    """The pids of the processes whose parent is `master_pid`."""
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master_pid and fields[0] != "Z":
                children.add(int(entry))
    return children


def test_a_dead_workers_gauges_leave_the_sums(server, sql_conn, clean_db):
    assert value(scrape(server), "http_server_active_requests") == 1  # the scrape itself
    blocked = threading.Thread(target=lambda: _quietly(server.url("/api/stuck/tasks/1"), user_headers("stuck")))
    with sql_conn.transaction():
        sql_conn.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        blocked.start()
        wait_for_lock_wait(sql_conn, blocked)
        assert value(scrape(server), "http_server_active_requests") == 2
        killed = _workers(server.proc.pid)
        assert len(killed) == 2
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        blocked.join(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = _workers(server.proc.pid)
        if len(workers) == 2 and not workers & killed:
            break
        time.sleep(0.1)
    server.wait_ready()
    assert value(scrape(server), "http_server_active_requests") == 1


def _quietly(url, headers):
    with contextlib.suppress(requests.RequestException):  # its worker is killed meanwhile
        requests.get(url, headers=headers, timeout=30)


def _test_app(database_url, **env):
    """An app for the test client; /metrics answers SCRAPE's token."""
    return create_app({"SETTINGS": settings_for(database_url, METRICS_TOKEN=METRICS_TOKEN, **env), "TESTING": True})


def _scrape(app):
    return parse(app.test_client().get("/metrics", headers=SCRAPE).get_data(as_text=True))


def test_outages_and_connection_errors_under_the_test_client(database_url, clean_db):
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/todo"
    app = _test_app(dead, DB_POOL_TIMEOUT="0.5", DB_POOL_MIN_SIZE="1")
    before = _scrape(app)
    assert app.test_client().get("/readyz").status_code == 503
    after = _scrape(app)
    db.close_pool(app)
    assert value(after, "todo_outages_total", cause="DATABASE_UNAVAILABLE") \
        - value(before, "todo_outages_total", cause="DATABASE_UNAVAILABLE") == 1
    assert value(after, "db_client_connection_errors_total", error_type="connect") \
        > value(before, "db_client_connection_errors_total", error_type="connect")
    labels = {"http_request_method": "GET", "http_route": "/readyz", "http_response_status_code": "503"}
    assert value(after, f"{DURATION}_count", **labels) - value(before, f"{DURATION}_count", **labels) == 1


def test_with_authentication_on_and_no_metrics_token_nobody_scrapes(database_url, clean_db):
    settings = settings_for(database_url, AUTH_JWT_SECRET=SECRET, METRICS_TOKEN="")
    app = create_app({"SETTINGS": settings, "TESTING": True})
    response = app.test_client().get("/metrics", headers=user_headers("alice"))
    assert response.status_code == 403 and response.get_json()["error_code"] == "FORBIDDEN"


def test_metrics_off_records_nothing_and_answers_404(database_url, clean_db):
    on, off = _test_app(database_url), _test_app(database_url, METRICS_ENABLED="false")
    labels = {"http_request_method": "GET", "http_route": "/healthz", "http_response_status_code": "200"}
    assert off.test_client().get("/metrics", headers=SCRAPE).status_code == 404
    before = value(_scrape(on), f"{DURATION}_count", **labels)
    off.test_client().get("/healthz")
    assert value(_scrape(on), f"{DURATION}_count", **labels) == before
