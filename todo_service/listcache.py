"""Rendered task lists, kept per worker and served only while the user's list version is unchanged.

A user's list version (migration 0004) changes with every committed change to their tasks. A list
statement reads it together with the tasks, and skips the tasks when the version is one whose
rendering is kept here (or held by the client, for a 304): a kept list then costs one primary-key
read instead of reading, converting and encoding every task again (6,667 tasks are 1.3 MB of JSON
and about 25 ms of CPU, docs/performance.md), and a list read afresh is still one round trip.
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


class ListCache:
    """Rendered lists up to `max_bytes` in all, least recently used dropped first; thread-safe.

    An entry is a body and, for a page, its Link header to the next page (None on the last page).
    """

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self._entries = LRUCache(maxsize=max_bytes, getsizeof=_entry_size)
        self._lock = threading.Lock()

    def get(self, key):
        """(version, body, link) kept for `key`, or None."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key, version, body, link=None):
        """Keep `body` as rendered at `version`; a body larger than the whole cache is not kept."""
        if _entry_size((version, body, link)) <= self.max_bytes:
            if len(body) < EXACT_COPY_BELOW:
                body = bytes(memoryview(body))
            with self._lock:
                self._entries[key] = (version, body, link)


def _entry_size(entry):
    return len(entry[1]) + len(entry[2] or "") + ENTRY_OVERHEAD


def _kept(key, known, read, encode):
    """(version, body, link) of the list `key` names, in one round trip.

    `read(versions)` returns (version, rows), rows None when the version is one of `versions`;
    `encode(rows)` returns (body, link). The body is the one kept for `key` while its version is
    current, else `encode` of the rows read afresh; None when the version is one of `known` (the
    versions the client holds: the caller answers 304) and nothing is kept for it.
    """
    cache = current_app.extensions["todo_lists"]
    entry = None if cache is None else cache.get(key)
    version, rows = read(known if entry is None else (*known, entry[0]))
    hit = entry is not None and entry[0] == version
    if cache is not None and version is not None and version not in known:
        metrics.list_cache_lookup(hit)
    if rows is None:
        return (version, *entry[1:]) if hit else (version, None, None)
    body, link = encode(rows)
    if cache is not None and version is not None:
        cache.put(key, version, body, link)
    return version, body, link


def list_json(user_id, status, sort, order, known=()):
    """(list version, the user's tasks filtered and ordered as asked as JSON bytes, None): see _kept."""
    return _kept((user_id, status, sort, order), known,
                 lambda versions: dao.list_tasks(user_id, status, sort, order, versions),
                 lambda rows: (orjson.dumps(rows), None))


def page_json(user_id, args, read, encode, known=()):
    """(list version, one page's JSON, its Link to the next page or None): see _kept.

    `args` holds the validated status, sort, order, limit and cursor; together they name the page.
    """
    key = (user_id, args["status"], args["sort"], args["order"], args["limit"], args["cursor"])
    return _kept(key, known, read, encode)


def init_app(app):
    """A cache of LIST_CACHE_MB per worker process; 0 turns it off."""
    megabytes = app.config["SETTINGS"].list_cache_mb
    app.extensions["todo_lists"] = ListCache(int(megabytes * 2**20)) if megabytes else None
