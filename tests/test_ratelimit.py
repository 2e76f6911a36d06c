"""Rate limits: per user or address, 429 RATE_LIMITED, the RateLimit headers, one budget in Redis, fail open."""

import re
import time

import pytest
import redis
import requests
from flask.testing import FlaskClient

from tests.authkit import SECRET
from tests.conftest import settings_for
from tests.redisserver import RedisServer, redis_server_binary
from tests.support import SUITE_METRICS_TOKEN, WITH_AUTH, LiveServer
from todo_service import create_app, db, ratelimit
from todo_service.auth import mint
from todo_service.config import ConfigError, load_settings

ORIGIN = "http://localhost:3000"
ITEM = re.compile(r'^"(default|writes)";a=(\d+);w=(\d+)$')
needs_redis = pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed (make test "
                                                                          "installs it)")


@pytest.fixture
def make_app(database_url, clean_db):
    """`make_app(**env)`: the app with those settings and Flask's plain client (no automatic tokens)."""
    made = []

    def make(**env):
        app = create_app({"SETTINGS": settings_for(database_url, **env), "TESTING": True})
        app.test_client_class = FlaskClient
        made.append(app)
        return app

    yield make
    for app in made:
        db.close_pool(app)


def service_limits(response):
    """{policy: (available, seconds)} from the RateLimit header."""
    items = [ITEM.match(item.strip()) for item in response.headers["RateLimit"].split(",")]
    assert all(items), response.headers["RateLimit"]
    return {m[1]: (int(m[2]), int(m[3])) for m in items}


def bearer(settings, user):
    return {"Authorization": f"Bearer {mint(settings, user)}"}


def test_past_the_limit_a_user_gets_429_rate_limited_with_retry_after(make_app):
    client = make_app(RATE_LIMIT="3/minute").test_client()
    assert [client.get("/api/alice/tasks").status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get("/api/alice/tasks")
    body = refused.get_json()
    assert refused.status_code == 429, body
    assert body["error_code"] == "RATE_LIMITED" and body["field"] is None and body["detail"] and body["request_id"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert service_limits(refused)["default"][0] == 0
    assert service_limits(refused)["default"][1] <= int(refused.headers["Retry-After"])


def test_every_api_answer_carries_the_policies_and_what_is_left(make_app):
    client = make_app(RATE_LIMIT="600/minute", RATE_LIMIT_WRITES="300/minute").test_client()
    created = client.post("/api/alice/tasks", json={"title": "t"})
    assert created.status_code == 201
    assert created.headers["RateLimit-Policy"] == '"default";q=600;w=60, "writes";q=300;w=60'
    assert service_limits(created) == {"default": (599, 60), "writes": (299, 60)}
    read = client.get("/api/alice/tasks")
    assert read.headers["RateLimit-Policy"] == created.headers["RateLimit-Policy"]
    assert service_limits(read) == {"default": (598, 60)}
    missing = client.get("/api/alice/tasks/999999")
    assert missing.status_code == 404 and service_limits(missing) == {"default": (597, 60)}


def test_writes_spend_a_budget_of_their_own(make_app):
    client = make_app(RATE_LIMIT="100/minute", RATE_LIMIT_WRITES="2/minute").test_client()
    assert [client.post("/api/alice/tasks", json={"title": "t"}).status_code for _ in range(2)] == [201, 201]
    refused = client.post("/api/alice/tasks", json={"title": "t"})
    assert refused.status_code == 429 and "write" in refused.get_json()["detail"]
    assert service_limits(refused)["writes"][0] == 0
    assert client.get("/api/alice/tasks").status_code == 200


def test_health_docs_openapi_and_preflights_are_never_limited(make_app):
    client = make_app(RATE_LIMIT="1/minute").test_client()
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    for _ in range(3):
        for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
            response = client.get(path)
            assert response.status_code == 200 and "RateLimit" not in response.headers, path
        assert client.options("/api/alice/tasks", headers=preflight).status_code == 200
    assert client.get("/api/alice/tasks").status_code == 200


def test_without_authentication_each_address_has_its_own_budget(make_app):
    client = make_app(RATE_LIMIT="2/minute").test_client()
    one, other = {"REMOTE_ADDR": "192.0.2.1"}, {"REMOTE_ADDR": "192.0.2.2"}
    assert [client.get("/api/alice/tasks", environ_base=one).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/api/bob/tasks", environ_base=one).status_code == 429  # the address, not the path
    assert client.get("/api/alice/tasks", environ_base=other).status_code == 200


def test_with_authentication_each_user_has_their_own_budget_wherever_they_call_from(make_app):
    app = make_app(RATE_LIMIT="2/minute", AUTH_JWT_SECRET=SECRET)
    client, settings = app.test_client(), app.config["SETTINGS"]
    alice, bob = bearer(settings, "alice"), bearer(settings, "bob")
    statuses = [client.get("/api/alice/tasks", headers=alice, environ_base={"REMOTE_ADDR": address}).status_code
                for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3")]
    assert statuses == [200, 200, 429]
    assert client.get("/api/bob/tasks", headers=bob, environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 200
    forbidden = client.get("/api/bob/tasks", headers=alice)  # alice's token on bob's path: her budget, spent
    assert forbidden.status_code == 429


def test_a_flood_of_bad_tokens_is_limited_by_address_and_spares_signed_in_users(make_app):
    app = make_app(RATE_LIMIT="3/minute", AUTH_JWT_SECRET=SECRET)
    client, settings = app.test_client(), app.config["SETTINGS"]
    bad = {"Authorization": "Bearer not-a-token"}
    answers = [client.get("/api/alice/tasks", headers=headers) for headers in (bad, {}, bad, bad)]
    assert [answer.status_code for answer in answers] == [401, 401, 401, 429]
    assert service_limits(answers[0])["default"] == (2, 60)  # a 401 is limited, and says so
    assert client.get("/api/alice/tasks", headers=bearer(settings, "alice")).status_code == 200
    assert client.get("/api/alice/tasks", headers=bad, environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 401


def test_cors_exposes_the_rate_limit_headers(make_app):
    client = make_app(RATE_LIMIT="1/minute").test_client()
    for status in (200, 429):
        response = client.get("/api/alice/tasks", headers={"Origin": ORIGIN})
        assert response.status_code == status
        exposed = {name.strip().lower() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"ratelimit-policy", "ratelimit", "retry-after"} <= exposed


def test_rates_are_checked_when_the_settings_are_read():
    assert load_settings({}).rate_limit == "600/minute" and load_settings({}).rate_limit_writes == "300/minute"
    assert load_settings({"RATE_LIMIT": "off", "RATE_LIMIT_WRITES": "0"}).rate_limit_writes is None
    for bad in ("600", "600/fortnight", "1/second;600/minute", "many"):
        with pytest.raises(ConfigError, match="RATE_LIMIT"):
            load_settings({"RATE_LIMIT": bad})
    with pytest.raises(ConfigError, match="RATE_LIMIT_STORAGE_URL"):
        load_settings({"RATE_LIMIT_STORAGE_URL": "memcached://127.0.0.1:11211"})


def test_the_openapi_document_names_429_and_the_headers_on_every_api_operation(make_app):
    document = make_app(RATE_LIMIT="600/minute").test_client().get("/openapi.json").get_json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            if not path.startswith("/api/"):
                assert "429" not in operation["responses"], (method, path)
                continue
            assert {"Retry-After", "RateLimit", "RateLimit-Policy"} <= set(operation["responses"]["429"]["headers"])
            for status, response in operation["responses"].items():
                assert {"RateLimit", "RateLimit-Policy"} <= set(response.get("headers", {})), (method, path, status)


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


def live(database_url, redis_url, **env):
    """A gunicorn with rate limits kept in the Redis at `redis_url`."""
    return LiveServer({"DATABASE_URL": database_url, "MIGRATE_ON_START": "false", "RATE_LIMIT_STORAGE_URL": redis_url,
                       "RATE_LIMIT_WRITES": "off", "LOG_LEVEL": "info", **env}).start()


@needs_redis
def test_two_instances_with_two_workers_each_share_one_budget_in_redis(database_url, clean_db, redis_server):
    servers = [live(database_url, redis_server.url, RATE_LIMIT="8/minute", WEB_CONCURRENCY="2") for _ in range(2)]
    try:
        answers = []
        for number in range(10):  # a new connection each time: any worker of either instance may answer
            response = requests.get(servers[number % 2].url("/api/alice/tasks"), timeout=10,
                                    headers={"Connection": "close"})
            answers.append((response.status_code, service_limits(response)["default"][0]))
        assert answers == [(200, left) for left in range(7, -1, -1)] + [(429, 0), (429, 0)]
        assert all("store redis://127.0.0.1" in server.output() for server in servers)
    finally:
        for server in servers:
            server.stop()


@needs_redis
def test_with_redis_down_the_service_keeps_serving_and_logs_the_outage_once(database_url, clean_db, redis_server):
    server = live(database_url, redis_server.url, RATE_LIMIT="100/minute", WEB_CONCURRENCY="1")
    revived = RedisServer(redis_server.port)
    try:
        session = requests.Session()
        assert session.get(server.url("/api/alice/tasks"), timeout=10).status_code == 200
        redis_server.stop()
        for _ in range(5):
            response = session.get(server.url("/api/alice/tasks"), timeout=10)
            assert response.status_code == 200
            assert service_limits(response)["default"][0] < 100  # still counted, in the worker's memory
        assert server.output().count("Rate limit storage unreachable") == 1
        revived.start()  # same port: the worker finds it again (probed with backoff)
        deadline = time.monotonic() + 20
        while "Rate limit storage recovered" not in server.output() and time.monotonic() < deadline:
            session.get(server.url("/api/alice/tasks"), timeout=10)
            time.sleep(0.2)
        assert "Rate limit storage recovered" in server.output()
    finally:
        server.stop()
        revived.stop()


@needs_redis
def test_a_lost_store_is_counted_once_per_outage(make_app, redis_server):
    before = ratelimit.store_outages()
    client = make_app(RATE_LIMIT="100/minute", RATE_LIMIT_STORAGE_URL=redis_server.url).test_client()
    assert client.get("/api/alice/tasks").status_code == 200
    redis_server.stop()
    assert [client.get("/api/alice/tasks").status_code for _ in range(3)] == [200, 200, 200]
    assert ratelimit.store_outages() == before + 1
    scrape = {"Authorization": f"Bearer {SUITE_METRICS_TOKEN}"} if WITH_AUTH else {}
    scraped = client.get("/metrics", headers=scrape).get_data(as_text=True)
    assert re.search(r"^todo_rate_limit_store_outages_total [1-9]", scraped, re.M), scraped[-2000:]


@needs_redis
def test_a_restarted_redis_keeps_counting_with_no_outage(make_app, redis_server):
    """A restart closes the kept connections and empties the script cache: both are mended within the request."""
    client = make_app(RATE_LIMIT="100/minute", RATE_LIMIT_STORAGE_URL=redis_server.url).test_client()
    assert service_limits(client.get("/api/alice/tasks"))["default"][0] == 99
    before = ratelimit.store_outages()
    redis_server.stop()
    redis_server.start()  # same port, empty: no counters, no scripts
    assert service_limits(client.get("/api/alice/tasks"))["default"][0] == 99  # counted afresh in the new server
    assert service_limits(client.get("/api/alice/tasks"))["default"][0] == 98
    redis.Redis(port=redis_server.port).script_flush()
    assert service_limits(client.get("/api/alice/tasks"))["default"][0] == 97
    assert ratelimit.store_outages() == before


@needs_redis
def test_a_redis_on_the_same_host_shares_one_budget_through_its_unix_socket(make_app):
    server = RedisServer(unix_socket=True).start()
    try:
        env = {"RATE_LIMIT": "5/minute", "RATE_LIMIT_WRITES": "off", "RATE_LIMIT_STORAGE_URL": server.url}
        assert server.url.startswith("redis+unix:///")
        assert f"store redis+unix://{server.socket}" in ratelimit.describe(load_settings(env))
        first, second = make_app(**env).test_client(), make_app(**env).test_client()
        answers = [client.get("/api/alice/tasks") for client in (first, second, first, second, first, second)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert [service_limits(a)["default"][0] for a in answers] == [4, 3, 2, 1, 0, 0]
        counted = redis.Redis(unix_socket_path=str(server.socket)).get("todo:{address:127.0.0.1}:default")
        assert counted == b"6", counted  # in the socket's Redis, not in either app's memory
    finally:
        server.stop()


@needs_redis
def test_every_answer_counts_exactly_in_redis_reads_writes_and_errors_alike(make_app, redis_server):
    client = make_app(RATE_LIMIT="600/minute", RATE_LIMIT_WRITES="300/minute",
                      RATE_LIMIT_STORAGE_URL=redis_server.url).test_client()
    created = client.post("/api/alice/tasks", json={"title": "t"})
    assert service_limits(created) == {"default": (599, 60), "writes": (299, 60)}
    task = f"/api/alice/tasks/{created.get_json()['id']}"
    answers = [client.get(task), client.get("/api/alice/tasks"), client.get("/api/alice/tasks/999999"),
               client.get(task, headers={"If-None-Match": created.headers["ETag"]}),
               client.get("/api/alice/tasks?limit=0")]
    assert [a.status_code for a in answers] == [200, 200, 404, 304, 400]
    assert [service_limits(a)["default"][0] for a in answers] == [598, 597, 596, 595, 594]
    assert answers[0].get_json()["title"] == "t"


@needs_redis
def test_a_read_is_refused_when_another_instance_spent_the_budget_since_this_one_last_looked(make_app, redis_server):
    """The first instance last saw room to spare; its next read still learns the budget is gone."""
    env = {"RATE_LIMIT": "30/minute", "RATE_LIMIT_WRITES": "off", "RATE_LIMIT_STORAGE_URL": redis_server.url}
    first, second = make_app(**env).test_client(), make_app(**env).test_client()
    assert service_limits(first.get("/api/alice/tasks"))["default"][0] == 29
    assert [second.get("/api/alice/tasks").status_code for _ in range(29)] == [200] * 29
    refused = first.get("/api/alice/tasks")
    body = refused.get_json()
    assert refused.status_code == 429 and body["error_code"] == "RATE_LIMITED" and body["request_id"], body
    assert "tasks" not in body and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert service_limits(refused)["default"][0] == 0
    assert first.get("/api/alice/tasks").status_code == 429


@needs_redis
def test_a_write_past_the_shared_budget_is_refused_before_it_is_stored(make_app, redis_server):
    env = {"RATE_LIMIT": "30/minute", "RATE_LIMIT_WRITES": "off", "RATE_LIMIT_STORAGE_URL": redis_server.url}
    first, second = make_app(**env).test_client(), make_app(**env).test_client()
    assert first.get("/api/alice/tasks").status_code == 200  # room to spare, as far as the first knows
    assert [second.get("/api/alice/tasks").status_code for _ in range(29)] == [200] * 29
    assert first.post("/api/alice/tasks", json={"title": "past the limit"}).status_code == 429
    unlimited = make_app(RATE_LIMIT="off", RATE_LIMIT_WRITES="off").test_client()
    assert unlimited.get("/api/alice/tasks").get_json() == []


@needs_redis
def test_a_long_poll_past_the_shared_budget_is_refused_at_once_not_after_its_wait(make_app, redis_server):
    env = {"RATE_LIMIT": "30/minute", "RATE_LIMIT_WRITES": "off", "RATE_LIMIT_STORAGE_URL": redis_server.url}
    first, second = make_app(**env).test_client(), make_app(**env).test_client()
    snapshot = first.get("/api/alice/tasks/changes")
    assert snapshot.status_code == 200
    assert [second.get("/api/alice/tasks").status_code for _ in range(29)] == [200] * 29
    began = time.monotonic()
    refused = first.get(f"/api/alice/tasks/changes?since={snapshot.get_json()['next']}&wait=5")
    assert refused.status_code == 429 and refused.get_json()["error_code"] == "RATE_LIMITED"
    assert time.monotonic() - began < 4  # held for its wait, it would take 5 s
