"""Keyset paging of the task list: limit, cursor and Link rel="next", on the real database."""

import base64
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import pytest
import requests

from tests.conftest import settings_for
from tests.support import auth_headers, count_task_reads
from tests.test_tasks_api import create
from todo_service import create_app, dao, db

STATUSES, SORTS, ORDERS = ("all", "pending", "completed"), ("created", "updated", "title"), ("asc", "desc")
LISTS = list(product(STATUSES, SORTS, ORDERS))
LINK = re.compile(r'^<([^<>]+)>; rel="next"$')
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
BASE = "http://testserver"
# Titles whose order only the database's collation decides: case-only differences, non-ASCII, 4-byte
# characters, ties; sent with surrounding whitespace, which the API trims before storing.
TITLES = ["Apple", "apple", "APPLE", " banana ", "Banana split", "éclair", "Éclair", "eclair", "zebra", "Zebra",
          "ß", "straße", "Strasse", "日本", "😀 grin", "\u00a0nbsp trimmed\u00a0", "ünïcödé", "Ünïcödé", "a", "A",
          "a b", "a-b", "a_b", "10", "9", "apple"]
# Several tasks share each timestamp, so ties on created_at and updated_at are broken by id.
TIMES = ["2026-01-01 10:00:00", "2026-01-01 10:00:00.000001", "2026-01-02 09:30:00", "2025-12-31 23:59:59.999999"]


def path(user):
    return f"/api/{quote(user, safe='')}/tasks"


def get(client, url):
    response = client.get(url)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Content-Type"] == "application/json"
    return response


def next_url(response, requested):
    """The next page's URL resolved against the request's URL, or None on the last page."""
    link = response.headers.get("Link")
    if link is None:
        return None
    match = LINK.match(link)
    assert match, link
    target = urlsplit(urljoin(BASE + requested, match[1]))
    return f"{target.path}?{target.query}"


def walk(client, url):
    """Every page from `url` on, following rel="next"; returns the pages' tasks."""
    pages = []
    while url is not None:
        response = get(client, url)
        pages.append(response.get_json())
        url = next_url(response, url)
    return pages


def ids(tasks):
    return [task["id"] for task in tasks]


def flat(pages):
    return [task for page in pages for task in page]


def bad(response, field):
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert set(body) == {"detail", "error_code", "field", "request_id"}
    assert body["error_code"] == "VALIDATION_ERROR" and body["field"] == field, body
    return body


@pytest.fixture
def tasks(client, sql_conn):
    """26 tasks of 'pager' with ties on every sort key, a third completed; a few of another user."""
    for number, title in enumerate(TITLES):
        task = create(client, user="pager", title=title, completed=number % 3 == 0)
        sql_conn.execute("UPDATE tasks SET created_at = %s, updated_at = %s WHERE id = %s",
                         (TIMES[number % 4] + "Z", TIMES[(number // 2) % 4] + "Z", task["id"]))
    for title in ("aaa", "zzz", "Apple"):
        create(client, user="other", title=title)
    return len(TITLES)


# --- limit -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "abc", "1.5", "", "+5", " 5", "5 ", "1e2", "0x10", "\u0665",
                                   "99999999999999999999999", "10000"])  # U+0665: an Arabic-Indic five
def test_limit_outside_1_to_1000_or_not_a_whole_number_is_400(client, tasks, limit):
    body = bad(client.get(path("pager"), query_string={"limit": limit}), "limit")
    assert "1 to 1000" in body["detail"]


@pytest.mark.parametrize("limit", [1, 7, 25, 26, 27, 1000])
def test_a_page_is_the_head_of_the_unpaged_list(client, tasks, limit):
    for status, sort, order in LISTS:
        query = f"?status={status}&sort={sort}&order={order}"
        whole = get(client, path("pager") + query).get_json()
        page = get(client, path("pager") + query + f"&limit={limit}").get_json()
        assert isinstance(page, list)
        assert page == whole[:limit], (status, sort, order)


def test_limit_1000_pages_a_longer_list(client, sql_conn):
    sql_conn.execute("INSERT INTO tasks (user_id, title) "
                     "SELECT 'many', 'task ' || g FROM generate_series(1, 1001) AS g")
    first = get(client, path("many") + "?limit=1000")
    assert len(first.get_json()) == 1000
    rest = get(client, next_url(first, path("many") + "?limit=1000"))
    assert len(rest.get_json()) == 1 and "Link" not in rest.headers
    assert ids(first.get_json() + rest.get_json()) == ids(get(client, path("many")).get_json())


def test_without_limit_or_cursor_the_answer_is_the_whole_list_without_a_link(client, tasks):
    response = get(client, path("pager"))
    assert len(response.get_json()) == tasks and "Link" not in response.headers


# --- Link ----------------------------------------------------------------------------------------------


def test_the_link_names_the_same_list_and_limit_plus_an_opaque_cursor(client, tasks):
    requested = path("pager") + "?status=pending&sort=title&order=desc&limit=3&_=ignored"
    response = get(client, requested)
    link = response.headers["Link"]
    target = urlsplit(urljoin(BASE + requested, LINK.match(link)[1]))
    assert target.path == path("pager")
    query = parse_qs(target.query, keep_blank_values=True)
    assert set(query) == {"status", "sort", "order", "limit", "cursor"}
    assert {key: value for key, [value] in query.items() if key != "cursor"} == {
        "status": "pending", "sort": "title", "order": "desc", "limit": "3"}
    [cursor] = query["cursor"]
    assert URL_SAFE.match(cursor) and len(cursor) <= 2000
    assert f"cursor={cursor}" in link  # URL-safe: sent as is, nothing to escape


def test_defaults_are_spelled_out_in_the_link(client, tasks):
    response = get(client, path("pager") + "?limit=5")
    query = parse_qs(urlsplit(LINK.match(response.headers["Link"])[1]).query)
    assert (query["status"], query["sort"], query["order"], query["limit"]) == (["all"], ["created"], ["desc"], ["5"])


def test_the_last_page_has_no_link_and_an_empty_list_is_an_empty_array(client, tasks):
    pages = walk(client, path("pager") + "?limit=13")
    assert [len(page) for page in pages] == [13, 13]  # exactly full: no link to an empty page
    nobody = get(client, path("nobody") + "?limit=10")
    assert nobody.get_json() == [] and nobody.get_data() == b"[]" and "Link" not in nobody.headers


def test_a_page_emptied_meanwhile_is_an_empty_array(client, tasks, sql_conn):
    first = get(client, path("pager") + "?sort=title&limit=25")
    last_title = first.get_json()[-1]["title"]
    sql_conn.execute("DELETE FROM tasks WHERE user_id = 'pager' AND lower(title) >= lower(%s)", (last_title,))
    rest = get(client, next_url(first, path("pager") + "?sort=title&limit=25"))
    assert rest.get_json() == [] and "Link" not in rest.headers


def test_the_link_of_a_user_id_that_needs_percent_encoding_leads_to_the_same_user(client):
    user = "auth0|50%off-é"
    for number in range(3):
        create(client, user=user, title=f"task {number}")
    pages = walk(client, path(user) + "?limit=2")
    assert [len(page) for page in pages] == [2, 1]
    assert {task["user_id"] for task in flat(pages)} == {user}


# --- walking ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 7])
@pytest.mark.parametrize("status,sort,order", LISTS)
def test_walking_every_page_gives_exactly_the_unpaged_list(client, tasks, status, sort, order, limit):
    query = f"?status={status}&sort={sort}&order={order}"
    whole = get(client, path("pager") + query).get_json()
    pages = walk(client, path("pager") + query + f"&limit={limit}")
    assert flat(pages) == whole
    assert all(len(page) == limit for page in pages[:-1]) and 1 <= len(pages[-1]) <= limit


def test_titles_differing_only_in_case_are_ordered_by_id_across_page_boundaries(client, sql_conn):
    for title in ("b", "B", "b", "A", "a", "B", "b", "a"):
        create(client, user="cases", title=title)
    for order in ORDERS:
        whole = get(client, path("cases") + f"?sort=title&order={order}").get_json()
        assert flat(walk(client, path("cases") + f"?sort=title&order={order}&limit=1")) == whole
        lowered = [(task["title"].lower(), task["id"]) for task in whole]
        assert lowered == sorted(lowered, reverse=order == "desc")


def test_a_200_character_title_of_4_byte_characters_fits_in_a_cursor(client):
    for title in ("😀" * 200, "😀" * 199 + "😁", "\U0001d538" * 200, "😀" * 200):  # U+1D538: 4 bytes too
        create(client, user="wide", title=title)
    for order in ORDERS:
        requested = path("wide") + f"?sort=title&order={order}&limit=1"
        first = get(client, requested)
        cursor = parse_qs(urlsplit(LINK.match(first.headers["Link"])[1]).query)["cursor"][0]
        assert URL_SAFE.match(cursor) and len(cursor) == 1104  # 828 bytes: the title's 800 and 28 more
        pages = walk(client, requested)
        assert flat(pages) == get(client, path("wide") + f"?sort=title&order={order}").get_json()


def test_the_cursor_alone_keeps_its_limit_and_a_new_limit_wins(client, tasks):
    first = get(client, path("pager") + "?sort=title&limit=4")
    link = next_url(first, path("pager") + "?sort=title&limit=4")
    without_limit = link.replace("&limit=4", "")
    assert "limit=" not in without_limit
    second = get(client, without_limit)
    assert second.get_json() == get(client, link).get_json() and len(second.get_json()) == 4
    assert "limit=4" in second.headers["Link"]
    wider = get(client, link.replace("&limit=4", "&limit=10"))
    assert ids(wider.get_json())[:4] == ids(second.get_json()) and len(wider.get_json()) == 10
    assert "limit=10" in wider.headers["Link"]


def test_a_cursor_from_another_instance_of_the_service_works(client, tasks, database_url):
    other = create_app({"SETTINGS": settings_for(database_url), "TESTING": True})
    try:
        first = get(client, path("pager") + "?limit=5")
        pages = walk(other.test_client(), next_url(first, path("pager") + "?limit=5"))
        assert first.get_json() + flat(pages) == get(client, path("pager")).get_json()
    finally:
        db.close_pool(other)


# --- changes during a walk ------------------------------------------------------------------------------


def _change_between_pages(client, sql_conn, rng, seen, changed, number):
    """Create two tasks, delete one seen and one unseen task, rename one and toggle one."""
    for _ in range(2):
        title = rng.choice(TITLES) + rng.choice(["", " 2", "!"])
        task = create(client, user="pager", title=title, completed=rng.random() < 0.3)
        changed.add(task["id"])
    current = [row["id"] for row in sql_conn.execute("SELECT id FROM tasks WHERE user_id = 'pager'").fetchall()]
    unseen = [task_id for task_id in current if task_id not in seen]
    for pool, action in ((sorted(seen), "delete"), (unseen, "delete"), (current, "rename"), (current, "toggle")):
        candidates = [task_id for task_id in pool if task_id not in changed]
        if not candidates:
            continue
        task_id = rng.choice(candidates)
        changed.add(task_id)
        if action == "delete":
            assert client.delete(f"{path('pager')}/{task_id}").status_code == 204
        elif action == "rename":
            client.put(f"{path('pager')}/{task_id}", json={"title": f"renamed {number} {rng.choice(TITLES)}"})
        else:
            client.patch(f"{path('pager')}/{task_id}/complete")


@pytest.mark.parametrize("status,sort,order", LISTS)
def test_changes_during_a_walk_never_repeat_or_skip_an_unchanged_task(client, tasks, sql_conn, status, sort, order):
    """The README's promise: for every sort, a task nobody changed is listed exactly once (with
    sort=updated a changed task may move; created and title keep even changed tasks in place)."""
    rng = random.Random(f"{status}{sort}{order}")
    query = f"?status={status}&sort={sort}&order={order}"
    before = ids(get(client, path("pager") + query).get_json())
    url, listed, changed, pages = path("pager") + query + "&limit=3", [], set(), 0
    while url is not None:
        response = get(client, url)
        listed += ids(response.get_json())
        url, pages = next_url(response, url), pages + 1
        if pages <= 4:  # then the walk runs to its end undisturbed
            _change_between_pages(client, sql_conn, rng, set(listed), changed, len(listed))
    after = ids(get(client, path("pager") + query).get_json())
    unchanged = [task_id for task_id in before if task_id not in changed]
    assert unchanged and [task_id for task_id in listed if task_id in unchanged] == unchanged
    assert set(unchanged) <= set(after)
    if sort != "updated":  # a renamed title moves, a toggled task may leave the status filter
        repeated = {task_id for task_id in listed if listed.count(task_id) > 1}
        assert repeated <= changed and not (repeated and sort == "created")


def test_deleting_the_boundary_task_before_the_next_page_skips_nothing(client, tasks, sql_conn):
    for sort, order in product(SORTS, ORDERS):
        query = f"?sort={sort}&order={order}"
        whole = ids(get(client, path("pager") + query).get_json())
        first = get(client, path("pager") + query + "&limit=5")
        sql_conn.execute("DELETE FROM tasks WHERE id = %s", (first.get_json()[-1]["id"],))
        rest = flat(walk(client, next_url(first, path("pager") + query + "&limit=5")))
        assert ids(first.get_json()) + ids(rest) == whole, (sort, order)


def test_concurrent_writers_on_a_real_server_never_make_a_walk_repeat_or_skip(api, live_server, sql_conn):
    """Writers create and delete their own tasks through the API while readers walk every sort."""
    sql_conn.execute("INSERT INTO tasks (user_id, title, created_at) SELECT 'busy-pager', "
                     "'task ' || (g * 7919 % 500), timestamptz '2026-01-01' + (g / 3) * interval '1 ms' "
                     "FROM generate_series(1, 500) AS g")
    stable = {row["id"] for row in sql_conn.execute("SELECT id FROM tasks WHERE user_id = 'busy-pager'").fetchall()}
    stop = threading.Event()
    headers = auth_headers("busy-pager")

    def write(seed):
        rng, session, mine = random.Random(seed), requests.Session(), []
        while not stop.is_set():
            if mine and rng.random() < 0.4:
                session.delete(live_server.url(f"/api/busy-pager/tasks/{mine.pop()}"), headers=headers, timeout=10)
            else:
                answer = session.post(live_server.url("/api/busy-pager/tasks"), headers=headers, timeout=10,
                                      json={"title": f"{rng.choice(TITLES)} {rng.random()}"})
                mine.append(answer.json()["id"])
        session.close()

    def read(sort, order):
        session, url, listed = requests.Session(), f"/api/busy-pager/tasks?sort={sort}&order={order}&limit=20", []
        while url is not None:
            answer = session.get(live_server.url(url), headers=headers, timeout=10)
            assert answer.status_code == 200, answer.text
            listed += ids(answer.json())
            link = answer.headers.get("Link")
            url = None if link is None else urljoin(live_server.url("/"), LINK.match(link)[1])[len(live_server.base):]
        session.close()
        return listed

    with ThreadPoolExecutor(8) as pool:
        writers = [pool.submit(write, seed) for seed in range(3)]
        walks = {(sort, order): pool.submit(read, sort, order) for sort in ("created", "title") for order in ORDERS}
        results = {key: future.result() for key, future in walks.items()}
        stop.set()
        for future in writers:
            future.result()
    for key, listed in results.items():
        assert len(listed) == len(set(listed)), f"{key}: a task was listed twice"
        assert stable <= set(listed), f"{key}: {len(stable - set(listed))} unchanged tasks skipped"


# --- cursor validation ----------------------------------------------------------------------------------


def _cursor(response):
    return parse_qs(urlsplit(LINK.match(response.headers["Link"])[1]).query)["cursor"][0]


def _rejected(client, user, cursor, query="", others=()):
    """400 naming the cursor for `cursor` with the other parameters of `query`; returns the body."""
    params = dict(pair.split("=") for pair in query.split("&") if pair)
    body = bad(client.get(path(user), query_string={**params, "cursor": cursor}), "cursor")
    assert not any(str(task_id) in body["detail"] for task_id in others)
    return body


def test_every_flipped_byte_of_a_cursor_is_400_never_500_never_rows(client, tasks):
    cursor = _cursor(get(client, path("pager") + "?sort=title&limit=3"))
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    for index in range(len(raw)):  # every byte of what the cursor carries, each bit pattern flipped
        for mask in (0x01, 0x80, 0xFF):
            flipped = bytearray(raw)
            flipped[index] ^= mask
            _rejected(client, "pager", base64.urlsafe_b64encode(flipped).rstrip(b"=").decode(), "sort=title")
    for index, char in enumerate(cursor):  # every character of the text, as a client might garble it
        for replacement in {chr(ord(char) ^ 1), chr(ord(char) ^ 32), "A" if char != "A" else "B", "%", "é"}:
            _rejected(client, "pager", cursor[:index] + replacement + cursor[index + 1:], "sort=title")
        _rejected(client, "pager", cursor[:index] + cursor[index + 1:], "sort=title")  # a byte missing


@pytest.mark.parametrize("cursor", ["", "=", "A", "AA", "AAA", "AAAA", "not a cursor", "x" * 2001, "A" * 2000,
                                    "eyJhIjoxfQ", "AQAAAwAAAAAAAAAB"])
def test_malformed_cursors_are_400(client, tasks, cursor):
    _rejected(client, "pager", cursor)


def test_a_cursor_with_padding_or_appended_text_is_400(client, tasks):
    cursor = _cursor(get(client, path("pager") + "?limit=3"))
    for changed in (cursor + "=", cursor + "==", cursor + "A", cursor + "AAAA", "A" + cursor, cursor * 2):
        _rejected(client, "pager", changed)


def test_a_cursor_of_user_a_is_400_for_user_b(client, tasks):
    for title in ("b's first", "b's second", "b's third"):
        create(client, user="other", title=title)
    response = get(client, path("pager") + "?limit=2")
    cursor, mine = _cursor(response), ids(get(client, path("pager")).get_json())
    _rejected(client, "other", cursor, others=mine)
    _rejected(client, "other", cursor, "limit=2", others=mine)
    _rejected(client, "Pager", cursor)  # user ids are case-sensitive
    assert get(client, path("pager") + f"?limit=2&cursor={cursor}").status_code == 200


def test_a_cursor_used_with_another_status_sort_or_order_is_400(client, tasks):
    for status, sort, order in LISTS:
        cursor = _cursor(get(client, path("pager") + f"?status={status}&sort={sort}&order={order}&limit=1"))
        for other_status, other_sort, other_order in LISTS:
            query = f"status={other_status}&sort={other_sort}&order={other_order}"
            if (other_status, other_sort, other_order) == (status, sort, order):
                assert client.get(path("pager") + f"?{query}&cursor={cursor}").status_code == 200
            else:
                body = _rejected(client, "pager", cursor, query)
                assert "status, sort or order" in body["detail"]


def test_a_cursor_works_with_the_order_left_to_its_default(client, tasks):
    cursor = _cursor(get(client, path("pager") + "?sort=title&order=asc&limit=2"))
    assert get(client, path("pager") + f"?sort=title&cursor={cursor}").get_json() == \
        get(client, path("pager") + f"?sort=title&order=asc&cursor={cursor}").get_json()
    _rejected(client, "pager", cursor)  # default sort is created


def test_a_bad_cursor_never_reads_the_database_for_tasks(client, tasks, monkeypatch):
    monkeypatch.setattr(dao, "list_page", lambda *args: pytest.fail("a rejected cursor read tasks"))
    _rejected(client, "pager", "AQAAAwAAAAAAAAABeHh4eHh4eHh4eHh4eHh4eHh4")


# --- kept pages -------------------------------------------------------------------------------------------


@pytest.fixture
def page_reads(monkeypatch):
    """Counts the pages whose tasks were read from the database (the real reads, only counted)."""
    return count_task_reads(monkeypatch, "list_page")


def test_a_kept_page_is_served_only_while_the_list_is_unchanged(client, tasks, page_reads):
    requested = path("pager") + "?sort=title&limit=5"
    first = get(client, requested)
    assert len(page_reads) == 1
    again = get(client, requested)
    assert len(page_reads) == 1 and again.get_data() == first.get_data()
    assert again.headers["Link"] == first.headers["Link"]
    following = next_url(first, requested)
    get(client, following)
    get(client, following)
    assert len(page_reads) == 2
    get(client, path("pager") + "?sort=title&limit=6")  # another limit: another page
    assert len(page_reads) == 3
    create(client, user="pager", title="0 new first")
    fresh = get(client, requested)
    assert len(page_reads) == 4 and fresh.get_json()[0]["title"] == "0 new first"
    assert fresh.headers["Link"] != first.headers["Link"]
    assert get(client, following).get_json() == get(client, following.replace("&limit=5", "")).get_json()


def test_kept_pages_are_per_user(client, tasks):
    create(client, user="other", title="x")
    assert {t["user_id"] for t in get(client, path("pager") + "?limit=5").get_json()} == {"pager"}
    assert {t["user_id"] for t in get(client, path("other") + "?limit=5").get_json()} == {"other"}


# --- HTTP around it ---------------------------------------------------------------------------------------


def test_cors_exposes_the_link_header(client, tasks):
    response = client.get(path("pager") + "?limit=2", headers={"Origin": "http://localhost:3000"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    exposed = {name.strip().lower() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert "link" in exposed and "Link" in response.headers


def test_the_openapi_document_describes_limit_cursor_and_link(client):
    operation = client.get("/openapi.json").get_json()["paths"]["/api/{user_id}/tasks"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    limit, cursor = parameters["limit"], parameters["cursor"]
    assert limit["schema"]["type"] == "integer"
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    assert cursor["schema"]["type"] == "string" and cursor["schema"]["maxLength"] == 2000
    assert cursor["schema"]["pattern"] == URL_SAFE.pattern
    assert "Link" in cursor["description"] and "limit" in limit["description"]
    link = operation["responses"]["200"]["headers"]["Link"]
    assert 'rel="next"' in link["description"]


def test_walking_a_real_server_follows_the_link_across_workers(api, live_server):
    user = "auth0|walker"
    for number in range(7):
        assert api("POST", path(user), json={"title": f"task {number}"}).status_code == 201
    whole = api("GET", path(user)).json()
    url, listed = live_server.url(path(user) + "?sort=created&order=asc&limit=2"), []
    while url is not None:  # a new connection each time: pages come from either worker
        answer = requests.get(url, timeout=10, headers={"Connection": "close", **auth_headers(user)})
        assert answer.status_code == 200
        listed += answer.json()
        url = answer.links.get("next", {}).get("url")
        url = None if url is None else urljoin(answer.url, url)
    assert listed == sorted(whole, key=lambda task: (task["created_at"], task["id"]))
