"""The browser path in a real Chromium: the frontend's calls across origins, and the /docs page.

Playwright drives Debian's chromium (/usr/bin/chromium; no browser is ever downloaded). The page
JavaScript runs on origins served by tiny static servers on 127.0.0.1: http://localhost:3000, the
default allowed origin (CORS_ORIGINS), and the same host on another port, which is not allowed.
"""

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import expect, sync_playwright

from tests.conftest import SERVICE_ENV
from tests.support import LOG_DIR, LiveServer, auth_headers, free_port
from todo_service import cors

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SECRET = "browser-tests-shared-secret-0123456789"  # AUTH_JWT_SECRET of `authed_service`
ALLOWED_PORT = 3000  # http://localhost:3000, the default of CORS_ORIGINS
TIMEOUT_MS = 15_000  # for each page action and DOM expectation: generous on a busy 2-core machine
expect.set_options(timeout=TIMEOUT_MS)

# fetch() as a frontend calls it; resolves to what JavaScript can read, or to the error it threw.
FETCH = """async ({url, method, body, raw, headers}) => {
  const init = {method, credentials: "include", headers: {...headers}};
  if (body !== null) {
    init.body = raw ? body : JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  try {
    const response = await fetch(url, init);
    const text = await response.text();
    return {status: response.status, headers: Object.fromEntries(response.headers.entries()),
            body: text ? JSON.parse(text) : null};
  } catch (error) {
    return {error: `${error.name}: ${error.message}`};
  }
}"""


class BlankPage(BaseHTTPRequestHandler):
    """Serves one empty HTML page: the frontend's origin, with no code of its own."""

    def do_GET(self):
        body = b"<!DOCTYPE html><html><head><title>frontend</title></head><body></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class PageServer:
    """A static page server on 127.0.0.1:`port`, reached by the browser as http://localhost:`port`."""

    def __init__(self, port):
        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", port), BlankPage)
        except OSError as exc:
            pytest.fail(f"cannot serve the test frontend on 127.0.0.1:{port}: {exc.strerror}. The browser tests "
                        f"need this port free (http://localhost:{port} is the origin the service allows by "
                        "default); stop whatever listens there.", pytrace=False)
        self.origin = f"http://localhost:{port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Tab:
    """A browser page on a frontend origin that calls the service with fetch()."""

    def __init__(self, page, service):
        self.page, self.service = page, service

    def call(self, method, path, body=None, headers=None, raw=False):
        """fetch() from the page: {status, headers, body} as JavaScript sees them, or {error}."""
        args = {"url": self.service.url(path), "method": method, "body": body, "raw": raw,
                "headers": headers or {}}
        return self.page.evaluate(FETCH, args)

    def call_seen(self, method, path, body=None, headers=None, raw=False):
        """`call`, plus every header of the answer as it arrived on the network (not only what JS may read)."""
        with self.page.expect_response(lambda r: r.request.method == method and r.url == self.service.url(path)) \
                as answer:
            result = self.call(method, path, body, headers, raw)
            assert "error" not in result, result  # inside: a failed fetch stops the wait at once
        return result, answer.value.all_headers()


def assert_exposed_headers_readable(result, network):
    """Every header the service exposes that this answer carries is readable from JS, unchanged."""
    carried = [name.lower() for name in cors.EXPOSE_HEADERS if name.lower() in network]
    assert "x-request-id" in carried
    for name in carried:
        assert result["headers"].get(name) == network[name], name
    assert "vary" in network and "vary" not in result["headers"]  # not exposed, so JS cannot read it


def hs256_token(user):
    """A token for `user` signed with SECRET, as an auth server sharing it would issue one."""
    return jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def requests_of(service, user):
    """(method, status) of each request the service logged for /api/{user}/tasks..., in order."""
    pattern = re.compile(rf"todo_service\.request: (\w+) /api/{re.escape(user)}/tasks\S* (\d+) ")
    return [(m[1], int(m[2])) for m in pattern.finditer(service.output())]


def start_service(database_url, **env):
    server = LiveServer({"DATABASE_URL": database_url, "WEB_CONCURRENCY": "1", "MIGRATE_ON_START": "false",
                         "LOG_LEVEL": "info", **SERVICE_ENV, **env})
    return server.start()


@pytest.fixture(scope="module")
def service(database_url):
    """The service as the suite runs it (authentication on or off), logging every request."""
    server = start_service(database_url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def authed_service(database_url):
    """The service with authentication on: every /api/ request needs a bearer token.

    HS256 tokens are checked with AUTH_JWT_SECRET. The key set at AUTH_JWKS_URL never answers (a port
    nobody listens on), so a token signed with a key-set algorithm gets 503 AUTH_UNAVAILABLE.
    """
    jwks_url = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    server = start_service(database_url, AUTH_JWT_SECRET=SECRET, AUTH_JWKS_URL=jwks_url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, launched once for this module."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it as root, otherwise run "
                    "`sudo apt-get install chromium`", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def frontend():
    server = PageServer(ALLOWED_PORT)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def elsewhere():
    server = PageServer(free_port())
    yield server
    server.stop()


@pytest.fixture
def open_tab(browser):
    """`open_tab(origin, service)`: a fresh browser context with a page loaded from `origin` (if any)."""
    contexts = []

    def open_at(origin, service):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        if origin is not None:
            page.goto(origin + "/")
        return Tab(page, service)

    yield open_at
    for context in contexts:
        context.close()


def test_the_allowed_origin_runs_the_whole_task_life_cycle(open_tab, frontend, service, clean_db):
    tab, user = open_tab(frontend.origin, service), "browser-crud"
    auth, base = auth_headers(user), f"/api/{user}/tasks"
    created, network = tab.call_seen("POST", base, {"title": "from the browser"}, auth)
    assert created["status"] == 201 and created["body"]["title"] == "from the browser"
    task_id = created["body"]["id"]
    assert created["headers"]["location"] == f"{base}/{task_id}"
    assert_exposed_headers_readable(created, network)
    url = created["headers"]["location"]

    steps = [
        ("GET", base, None, 200, lambda body: [t["id"] for t in body] == [task_id]),
        ("GET", url, None, 200, lambda body: body == created["body"]),
        ("PUT", url, {"title": "renamed", "description": "in the browser"}, 200,
         lambda body: (body["title"], body["description"]) == ("renamed", "in the browser")),
        ("PATCH", url + "/complete", None, 200, lambda body: body["completed"] is True),
        ("DELETE", url, None, 204, lambda body: body is None),
        ("GET", url, None, 404, lambda body: body["error_code"] == "TASK_NOT_FOUND"),
    ]
    for method, path, body, status, check in steps:
        result, network = tab.call_seen(method, path, body, auth)
        assert result["status"] == status and check(result["body"]), (method, path, result)
        assert_exposed_headers_readable(result, network)


def test_the_next_page_link_is_readable_and_followable_from_javascript(open_tab, frontend, service, clean_db):
    tab, user = open_tab(frontend.origin, service), "browser-pages"
    auth, base = auth_headers(user), f"/api/{user}/tasks"
    for title in ("first", "second"):
        assert tab.call("POST", base, {"title": title}, auth)["status"] == 201
    first, network = tab.call_seen("GET", f"{base}?limit=1", None, auth)
    assert first["status"] == 200 and len(first["body"]) == 1
    assert_exposed_headers_readable(first, network)
    next_url = re.fullmatch(r'<([^>]+)>; *rel="next"', first["headers"]["link"])[1]
    following = urljoin(f"{base}?limit=1", next_url)
    second, network = tab.call_seen("GET", following, None, auth)
    assert second["status"] == 200 and len(second["body"]) == 1
    assert {first["body"][0]["title"], second["body"][0]["title"]} == {"first", "second"}
    assert "link" not in second["headers"]  # the last page


def test_idempotency_keys_and_etags_work_from_javascript(open_tab, frontend, service, sql_conn, clean_db):
    tab, user = open_tab(frontend.origin, service), "browser-retries"
    auth, base = auth_headers(user), f"/api/{user}/tasks"
    retry = {**auth, "Idempotency-Key": "browser-retry-1"}
    created, network = tab.call_seen("POST", base, {"title": "once"}, retry)
    replayed, replay_network = tab.call_seen("POST", base, {"title": "once"}, retry)
    assert created["status"] == replayed["status"] == 201 and replayed["body"]["id"] == created["body"]["id"]
    assert replayed["headers"]["idempotent-replayed"] == "true"
    assert_exposed_headers_readable(created, network)
    assert_exposed_headers_readable(replayed, replay_network)
    assert sql_conn.execute("SELECT count(*) AS n FROM tasks WHERE user_id = %s", [user]).fetchone()["n"] == 1

    url, etag = created["headers"]["location"], created["headers"]["etag"]
    changed, _ = tab.call_seen("PUT", url, {"title": "changed"}, {**auth, "If-Match": etag})
    assert changed["status"] == 200 and changed["headers"]["etag"] != etag
    stale, network = tab.call_seen("PUT", url, {"title": "lost update"}, {**auth, "If-Match": etag})
    assert stale["status"] == 412 and stale["body"]["error_code"] == "PRECONDITION_FAILED"
    assert_exposed_headers_readable(stale, network)


# A tab that keeps its list with the change feed: a snapshot, then long-polls, applying each answer.
SYNC_LOOP = """({url, headers}) => {
  window.tasks = new Map();
  window.answers = 0;
  (async () => {
    let since = null;
    for (;;) {
      const query = since ? `?since=${encodeURIComponent(since)}&wait=20` : "";
      const response = await fetch(url + query, {headers, credentials: "include"});
      const answer = await response.json();
      for (const task of answer.changes) window.tasks.set(task.id, task.title);
      for (const id of answer.deleted) window.tasks.delete(id);
      since = answer.next;
      window.answers += 1;
    }
  })();
}"""


def test_a_tab_long_polling_the_change_feed_sees_another_tabs_writes(open_tab, frontend, service, clean_db):
    user = "browser-sync"
    auth, base = auth_headers(user), f"/api/{user}/tasks"
    writer = open_tab(frontend.origin, service)
    kept = writer.call("POST", base, {"title": "before"}, auth)["body"]
    reader = open_tab(frontend.origin, service)
    reader.page.evaluate(SYNC_LOOP, {"url": service.url(f"{base}/changes"), "headers": auth})
    reader.page.wait_for_function("window.answers >= 1 && window.tasks.size === 1")
    time.sleep(0.5)  # the reader's long-poll is now held by the service
    held = reader.page.evaluate("window.answers")
    created = writer.call("POST", base, {"title": "from the other tab"}, auth)["body"]
    reader.page.wait_for_function(f"window.tasks.get({created['id']}) === 'from the other tab'")
    assert reader.page.evaluate("window.answers") == held + 1  # one answer brought it: the held long-poll
    assert writer.call("DELETE", f"{base}/{kept['id']}", None, auth)["status"] == 204
    reader.page.wait_for_function(f"!window.tasks.has({kept['id']}) && window.tasks.size === 1")


def test_a_json_post_goes_through_the_preflight(open_tab, frontend, service, sql_conn, clean_db):
    tab, user = open_tab(frontend.origin, service), "browser-preflight"
    result = tab.call("POST", f"/api/{user}/tasks", {"title": "preflighted"}, auth_headers(user))
    assert result["status"] == 201
    assert requests_of(service, user) == [("OPTIONS", 200), ("POST", 201)]
    assert sql_conn.execute("SELECT title FROM tasks WHERE user_id = %s", [user]).fetchall() == [
        {"title": "preflighted"}]


@pytest.mark.parametrize("method,path,body,raw,status,error_code,field", [
    ("POST", "", {"title": "   "}, False, 400, "VALIDATION_ERROR", "title"),
    ("GET", "/987654321", None, False, 404, "TASK_NOT_FOUND", None),
    ("POST", "", {"title": "big", "description": "x" * 70_000}, False, 413, "PAYLOAD_TOO_LARGE", None),
    ("POST", "", '{"title": "unfinished', True, 422, "INVALID_JSON", None),
])
def test_error_answers_are_readable_from_javascript(open_tab, frontend, service, method, path, body, raw, status,
                                                    error_code, field):
    tab, user = open_tab(frontend.origin, service), "browser-errors"
    result, network = tab.call_seen(method, f"/api/{user}/tasks{path}", body, auth_headers(user), raw)
    assert result["status"] == status
    assert {"detail", "error_code", "field"} <= set(result["body"])
    assert result["body"]["error_code"] == error_code and result["body"]["field"] == field
    assert isinstance(result["body"]["detail"], str) and result["body"]["detail"]
    assert result["body"]["request_id"] == result["headers"]["x-request-id"]
    assert_exposed_headers_readable(result, network)


def test_a_disallowed_origin_is_refused_and_its_post_never_reaches_the_database(
        open_tab, elsewhere, service, sql_conn, clean_db):
    user = "browser-elsewhere"
    auth, base = auth_headers(user), f"/api/{user}/tasks"
    existing = requests.post(service.url(base), json={"title": "mine"}, headers=auth, timeout=10).json()
    url = f"{base}/{existing['id']}"
    rows = "SELECT id, title, description, completed, updated_at FROM tasks WHERE user_id = %s"
    before = sql_conn.execute(rows, [user]).fetchall()
    tab = open_tab(elsewhere.origin, service)
    for method, path, body in [("POST", base, {"title": "forged"}), ("GET", base, None), ("GET", url, None),
                               ("PUT", url, {"title": "forged"}), ("PATCH", url + "/complete", None),
                               ("DELETE", url, None)]:
        result = tab.call(method, path, body, auth)
        assert result == {"error": "TypeError: Failed to fetch"}, (method, path, result)
    assert len(before) == 1 and sql_conn.execute(rows, [user]).fetchall() == before  # nothing created or changed
    methods = [method for method, _ in requests_of(service, user)]
    assert methods.count("POST") == 1  # the one that arranged the task: the browser's stopped at its preflight
    assert methods.count("OPTIONS") >= 4 and not {"PUT", "PATCH", "DELETE"} & set(methods)


def test_with_auth_the_token_passes_the_preflight_and_refusals_are_readable(open_tab, frontend, authed_service,
                                                                            clean_db):
    tab, user = open_tab(frontend.origin, authed_service), "browser-auth"
    base = f"/api/{user}/tasks"
    bearer = {"Authorization": f"Bearer {hs256_token(user)}"}
    created, network = tab.call_seen("POST", base, {"title": "signed in"}, bearer)
    assert created["status"] == 201
    assert_exposed_headers_readable(created, network)
    listed, _ = tab.call_seen("GET", base, None, bearer)
    assert listed["status"] == 200 and [t["title"] for t in listed["body"]] == ["signed in"]
    assert requests_of(authed_service, user)[:2] == [("OPTIONS", 200), ("POST", 201)]

    for headers, error_code in [({}, "AUTH_REQUIRED"), ({"Authorization": "Bearer not.a.token"}, "INVALID_TOKEN")]:
        refused, network = tab.call_seen("GET", base, None, headers)
        assert refused["status"] == 401 and refused["body"]["error_code"] == error_code
        assert refused["body"]["detail"] and refused["body"]["field"] is None
        assert refused["headers"]["www-authenticate"].startswith("Bearer")
        assert_exposed_headers_readable(refused, network)

    forbidden, network = tab.call_seen("GET", base, None, {"Authorization": f"Bearer {hs256_token('someone-else')}"})
    assert forbidden["status"] == 403 and forbidden["body"]["error_code"] == "FORBIDDEN"
    assert_exposed_headers_readable(forbidden, network)

    key_set_token = jwt.encode({"sub": user, "exp": int(time.time()) + 600},
                               ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "k1"})
    unavailable, network = tab.call_seen("GET", base, None, {"Authorization": f"Bearer {key_set_token}"})
    assert unavailable["status"] == 503 and unavailable["body"]["error_code"] == "AUTH_UNAVAILABLE"
    assert int(unavailable["headers"]["retry-after"]) > 0
    assert_exposed_headers_readable(unavailable, network)


# --- /docs -----------------------------------------------------------------------------------------

def open_docs(open_tab, service, requested=None):
    """The /docs page, rendered; CSP violations land in window.cspViolations, request URLs in `requested`."""
    page = open_tab(None, service).page
    page.add_init_script("window.cspViolations = []; document.addEventListener('securitypolicyviolation', "
                         "e => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));")
    if requested is not None:
        page.on("request", lambda request: requested.append(request.url))
    page.goto(service.url("/docs"))
    expect(page.locator(".opblock").first).to_be_visible()
    return page


def operation(page, method, path):
    """The operation block of `method path` in Swagger UI."""
    return page.locator(f".opblock-{method.lower()}").filter(
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))


def authorize(page, token):
    page.locator(".auth-wrapper button.authorize").click()
    page.locator("#auth-bearer-value").fill(token)
    page.locator(".modal-ux button.modal-btn.authorize").click()
    page.locator(".modal-ux button.btn-done").click()


def try_it_out(page, method, path, user, body=None):
    """Open `method path`, fill in user_id (and the body), execute; the block with the live answer."""
    block = operation(page, method, path)
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    block.locator('tr[data-param-name="user_id"] input').fill(user)
    if body is not None:
        block.locator("textarea.body-param__text").fill(json.dumps(body))
    block.locator("button.execute").click()
    return block.locator(".live-responses-table tr.response .response-col_status")


def test_docs_list_every_operation_and_load_nothing_from_elsewhere(open_tab, service):
    spec = requests.get(service.url("/openapi.json"), timeout=10).json()
    requested = []
    page = open_docs(open_tab, service, requested)
    shown = page.eval_on_selector_all(".opblock", "blocks => blocks.map(b => [\n"
                                      "  b.querySelector('.opblock-summary-method').textContent.toLowerCase(),\n"
                                      "  b.querySelector('.opblock-summary-path').dataset.path])")
    documented = [[method, path] for path, ops in spec["paths"].items() for method in ops if method != "parameters"]
    assert sorted(shown) == sorted(documented)
    for summary in page.locator(".opblock-summary").all():  # open every operation: each offers "Try it out"
        summary.click()
    expect(page.locator("button.try-out__btn")).to_have_count(len(documented))
    assert page.evaluate("window.cspViolations") == []
    assert requested and all(url.startswith(service.url("/")) for url in requested)


def test_docs_try_it_out_creates_and_lists(open_tab, service, sql_conn, clean_db):
    user = "docs-user"
    page = open_docs(open_tab, service)
    if token := auth_headers(user).get("Authorization", "").removeprefix("Bearer "):
        authorize(page, token)
    expect(try_it_out(page, "POST", "/api/{user_id}/tasks", user, {"title": "from the docs"})).to_have_text("201")
    listed = try_it_out(page, "GET", "/api/{user_id}/tasks", user)
    expect(listed).to_have_text("200")
    expect(operation(page, "GET", "/api/{user_id}/tasks").locator(".live-responses-table")).to_contain_text(
        "from the docs")
    assert sql_conn.execute("SELECT title FROM tasks WHERE user_id = %s", [user]).fetchall() == [
        {"title": "from the docs"}]
    assert page.evaluate("window.cspViolations") == []


def test_docs_authorize_box_takes_a_token_for_try_it_out(open_tab, authed_service, sql_conn, clean_db):
    user = "docs-signed-in"
    page = open_docs(open_tab, authed_service)
    expect(page.locator(".auth-wrapper button.authorize")).to_be_visible()
    page.screenshot(path=LOG_DIR / "docs.png")  # `make docs-screenshot` copies it to docs/api-docs.png
    refused = try_it_out(page, "POST", "/api/{user_id}/tasks", user, {"title": "anonymous"})
    expect(refused).to_have_text("401")
    authorize(page, hs256_token(user))
    block = operation(page, "POST", "/api/{user_id}/tasks")
    block.locator("button.execute").click()
    expect(block.locator(".live-responses-table tr.response .response-col_status")).to_have_text("201")
    assert sql_conn.execute("SELECT title FROM tasks WHERE user_id = %s", [user]).fetchall() == [
        {"title": "anonymous"}]
    assert page.evaluate("window.cspViolations") == []
