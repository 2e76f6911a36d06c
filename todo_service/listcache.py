"""Rendered task lists, kept per worker and served only while the user's list version is unchanged.

A user's list version (migration 0004) changes with every committed change to their tasks, so one
primary-key read tells whether a kept rendering is still exactly what the database holds. A big
list then costs that read instead of reading, converting and encoding every task again: 6,667
tasks are 1.3 MB of JSON and about 25 ms of CPU (docs/performance.md).
"""

import threading

import orjson
from cachetools import LRUCache
from flask import current_app

from . import dao, metrics

ENTRY_OVERHEAD = 512  # bytes an entry costs besides its body and link: key, tuple, bookkeeping
# orjson's output keeps up to 4 KB of spare capacity; a small body is copied to its exact size so
# that the limit counts what the cache really holds.
EXACT_COPY_BELOW = 64 * 1024
UNREAD = object()  # the version when the caller has not read it


class ListCache:
    """Rendered lists up to `max_bytes` in all, least recently used dropped first; thread-safe.

    An entry is a body and, for a page, its Link header to the next page (None on the last page).
    """

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self._entries = LRUCache(maxsize=max_bytes, getsizeof=_entry_size)
        self._lock = threading.Lock()

    def get(self, key, version):
        """(body, link) kept for `key` if it was rendered at `version`, else None."""
        with self._lock:
            entry = self._entries.get(key)
        found = entry is not None and entry[0] == version
        metrics.list_cache_lookup(found)
        return entry[1:] if found else None

    def put(self, key, version, body, link=None):
        """Keep `body` as rendered at `version`; a body larger than the whole cache is not kept."""
        if _entry_size((version, body, link)) <= self.max_bytes:
            if len(body) < EXACT_COPY_BELOW:
                body = bytes(memoryview(body))
            with self._lock:
                self._entries[key] = (version, body, link)


def _entry_size(entry):
    return len(entry[1]) + len(entry[2] or "") + ENTRY_OVERHEAD


def _kept(user_id, key, render, version=UNREAD):
    """`render()`'s (body, link), or the one kept for `key` while the user's lists are unchanged.

    `version`: the user's list version when the caller has read it already (None: no version known).
    """
    cache = current_app.extensions["todo_lists"]
    if cache is None:
        return render()
    # The version is read before the rows, so the rows are at least as new as the version they
    # are kept under: a change committed in between makes the next read miss, never serve stale.
    if version is UNREAD:
        version = dao.list_version(user_id)
    if version is not None and (kept := cache.get(key, version)) is not None:
        return kept
    rendered = render()
    if version is not None:
        cache.put(key, version, *rendered)
    return rendered


def list_json(user_id, status, sort, order, version=UNREAD):
    """The user's tasks, filtered and ordered as asked, as JSON bytes.

    `version`: the user's list version when the caller has read it already (None: no version known).
    """
    body, _ = _kept(user_id, (user_id, status, sort, order),
                    lambda: (orjson.dumps(dao.list_tasks(user_id, status, sort, order)), None), version)
    return body


def page_json(user_id, args, render, version=UNREAD):
    """One page of a list: `render()`'s (JSON bytes, Link to the next page or None), kept under the whole query.

    `args` holds the validated status, sort, order, limit and cursor; together they name the page.
    """
    key = (user_id, args["status"], args["sort"], args["order"], args["limit"], args["cursor"])
    return _kept(user_id, key, render, version)


def init_app(app):
    """A cache of LIST_CACHE_MB per worker process; 0 turns it off."""
    megabytes = app.config["SETTINGS"].list_cache_mb
    app.extensions["todo_lists"] = ListCache(int(megabytes * 2**20)) if megabytes else None
