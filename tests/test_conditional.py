"""Entity tags and conditional requests: ETag, If-None-Match (304), If-Match (412), Cache-Control."""

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
from requests.utils import parse_header_links

from tests.support import auth_headers, count_task_reads, wait_for_lock_wait
from tests.test_tasks_api import create
from todo_service import conditional, dao
from todo_service.queries import QUERIES

# Not RFC 9110 entity-tag lists: unquoted tags, a lowercase w/, a space inside the quotes, no tag at all.
MALFORMED = ["", ",", ", ,", '"unterminated', 'W/"', '"a" "b"', 'W/"x" junk', "yD4U,b 4zr", '"a", b c',
             "abc", "W/abc", '"a", abc', 'w/"x"', '"a b"', "2026-11-26T13:29:37.123456Z"]


def tag_of(task):
    return f'"{task["updated_at"]}"'


@pytest.fixture
def statements(monkeypatch):
    """The names of the SQL statements the service runs (really run, only recorded)."""
    ran = []
    real = dao.run

    def recording(name, **params):
        ran.append(name)
        return real(name, **params)

    monkeypatch.setattr(dao, "run", recording)
    return ran


@pytest.fixture
def renders(monkeypatch):
    """Counts the lists whose tasks were read from the database (to be encoded)."""
    return count_task_reads(monkeypatch, "list_tasks")


# --- ETag on every answer that carries a task ------------------------------------------------------

def test_every_answer_with_a_task_has_a_strong_etag_that_moves_with_each_change(client):
    created = client.post("/api/alice/tasks", json={"title": "tagged"})
    task = created.get_json()
    url = f"/api/alice/tasks/{task['id']}"
    answers = [created, client.get(url), client.put(url, json={"title": "renamed"}), client.patch(url + "/complete")]
    tags = [answer.headers["ETag"] for answer in answers]
    assert all(not tag.startswith("W/") and tag.startswith('"') and tag.endswith('"') for tag in tags)
    assert [tag for tag in tags] == [tag_of(answer.get_json()) for answer in answers]
    assert tags[0] == tags[1]  # a read changes nothing
    assert len(set(tags[1:])) == 3  # every change, a new tag
    assert client.get(url).headers["ETag"] == tags[-1]


def test_every_update_moves_the_tag_forward_even_when_nothing_differs(client):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    tags = [client.get(url).headers["ETag"]]
    for _ in range(5):  # same values, likely within one clock tick: still a new tag each time
        tags.append(client.put(url, json={"title": task["title"]}).headers["ETag"])
    assert len(set(tags)) == len(tags) and [t.strip('"') for t in tags] == sorted(t.strip('"') for t in tags)


# --- list tags ---------------------------------------------------------------------------------------

def list_tag(client, query="", user="alice"):
    response = client.get(f"/api/{user}/tasks{query}")
    assert response.status_code == 200
    return response.headers["ETag"]


def test_a_list_tag_changes_with_any_change_to_the_users_tasks(client, sql_conn):
    task = create(client)
    other = create(client, title="other")
    url = f"/api/alice/tasks/{task['id']}"
    seen = [list_tag(client)]
    assert list_tag(client) == seen[0]  # unchanged: same tag
    changes = [
        lambda: client.put(url, json={"title": "renamed"}),
        lambda: client.patch(url + "/complete"),
        lambda: create(client, title="third"),
        lambda: client.delete(f"/api/alice/tasks/{other['id']}"),
        lambda: client.post("/api/alice/tasks", json={"title": "keyed"}, headers={"Idempotency-Key": "k"}),
    ]
    for change in changes:
        change()
        seen.append(list_tag(client))
    assert len(set(seen)) == len(seen)
    assert all(not tag.startswith("W/") for tag in seen)


def test_a_list_tag_differs_between_queries_and_users(client):
    create(client)
    create(client, user="bob")
    queries = ["", "?status=pending", "?status=completed", "?sort=title", "?sort=updated", "?order=asc",
               "?sort=title&order=desc", "?status=pending&sort=updated&order=asc"]
    tags = [list_tag(client, query) for query in queries]
    assert len(set(tags)) == len(tags)
    assert list_tag(client, user="bob") not in tags
    # The same query spelt differently is the same list, with the same tag.
    assert list_tag(client, "?status=all&sort=created&order=desc") == tags[0]
    assert list_tag(client, "?sort=title&order=asc&unknown=1") == tags[3]


def test_a_list_without_a_known_version_still_has_a_tag_that_revalidates(client, sql_conn):
    create(client)
    sql_conn.execute("DELETE FROM task_list_versions")
    tag = list_tag(client)
    assert client.get("/api/alice/tasks", headers={"If-None-Match": tag}).status_code == 304
    assert list_tag(client, user="nobody") != tag
    sql_conn.execute("UPDATE tasks SET title = 'changed' WHERE user_id = 'alice'")
    sql_conn.execute("DELETE FROM task_list_versions")
    assert client.get("/api/alice/tasks", headers={"If-None-Match": tag}).status_code == 200


# --- If-None-Match -------------------------------------------------------------------------------------

def assert_not_modified(response, tag):
    assert response.status_code == 304
    assert response.headers["ETag"] == tag
    assert response.data == b"" and "Content-Type" not in response.headers
    assert response.headers["Cache-Control"] == "private, no-cache"


def test_get_with_the_current_tag_is_304_without_a_body(client, statements, monkeypatch):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    tag = client.get(url).headers["ETag"]
    statements.clear()
    encoded = []
    real_json_response = conditional.json_response
    monkeypatch.setattr(conditional, "json_response", lambda *args: encoded.append(args) or real_json_response(*args))
    for header in [tag, f"W/{tag}", f'"old", {tag}', f'W/"x", W/{tag}', "*"]:
        assert_not_modified(client.get(url, headers={"If-None-Match": header}), tag)
    assert statements == ["get_task"] * 5 and encoded == []  # the task is read, its body never encoded
    client.patch(url + "/complete")
    fresh = client.get(url, headers={"If-None-Match": tag})
    assert fresh.status_code == 200 and fresh.get_json()["completed"] is True
    assert fresh.headers["ETag"] != tag


def test_an_unchanged_list_is_304_after_one_primary_key_read(client, statements, renders, app, monkeypatch):
    create(client)
    tag = list_tag(client, "?sort=title")
    monkeypatch.setitem(app.extensions, "todo_lists", None)  # the client's tag alone spares the tasks
    statements.clear()
    renders.clear()
    for header in [tag, f"W/{tag}", f'"other", {tag}', "*"]:
        assert_not_modified(client.get("/api/alice/tasks?sort=title", headers={"If-None-Match": header}), tag)
    # One statement each: the list's, which reads the head row and skips the tasks; `*`, the version alone.
    assert statements == ["list_tasks_all_title_asc"] * 3 + ["get_list_version"] and renders == []
    # Another query's tag, or a tag from before a change: the list itself.
    assert client.get("/api/alice/tasks", headers={"If-None-Match": tag}).status_code == 200
    create(client, title="second")
    changed = client.get("/api/alice/tasks?sort=title", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and len(changed.get_json()) == 2


def test_each_page_has_its_own_tag_and_an_unchanged_page_is_304(client, statements):
    for number in range(5):
        create(client, title=f"task {number}")
    first = client.get("/api/alice/tasks?limit=2")
    tag, next_page = first.headers["ETag"], parse_header_links(first.headers["Link"])[0]["url"]
    assert "cursor=" in next_page
    second = client.get(next_page)
    tags = {tag, second.headers["ETag"], list_tag(client), list_tag(client, "?limit=3")}
    assert len(tags) == 4  # every page and page size its own tag, none the whole list's
    statements.clear()
    assert_not_modified(client.get("/api/alice/tasks?limit=2", headers={"If-None-Match": tag}), tag)
    assert statements == ["first_page_all_created_desc"]
    again = client.get(next_page, headers={"If-None-Match": tag})
    assert again.status_code == 200 and again.get_json() == second.get_json()  # another page's tag
    create(client, title="task 5")
    changed = client.get("/api/alice/tasks?limit=2", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag and "rel=\"next\"" in changed.headers["Link"]
    assert client.get("/api/alice/tasks?limit=2&cursor=AAAA", headers={"If-None-Match": "*"}).status_code == 400


def test_a_missing_task_stays_404_under_if_none_match(client):
    assert client.get("/api/alice/tasks/999999", headers={"If-None-Match": "*"}).status_code == 404


def test_if_none_match_with_the_lists_kept_off(database_url, clean_db):
    from tests.conftest import settings_for
    from todo_service import create_app, db

    app = create_app({"SETTINGS": settings_for(database_url, LIST_CACHE_MB="0"), "TESTING": True})
    try:
        client = app.test_client()
        create(client)
        tag = list_tag(client)
        assert_not_modified(client.get("/api/alice/tasks", headers={"If-None-Match": tag}), tag)
        create(client, title="two")
        assert client.get("/api/alice/tasks", headers={"If-None-Match": tag}).status_code == 200
    finally:
        db.close_pool(app)


# --- If-Match ----------------------------------------------------------------------------------------

WRITES = {
    "put": lambda client, url, headers: client.put(url, json={"title": "changed"}, headers=headers),
    "patch": lambda client, url, headers: client.patch(url + "/complete", headers=headers),
    "delete": lambda client, url, headers: client.delete(url, headers=headers),
}


def stored(sql_conn, task_id):
    return sql_conn.execute("SELECT title, completed, updated_at FROM tasks WHERE id = %s", (task_id,)).fetchone()


@pytest.mark.parametrize("form", ["tag", "list", "star"])
@pytest.mark.parametrize("method", sorted(WRITES))
def test_a_write_with_a_matching_tag_happens(client, method, form):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    header = {"tag": tag_of(task), "list": f'"stale", W/"weak", {tag_of(task)}', "star": "*"}[form]
    response = WRITES[method](client, url, {"If-Match": header})
    if method == "delete":
        assert response.status_code == 204 and client.get(url).status_code == 404
    else:
        assert response.status_code == 200
        assert response.headers["ETag"] == tag_of(response.get_json()) != tag_of(task)


@pytest.mark.parametrize("method", sorted(WRITES))
def test_a_write_with_a_stale_tag_is_412_and_changes_nothing(client, sql_conn, method):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    old_tag = tag_of(task)
    client.put(url, json={"description": "moved on"})
    before = stored(sql_conn, task["id"])
    for header in [old_tag, f'"nope", {old_tag}', f"W/{tag_of(client.get(url).get_json())}", '"x"']:
        response = WRITES[method](client, url, {"If-Match": header})
        assert response.status_code == 412, header
        body = response.get_json()
        assert body["error_code"] == "PRECONDITION_FAILED" and body["field"] == "If-Match"
        assert response.headers["Cache-Control"] == "no-store"
    assert stored(sql_conn, task["id"]) == before


@pytest.mark.parametrize("method", sorted(WRITES))
def test_a_missing_or_someone_elses_task_is_404_whatever_the_precondition(client, method):
    theirs = create(client, user="bob")
    for url in ["/api/alice/tasks/999999", f"/api/alice/tasks/{theirs['id']}", "/api/alice/tasks/abc"]:
        for header in [tag_of(theirs), '"stale"', "*", "W/\"weak\""]:
            response = WRITES[method](client, url, {"If-Match": header})
            assert response.status_code == 404 and response.get_json()["error_code"] == "TASK_NOT_FOUND"
    assert client.get(f"/api/bob/tasks/{theirs['id']}").get_json() == theirs


def test_on_a_write_validation_comes_before_404_and_404_before_412(client):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    stale = {"If-Match": '"stale"'}
    assert client.put("/api/alice/tasks/999999", json={"title": ""}, headers=stale).status_code == 400
    assert client.put(url, json={"title": ""}, headers=stale).status_code == 400
    assert client.put(url, json={"nope": 1}, headers=stale).status_code == 400
    assert client.put("/api/alice/tasks/999999", json={"title": "ok"}, headers=stale).status_code == 404
    assert client.put(url, json={"title": "ok"}, headers=stale).status_code == 412
    assert client.put("/api/alice/tasks/999999", json={"title": "ok"}, headers={"If-Match": ","}).status_code == 400


@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
@pytest.mark.parametrize("value", MALFORMED)
def test_a_header_outside_the_documented_grammar_is_400_naming_it(client, header, value):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    answers = [client.get(url, headers={header: value}), client.get("/api/alice/tasks", headers={header: value})]
    if header == "If-Match":
        answers = [client.put(url, json={"title": "x"}, headers={header: value}),
                   client.patch(url + "/complete", headers={header: value}),
                   client.delete(url, headers={header: value})]
    for response in answers:
        assert response.status_code == 400
        body = response.get_json()
        assert body["error_code"] == "VALIDATION_ERROR" and body["field"] == header
        assert header in body["detail"]
    assert client.get(url).get_json() == task


def test_an_unquoted_tag_is_400_even_when_it_spells_the_current_tag(client):
    """`abc` and `W/abc` are not entity-tags (RFC 9110 §8.8.3): 400, not a comparison."""
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    for header in [task["updated_at"], f"W/{task['updated_at']}"]:
        assert client.get(url, headers={"If-None-Match": header}).status_code == 400
        assert client.put(url, json={"title": "x"}, headers={"If-Match": header}).status_code == 400
    assert client.get(url).get_json() == task


def test_tag_lists_are_read_as_rfc_9110_allows_them(client):
    """Empty list elements and spaces around commas; the tag of another list element still matches."""
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    for header in [f', {tag_of(task)}', f'"a",,{tag_of(task)},', f'W/"a" ,\t{tag_of(task)}', f'W/{tag_of(task)}']:
        assert client.get(url, headers={"If-None-Match": header}).status_code == 304, header


def test_headers_are_ignored_where_they_mean_nothing(client):
    """If-Match on reads and creates, If-None-Match on writes: as without them."""
    assert client.post("/api/alice/tasks", json={"title": "t"}, headers={"If-Match": '"x"'}).status_code == 201
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    assert client.get(url, headers={"If-Match": '"x"'}).status_code == 200
    assert client.put(url, json={"title": "y"}, headers={"If-None-Match": tag_of(task)}).status_code == 200


def test_the_precondition_is_decided_by_the_write_itself(client, database_url, sql_conn):
    """A change committed while the conditional write waits for the row is seen: 412, not a lost update."""
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    answer = {}
    with psycopg.connect(database_url) as other:
        QUERIES.update_task.run(other, user_id="alice", id=task["id"], title="theirs", description=None,
                                set_description=False, completed=None)
        writer = threading.Thread(target=lambda: answer.setdefault("put", client.put(
            url, json={"title": "mine"}, headers={"If-Match": tag_of(task)})))
        writer.start()
        wait_for_lock_wait(sql_conn, writer)
        other.commit()
    writer.join()
    assert answer["put"].status_code == 412
    assert client.get(url).get_json()["title"] == "theirs"


def test_writers_of_one_tag_get_exactly_one_success_per_generation(api, live_server):
    """50 concurrent PUTs with the same If-Match, three generations in a row."""
    task = api("POST", "/api/racer/tasks", json={"title": "contested"}).json()
    url = live_server.url(f"/api/racer/tasks/{task['id']}")
    tag = tag_of(task)

    def put(number, tag):
        with requests.Session() as session:
            return session.put(url, json={"title": f"writer {number}"}, timeout=30,
                               headers={"If-Match": tag, **auth_headers("racer")})

    for _generation in range(3):
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(put, range(50), [tag] * 50))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] + [412] * 49
        winner = next(answer for answer in answers if answer.status_code == 200)
        current = api("GET", f"/api/racer/tasks/{task['id']}")
        assert current.json() == winner.json() and current.headers["ETag"] == winner.headers["ETag"] != tag
        tag = winner.headers["ETag"]


# --- Cache-Control -----------------------------------------------------------------------------------

def test_get_answers_must_be_revalidated_and_errors_never_kept(client):
    task = create(client)
    url = f"/api/alice/tasks/{task['id']}"
    for response in [client.get(url), client.get("/api/alice/tasks"), client.get("/api/alice/tasks?sort=title")]:
        assert response.status_code == 200 and response.headers["Cache-Control"] == "private, no-cache"
    for response in [client.get("/api/alice/tasks/999999"), client.get("/api/alice/tasks?sort=nope"),
                     client.get("/nowhere"), client.post(url), client.put(url, json={}),
                     client.post("/api/alice/tasks", data="{", content_type="application/json")]:
        assert response.status_code >= 400 and response.headers["Cache-Control"] == "no-store"


# --- CORS ----------------------------------------------------------------------------------------------

def test_browsers_may_send_the_headers_and_read_the_answers(client):
    origin = "http://localhost:3000"
    preflight = client.options("/api/alice/tasks/1", headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "If-Match, If-None-Match, Idempotency-Key"})
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"if-match", "if-none-match", "idempotency-key"} <= allowed
    answer = client.get("/api/alice/tasks", headers={"Origin": origin})
    exposed = {h.strip().lower() for h in answer.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"etag", "location", "retry-after", "x-request-id", "idempotent-replayed"} <= exposed


ODD_BUT_VALID = ['"" \t\t,"l6;,I"\t  \t \t  ,"pJ2"\t ,\t \t  \t ,\t\t,\t\t \t "W",  "0EFU:0Lo)d*1mP"  \t,\t ,   ',
                 '"a,b"', '",", W/","', '"\x80\xff"', '""']


@pytest.mark.parametrize("value", ODD_BUT_VALID)
def test_odd_but_valid_tag_lists_are_compared_not_failed(client, value):
    """Commas inside quotes, empty tags, tabs between elements: no match, so a full answer."""
    task = create(client)
    for url in [f"/api/alice/tasks/{task['id']}", "/api/alice/tasks", "/api/alice/tasks?limit=1",
                "/api/alice/tasks/changes"]:
        response = client.get(url, headers={"If-None-Match": value})
        assert response.status_code == 200, (url, response.status_code, response.data[:200])
    assert client.put(f"/api/alice/tasks/{task['id']}", json={"title": "x"},
                      headers={"If-Match": value}).status_code == 412
