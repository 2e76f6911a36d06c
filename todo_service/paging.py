"""Keyset paging of a user's task list: `limit`, an opaque signed `cursor`, and `Link: rel="next"`.

A page holds up to `limit` tasks in exactly the order of the unpaged list. While more follow, the
answer links the next page: same status, sort, order and limit, plus a cursor naming the page's last
task by its sort key and id (sql/queries/task_pages.sql reads on from there through the sort's
index, never with OFFSET). Tasks created, changed or deleted meanwhile move no other task across
that boundary, so a walk returns every unchanged task exactly once.

A cursor is base64url (unpadded, canonical) of:

    version (1 byte) | list (1) | limit (2) | boundary id (8) | boundary sort key (UTF-8) | MAC (16)

The MAC is HMAC-SHA256, cut to 128 bits, over the user id and everything before it, keyed with the
deployment's secret that migration 0005 made in the database (the same for every worker and
instance). Any changed byte, another user's cursor or a forged one fails the MAC: 400 naming
`cursor`. The list byte says which status, sort and order it was made for. The sort key is the
boundary task's value as the API returned it (timestamps to the microsecond; a title whole: 200
characters of 4 UTF-8 bytes each make a cursor of 1,104 characters), so no lookup of a task that may
be gone is needed, and the SQL compares titles as lower(title), the expression of their index.
"""

import base64
import binascii
import hashlib
import hmac
import re
import struct
from itertools import product
from urllib.parse import quote

import orjson
from flask import current_app, request

from . import dao, listcache
from .errors import validation_error
from .schemas import CURSOR_MESSAGE, PAGE_LIMIT_MAX

KEY_PURPOSE = "list_cursor"
VERSION = 1
# The list byte of a cursor indexes this: a change to STATUSES, SORTS or ORDERS needs a new VERSION.
LISTS = tuple(product(dao.STATUSES, dao.SORTS, dao.ORDERS))
HEADER = struct.Struct(">BBHq")  # version, list, limit, boundary id
MAC_BYTES = 16
SORT_KEY = {"created": "created_at", "updated": "updated_at", "title": "title"}  # the row field per sort
TIMESTAMP = re.compile(r"\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")  # api_timestamp's format (migration 0003)
BAD_CURSOR = f"cursor {CURSOR_MESSAGE}"
OTHER_LIST = ("cursor was made for a different status, sort or order; send it with the same ones as the page "
              "it came from, or start without a cursor.")


def signing_secret():
    """The cursor signing key, read from the database once per app and process."""
    state = current_app.extensions["todo_paging"]
    if state["key"] is None:
        key = dao.signing_key(KEY_PURPOSE)
        if key is None:
            raise RuntimeError(f"no signing key {KEY_PURPOSE!r} in signing_keys: apply migration 0005")
        state["key"] = key
    return state["key"]


def _mac(user_id, payload):
    user = user_id.encode("utf-8", "surrogatepass")
    message = struct.pack(">H", len(user)) + user + payload
    return hmac.new(signing_secret(), message, hashlib.sha256).digest()[:MAC_BYTES]


def _encode(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_cursor(user_id, status, sort, order, limit, row):
    """The cursor of the page that follows `row` in the user's list (status, sort, order)."""
    payload = HEADER.pack(VERSION, LISTS.index((status, sort, order)), limit, row["id"])
    payload += row[SORT_KEY[sort]].encode("utf-8")
    return _encode(payload + _mac(user_id, payload))


def _unpack(user_id, cursor):
    """(list, limit, id, key) from a cursor this deployment made for `user_id`, else None."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        return None
    if _encode(raw) != cursor or len(raw) < HEADER.size + MAC_BYTES:  # one spelling per cursor only
        return None
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(user_id, payload)):
        return None
    version, list_index, limit, after_id = HEADER.unpack_from(payload)
    try:
        key = payload[HEADER.size:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if version != VERSION or list_index >= len(LISTS) or not 1 <= limit <= PAGE_LIMIT_MAX or after_id < 1 or not key:
        return None
    return LISTS[list_index], limit, after_id, key


def open_cursor(user_id, args):
    """The boundary (sort key, id) and page size a valid cursor carries; 400 naming `cursor` otherwise."""
    unpacked = _unpack(user_id, args["cursor"])
    if unpacked is None:
        raise validation_error(BAD_CURSOR, "cursor")
    made_for, limit, after_id, key = unpacked
    if made_for != (args["status"], args["sort"], args["order"]):
        raise validation_error(OTHER_LIST, "cursor")
    if args["sort"] != "title" and not TIMESTAMP.fullmatch(key):
        raise validation_error(BAD_CURSOR, "cursor")
    return (key, after_id), limit


def encode_page(user_id, args, rows):
    """(JSON of up to `limit` of `rows`, the Link to the next page or None); `rows` holds one more
    than a page when more follow."""
    status, sort, order, limit = args["status"], args["sort"], args["order"], args["limit"]
    link = None
    if len(rows) > limit:
        del rows[limit:]
        link = next_link(args, make_cursor(user_id, status, sort, order, limit, rows[-1]))
    return orjson.dumps(rows), link


def next_link(args, cursor):
    """`Link` to the next page: this path (relative to the request's URL), the same list, the cursor.

    Every value is URL-safe already: status, sort and order are validated names, the cursor base64url.
    """
    query = f"status={args['status']}&sort={args['sort']}&order={args['order']}&limit={args['limit']}&cursor={cursor}"
    return f'<{quote(request.script_root + request.path)}?{query}>; rel="next"'


def renderer(user_id, args):
    """`render(known)` -> (list version, JSON or None, Link or None) of what `args` asks for: the
    whole list, or with a limit, a cursor or both, one page (listcache._kept says when JSON is None).

    The cursor is checked here, before anything is read: a bad one is 400 naming `cursor`.
    """
    status, sort, order = args["status"], args["sort"], args["order"]
    if args["limit"] is None and args["cursor"] is None:
        return lambda known: listcache.list_json(user_id, status, sort, order, known)
    after = None
    if args["cursor"] is not None:
        after, cursor_limit = open_cursor(user_id, args)
        if args["limit"] is None:
            args["limit"] = cursor_limit

    def read(versions):  # one more row than a page: do more follow?
        return dao.list_page(user_id, status, sort, order, args["limit"] + 1, after, versions)

    return lambda known: listcache.page_json(user_id, args, read, lambda rows: encode_page(user_id, args, rows), known)


def init_app(app):
    """The signing key is read on the first paged request, so the app starts without the database."""
    app.extensions["todo_paging"] = {"key": None}
