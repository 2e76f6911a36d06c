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

from . import dao

ENTRY_OVERHEAD = 512  # bytes an entry costs besides its body: key, tuple, cache bookkeeping
# orjson's output keeps up to 4 KB of spare capacity; a small body is copied to its exact size so
# that the limit counts what the cache really holds.
EXACT_COPY_BELOW = 64 * 1024
UNREAD = object()  # list_json's version when the caller has not read it


class ListCache:
    """Rendered lists up to `max_bytes` in all, least recently used dropped first; thread-safe."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self._entries = LRUCache(maxsize=max_bytes, getsizeof=lambda entry: len(entry[1]) + ENTRY_OVERHEAD)
        self._lock = threading.Lock()

    def get(self, key, version):
        """The body kept for `key` if it was rendered at `version`, else None."""
        with self._lock:
            entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] == version else None

    def put(self, key, version, body):
        """Keep `body` as rendered at `version`; a body larger than the whole cache is not kept."""
        if len(body) + ENTRY_OVERHEAD <= self.max_bytes:
            if len(body) < EXACT_COPY_BELOW:
                body = bytes(memoryview(body))
            with self._lock:
                self._entries[key] = (version, body)


def list_json(user_id, status, sort, order, version=UNREAD):
    """The user's tasks, filtered and ordered as asked, as JSON bytes.

    `version`: the user's list version when the caller has read it already (None: no version known).
    """
    cache = current_app.extensions["todo_lists"]
    if cache is None:
        return orjson.dumps(dao.list_tasks(user_id, status, sort, order))
    # The version is read before the rows, so the rows are at least as new as the version they
    # are kept under: a change committed in between makes the next read miss, never serve stale.
    if version is UNREAD:
        version = dao.list_version(user_id)
    key = (user_id, status, sort, order)
    if version is not None and (body := cache.get(key, version)) is not None:
        return body
    body = orjson.dumps(dao.list_tasks(user_id, status, sort, order))
    if version is not None:
        cache.put(key, version, body)
    return body


def init_app(app):
    """A cache of LIST_CACHE_MB per worker process; 0 turns it off."""
    megabytes = app.config["SETTINGS"].list_cache_mb
    app.extensions["todo_lists"] = ListCache(int(megabytes * 2**20)) if megabytes else None
