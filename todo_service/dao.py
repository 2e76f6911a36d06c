"""Task data access: one named SQL statement per call, always scoped to one user."""

from datetime import timedelta
from itertools import product

from flask import current_app

from .db import run
from .queries import QUERIES

STATUSES = ("all", "pending", "completed")
SORTS = ("created", "updated", "title")
ORDERS = ("asc", "desc")
DEFAULT_ORDER = {"created": "desc", "updated": "desc", "title": "asc"}

# The one place a list request picks its statement: every (status, sort, order) maps to a
# reviewed file in sql/queries/tasks.sql; a missing one fails at import, not at request time.
LIST_QUERIES = {
    (status, sort, order): QUERIES[f"list_tasks_{'all' if status == 'all' else 'by_status'}_{sort}_{order}"].name
    for status, sort, order in product(STATUSES, SORTS, ORDERS)
}
STATUS_FLAG = {"pending": False, "completed": True}
# The paged lists (sql/queries/task_pages.sql): the first page, and the page after a boundary task.
PAGE_QUERIES = {
    (status, sort, order, after): QUERIES[
        f"{'next' if after else 'first'}_page_{'all' if status == 'all' else 'by_status'}_{sort}_{order}"].name
    for status, sort, order, after in product(STATUSES, SORTS, ORDERS, (False, True))
}


class TaskNotFound(LookupError):
    """No such task for this user (missing, malformed id, or someone else's)."""


class PreconditionFailed(Exception):
    """The task exists, but its current tag is none of those If-Match asked for; nothing changed."""


class QuotaExceeded(Exception):
    """The user has MAX_TASKS_PER_USER tasks already; nothing was created."""

    def __init__(self, limit):
        super().__init__(limit)
        self.limit = limit


def max_tasks():
    """MAX_TASKS_PER_USER: the create statements refuse a task past it, atomically."""
    return current_app.config["SETTINGS"].max_tasks_per_user


def _found(row):
    if row is None:
        raise TaskNotFound()
    return row


def _matched(row):
    """A conditional write's row: TaskNotFound without one, PreconditionFailed when it holds no task."""
    if _found(row)["id"] is None:
        raise PreconditionFailed()
    return row


def _versioned(rows, known_versions):
    """(list version or None, tasks) from a list statement's rows; tasks None when the version is known.

    The statement always answers at least one row: with the tasks' columns null when it read none.
    """
    version = rows[0]["list_version"]
    if rows[0]["id"] is None:
        return version, None if version is not None and version in known_versions else []
    for row in rows:
        del row["list_version"]
    return version, rows


def list_tasks(user_id, status, sort, order, known_versions=()):
    """(the user's list version, their tasks filtered and ordered as asked), in one statement.

    The tasks are None, not read, when the version is one of `known_versions`.
    """
    params = {"user_id": user_id, "known_versions": list(known_versions)}
    if status != "all":
        params["completed"] = STATUS_FLAG[status]
    return _versioned(run(LIST_QUERIES[(status, sort, order)], **params), known_versions)


def list_page(user_id, status, sort, order, row_limit, after=None, known_versions=()):
    """(list version, up to `row_limit` of the user's tasks in list order after the boundary (sort key, id)
    if given), in one statement; the tasks None, not read, when the version is one of `known_versions`."""
    params = {"user_id": user_id, "row_limit": row_limit, "known_versions": list(known_versions)}
    if status != "all":
        params["completed"] = STATUS_FLAG[status]
    if after is not None:
        params["after_key"], params["after_id"] = after
    return _versioned(run(PAGE_QUERIES[(status, sort, order, after is not None)], **params), known_versions)


def signing_key(purpose):
    """The secret kept for `purpose` (migration 0005), or None when there is none."""
    row = run("get_signing_key", purpose=purpose)
    return None if row is None else bytes(row["secret"])


def list_version(user_id):
    """The version of the user's lists (changes with every change to their tasks), or None if unknown.

    Alone, for `If-None-Match: *`; a list reads it with its tasks (list_tasks, list_page)."""
    row = run("get_list_version", user_id=user_id)
    return None if row is None else row["version"]


def create_task(user_id, title, description, completed):
    """Insert a task and return it as stored; QuotaExceeded when the user holds MAX_TASKS_PER_USER."""
    limit = max_tasks()
    row = run("create_task", user_id=user_id, title=title, description=description, completed=completed,
              max_tasks=limit)
    if row is None:
        raise QuotaExceeded(limit)
    return row


def get_task(user_id, task_id):
    """One task of the user, or TaskNotFound."""
    return _found(run("get_task", user_id=user_id, id=task_id))


def update_task(user_id, task_id, changes, etags=None):
    """Apply a partial update (keys: title, description, completed) and return the task.

    With `etags` (If-Match), only when the task's current tag is one of them.
    """
    params = {
        "user_id": user_id,
        "id": task_id,
        "title": changes.get("title"),
        "description": changes.get("description"),
        "set_description": "description" in changes,
        "completed": changes.get("completed"),
    }
    if etags is None:
        return _found(run("update_task", **params))
    return _matched(run("update_task_if_match", etags=etags, **params))


def toggle_task(user_id, task_id, etags=None):
    """Flip `completed` in one statement and return the task; with `etags`, only on a matching tag."""
    if etags is None:
        return _found(run("toggle_task", user_id=user_id, id=task_id))
    return _matched(run("toggle_task_if_match", user_id=user_id, id=task_id, etags=etags))


def delete_task(user_id, task_id, etags=None):
    """Delete the task, or TaskNotFound; with `etags`, only on a matching tag."""
    if etags is None:
        if run("delete_task", user_id=user_id, id=task_id) == 0:
            raise TaskNotFound()
    elif not _found(run("delete_task_if_match", user_id=user_id, id=task_id, etags=etags))["deleted"]:
        raise PreconditionFailed()


# The change feed (sql/queries/changes.sql, todo_service/sync.py).
TASK_FIELDS = ("id", "user_id", "title", "description", "completed", "created_at", "updated_at")


def list_changes(user_id, after, gone, row_limit):
    """(head, changes): the user's head row, then up to `row_limit` tasks changed after the position
    `after` and deletions after `gone` (each a (seq, id) pair), in (seq, id) order."""
    rows = run("list_changes", user_id=user_id, after_seq=after[0], after_id=after[1], gone_seq=gone[0],
               gone_id=gone[1], row_limit=row_limit)
    head = rows[0]
    head["epoch"] = bytes(head["epoch"])
    return head, rows[1:]


def change_heads(seen):
    """Of the users in `seen` ({user id: seq}), those whose head seq is past it now: [{user_id, seq}]."""
    return run("get_change_heads", user_ids=list(seen), seen=list(seen.values()))


def sync_epoch(user_id):
    """The 8-byte epoch of this database's history: list_changes' head row alone (no change rows)."""
    return list_changes(user_id, (0, 0), (0, 0), 0)[0]["epoch"]


def purge_tombstones(retention_us, batch):
    """Delete up to `batch` tombstones older than the retention; how many went."""
    return run("purge_tombstones", retention=timedelta(microseconds=retention_us), batch=batch)["purged"]
