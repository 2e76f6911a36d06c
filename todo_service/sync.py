"""The change feed, GET /api/{user_id}/tasks/changes: what changed since a client's sync token.

Every write statement takes the next seq of the user's head row (migration 0007) under that row's
lock and holds it until commit, so a user's seqs are commit-ordered: once seq N is visible, so is
every seq below it, and nothing can commit below it later. A feed position is (seq, id): a task
carries the seq of its last change, a deleted task a tombstone with the seq of its deletion; one
statement (list_changes) reads the head and the changes after a position in one snapshot.

A token is base64url (unpadded, canonical) of:

    version (1) | epoch (8) | seq (8) | id (8) | floor (8) | issued (8, µs since 1970) | MAC (16)

(seq, id) is the position the client has applied everything up to. `floor` is the seq at which its
snapshot began: deletions at or below it were never part of what the client holds, so a snapshot
walk skips them. `issued` is the database's clock when the position was reached: a token older
than the tombstone retention (SYNC_TOMBSTONE_DAYS) is refused with 410, and so is one whose
deletions were purged (the head's purged_seq passed it). The epoch names this database's history
(list_changes' head row: its own secret, OID, system identifier and timeline, Neon's timeline): a restore,
a promotion or another database changes it, and its old tokens get 410 instead of a wrong delta;
so does a token from the future (a seq the head has not reached). The MAC is HMAC-SHA256, cut to
128 bits, keyed like the list cursors (migration 0005) but in its own domain, over the user id and
everything before it: a changed character or another user's token is 400 INVALID_SYNC_TOKEN. A
token of another database fails the MAC too (its key differs), but its epoch, a hash, differs from
this database's in nearly every byte, where a changed base64 character touches at most two: such a
token is 410, so that its client resyncs.
"""

import base64
import binascii
import hashlib
import hmac
import logging
import struct
import threading
import time
from typing import NamedTuple

import orjson
import psycopg
from flask import current_app

from . import conditional, dao, longpoll
from .db import DatabaseUnavailable
from .errors import ApiError
from .paging import signing_secret
from .responses import json_bytes_response

log = logging.getLogger(__name__)
VERSION = 1
TOKEN = struct.Struct(">B8sqqqq")  # version, epoch, seq, id, floor, issued
MAC_BYTES = 16
TOKEN_BYTES = TOKEN.size + MAC_BYTES
TOKEN_LENGTH = (TOKEN_BYTES * 8 + 5) // 6  # base64url characters without padding
DOMAIN = b"todo_service sync token\x00"  # keeps these MACs apart from the cursors' under the same key
MAX_ID = 2**63 - 1
OTHER_HISTORY_BYTES = 2  # epoch bytes a tampered token may differ in; another history's differ in more
PURGE_EVERY_SECONDS = 60.0
PURGE_BATCH = 500
PURGE_PAUSE_SECONDS = 0.05  # between full batches of a backlog, so a purge never hogs the database
INVALID = ("since is not a sync token of this user; send the next of an earlier answer of this endpoint, "
           "or start without since.")
EXPIRED = ("This sync token can no longer be answered exactly ({reason}); resync from scratch: call again "
           "without since and replace the local list with the answer.")


class Position(NamedTuple):
    """What a token says: the feed position (seq, id), the snapshot floor, and when it was issued."""

    epoch: bytes
    seq: int
    id: int
    floor: int
    issued_us: int

    def gone_bound(self):
        """The (seq, id) after which deletions are news: a snapshot walk skips those below its floor."""
        return (self.floor, MAX_ID) if self.floor >= self.seq else (self.seq, self.id)


class InvalidToken(Exception):
    """A token that fails its MAC or its layout; `epoch` when its bytes could be read."""

    def __init__(self, epoch=None):
        super().__init__(epoch)
        self.epoch = epoch


def _state():
    return current_app.extensions["todo_sync"]


def _mac(user_id, payload):
    user = user_id.encode("utf-8", "surrogatepass")
    return hmac.new(signing_secret(), DOMAIN + struct.pack(">H", len(user)) + user + payload,
                    hashlib.sha256).digest()[:MAC_BYTES]


def make_token(user_id, epoch, seq, after_id, floor, issued_us):
    """The token of this position for `user_id`."""
    payload = TOKEN.pack(VERSION, epoch, seq, after_id, floor, issued_us)
    return base64.urlsafe_b64encode(payload + _mac(user_id, payload)).rstrip(b"=").decode("ascii")


def open_token(user_id, token):
    """The Position a token made here for `user_id` holds; InvalidToken otherwise."""
    if len(token) != TOKEN_LENGTH:
        raise InvalidToken()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken() from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:  # one spelling per token
        raise InvalidToken()
    payload, mac = raw[:TOKEN.size], raw[TOKEN.size:]
    version, epoch, seq, after_id, floor, issued_us = TOKEN.unpack(payload)
    if version != VERSION:
        raise InvalidToken()
    if not hmac.compare_digest(mac, _mac(user_id, payload)):
        raise InvalidToken(epoch)
    if min(seq, after_id, floor, issued_us) < 0:
        raise InvalidToken()
    return Position(epoch, seq, after_id, floor, issued_us)


def _expired(reason):
    return ApiError(410, "SYNC_TOKEN_EXPIRED", EXPIRED.format(reason=reason), "since")


def _differing_bytes(one, other):
    return sum(a != b for a, b in zip(one, other, strict=True))


def _position(user_id, since):
    """The token's Position; 400 INVALID_SYNC_TOKEN, or 410 when it is another database history's."""
    try:
        return open_token(user_id, since)
    except InvalidToken as exc:
        if exc.epoch is not None and _differing_bytes(exc.epoch, dao.sync_epoch(user_id)) > OTHER_HISTORY_BYTES:
            raise _expired("it was issued by another database or before a restore") from None
        raise ApiError(400, "INVALID_SYNC_TOKEN", INVALID, "since") from None


def _check(position, head):
    """410 unless the changes after `position` can be answered exactly from `head` on."""
    if position.epoch != head["epoch"]:
        raise _expired("it was issued by another database or before a restore")
    if position.seq > head["seq"] or position.floor > head["seq"]:
        raise _expired("it is ahead of this database: restored from an earlier backup")
    if head["purged_seq"] > position.gone_bound()[0]:
        raise _expired("deletions after it have been purged")
    retention_us = _state()["retention_us"]
    if position.issued_us < head["now_us"] - retention_us:
        raise _expired(f"it is older than the {retention_us / 86_400_000_000:g}-day retention of deletions")


def _read(user_id, position, limit):
    """(head, up to limit + 1 changes) after `position`; a snapshot when position is None."""
    if position is None:
        after, gone = (0, 0), (MAX_ID, MAX_ID)
    else:
        after, gone = (position.seq, position.id), position.gone_bound()
    return dao.list_changes(user_id, after, gone, limit + 1)


def _body(user_id, position, since, head, rows, limit):
    """The answer's JSON: changes, deleted, next and has_more."""
    items, more = rows[:limit], len(rows) > limit
    changes = [{key: row[key] for key in dao.TASK_FIELDS} for row in items if row["kind"] == "task"]
    deleted = [row["id"] for row in items if row["kind"] == "deleted"]
    if more:  # the client calls again at once from the last item given
        floor, issued = (head["seq"], head["now_us"]) if position is None else (position.floor, position.issued_us)
        token = make_token(user_id, head["epoch"], items[-1]["seq"], items[-1]["id"], floor, issued)
    elif not items and position is not None and position.seq >= head["seq"]:
        token = since  # nothing happened since: the same token, so the same answer and tag
    else:  # everything up to the head: the next answer starts after it
        token = make_token(user_id, head["epoch"], head["seq"], MAX_ID, head["seq"], head["now_us"])
    return orjson.dumps({"changes": changes, "deleted": deleted, "next": token, "has_more": more})


def changes_response(user_id, args):
    """The changes since `args["since"]` (or a snapshot), held up to `args["wait"]` s while there are none;
    304 when If-None-Match holds the answer's tag."""
    tags = conditional.if_none_match()
    since, limit = args["since"], args["limit"]
    position = None if since is None else _position(user_id, since)
    deadline = time.monotonic() + args["wait"]
    while True:
        head, rows = _read(user_id, position, limit)
        if position is not None:
            _check(position, head)
        left = deadline - time.monotonic()
        if rows or left <= 0 or not longpoll.wait(user_id, head["seq"], left):
            break
    body = _body(user_id, position, since, head, rows, limit)
    tag = "s" + hashlib.blake2b(body, digest_size=16).hexdigest()
    if tags is not None and tags.contains_weak(tag):
        return conditional.not_modified(tag)
    response = json_bytes_response(body)
    response.set_etag(tag)
    return response


def purge_after_delete():
    """After a delete committed: at most once a minute per process (the first a minute after start),
    tombstones past the retention are purged on a thread of their own, so no request waits for it."""
    state = _state()
    now = time.monotonic()
    if now < state["next_purge"]:
        return
    state["next_purge"] = now + PURGE_EVERY_SECONDS
    app = current_app._get_current_object()
    threading.Thread(target=_purge_backlog, args=(app,), name="todo_service-tombstones", daemon=True).start()


def _purge_backlog(app):
    """Batches of PURGE_BATCH until one comes back short; a failure is logged and waits for the next turn."""
    with app.app_context():
        try:
            while purge_batch() >= PURGE_BATCH:
                time.sleep(PURGE_PAUSE_SECONDS)
        except (DatabaseUnavailable, psycopg.Error) as exc:
            log.warning("purging old tombstones failed: %s", exc)


def purge_batch():
    """Delete one batch of tombstones past the retention (one statement); how many went."""
    return dao.purge_tombstones(_state()["retention_us"], PURGE_BATCH)


def init_app(app):
    """Retention from SYNC_TOMBSTONE_DAYS; the first purge is due a minute after start."""
    days = app.config["SETTINGS"].sync_tombstone_days
    app.extensions["todo_sync"] = {"retention_us": round(days * 86_400_000_000),
                                   "next_purge": time.monotonic() + PURGE_EVERY_SECONDS}
