"""List filters and every sort order, with ties broken by id in the same direction."""

import pytest

from tests.test_tasks_api import create


@pytest.fixture
def tasks(client, sql_conn):
    """Five tasks with controlled timestamps, including ties, for user 'lister'."""
    specs = [("banana", False, "2026-01-01 10:00", "2026-01-05 10:00"),
             ("Apple", True, "2026-01-02 10:00", "2026-01-02 10:00"),
             ("apple", False, "2026-01-02 10:00", "2026-01-04 10:00"),
             ("cherry", True, "2026-01-03 10:00", "2026-01-04 10:00"),
             ("Banana split", False, "2026-01-04 10:00", "2026-01-01 10:00")]
    ids = {}
    for title, completed, created, updated in specs:
        task = create(client, user="lister", title=title, completed=completed)
        sql_conn.execute("UPDATE tasks SET created_at = %s, updated_at = %s WHERE id = %s",
                         (created + "Z", updated + "Z", task["id"]))
        ids[title] = task["id"]
    create(client, user="someone-else", title="aaa first")
    return ids


def titles(client, query=""):
    response = client.get(f"/api/lister/tasks{query}")
    assert response.status_code == 200
    return [t["title"] for t in response.get_json()]


def test_default_is_all_by_created_newest_first(client, tasks):
    assert titles(client) == ["Banana split", "cherry", "apple", "Apple", "banana"]
    assert titles(client) == titles(client, "?status=all&sort=created&order=desc")


def test_created_ascending_ties_by_id_ascending(client, tasks):
    assert titles(client, "?sort=created&order=asc") == ["banana", "Apple", "apple", "cherry", "Banana split"]


def test_updated_default_newest_first_ties_by_id_descending(client, tasks):
    assert titles(client, "?sort=updated") == ["banana", "cherry", "apple", "Apple", "Banana split"]
    assert titles(client, "?sort=updated&order=asc") == ["Banana split", "Apple", "apple", "cherry", "banana"]


def test_title_default_ascending_case_insensitive_ties_by_id(client, tasks):
    assert titles(client, "?sort=title") == ["Apple", "apple", "banana", "Banana split", "cherry"]
    assert titles(client, "?sort=title&order=desc") == ["cherry", "Banana split", "banana", "apple", "Apple"]


@pytest.mark.parametrize("sort", ["created", "updated", "title"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_status_filters_keep_the_order(client, tasks, sort, order):
    everything = titles(client, f"?sort={sort}&order={order}")
    completed = {"Apple", "cherry"}
    assert titles(client, f"?status=completed&sort={sort}&order={order}") == [
        t for t in everything if t in completed]
    assert titles(client, f"?status=pending&sort={sort}&order={order}") == [
        t for t in everything if t not in completed]


def test_unknown_query_parameters_are_ignored(client, tasks):
    assert titles(client, "?_=12345") == titles(client)


def test_no_parameters_mean_the_schema_defaults():
    from todo_service.schemas import LIST_QUERY

    assert LIST_QUERY.load_args({}) == LIST_QUERY.load_args({"unknown": "ignored"})
