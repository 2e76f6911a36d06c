"""Entity tags and conditional requests (RFC 9110 §8.8.3, §13): ETag, If-None-Match, If-Match.

A task's tag is its `updated_at` (as the API formats it): the trigger of migration 0001 moves it
strictly forward with every change, so the tag changes with every committed change and never
comes back. A list's tag is the user's list version (migration 0004, new with every change to any
of the user's tasks) with a digest of the list's validated query arguments, so two different
queries never share a tag and arguments added later take part without a change here. Clients
must treat tags as opaque.

Werkzeug parses the headers (`request.if_match`, `request.if_none_match`) once they pass the
documented grammar (ETAG_LIST_PATTERN, also in the OpenAPI document): RFC 9110's entity-tag, an
optional `W/` then a double-quoted opaque tag. A value outside it (an unquoted `abc` or `W/abc`,
empty, only commas, an unterminated quote, junk after a tag, a space inside the quotes) is 400
naming the header.
`If-None-Match` is weighed on GET of a task or a list (weak comparison, `*` matches any current
answer); `If-Match` on PUT, PATCH .../complete and DELETE (strong comparison, so weak tags never
match; `*` means "if the task exists"), checked by the very SQL statement that writes.
"""

import hashlib
import re
import uuid

import orjson
from flask import Response, request

from . import dao
from .errors import validation_error
from .responses import json_bytes_response, json_response

# The header values the service accepts (documented as this pattern in the OpenAPI document): `*`
# alone, or a comma-separated list of RFC 9110 entity-tags (RFC 9110 §8.8.3: `W/`, case-sensitive,
# then DQUOTE *etagc DQUOTE, etagc being %x21 / %x23-7E / obs-text); empty list elements are allowed
# (§5.6.1). Anything else is 400; Werkzeug then reads what passed.
_TAG = r'(W/)?"[\x21\x23-\x7E\x80-\xFF]*"'
ETAG_LIST_PATTERN = rf'^[ \t]*(\*|(,[ \t]*)*{_TAG}([ \t]*,([ \t]*{_TAG})?)*)[ \t]*$'
ETAG_LIST = re.compile(ETAG_LIST_PATTERN)
VERSION_HEX = re.compile("[0-9a-f]{32}")  # a list version in a list tag (uuid.hex)
GET_CACHE_CONTROL = "private, no-cache"  # per-user data: revalidate every time, never share
ERROR_CACHE_CONTROL = "no-store"


def _parsed(header, attribute):
    """Werkzeug's parse of `header` (`request.<attribute>`), None when absent, 400 when it holds no tag."""
    if header not in request.headers:
        return None
    tags = getattr(request, attribute)
    if not tags or not ETAG_LIST.match(request.headers[header]):
        raise validation_error(f"{header} must be '*' or a comma-separated list of quoted entity tags such as "
                               '"2026-11-26T13:29:37.123456Z".', header)
    return tags


def if_none_match():
    """The request's If-None-Match tags, or None without the header."""
    return _parsed("If-None-Match", "if_none_match")


def if_match():
    """The strong tags a write must find, or None when it need not check (no If-Match, or `*`)."""
    tags = _parsed("If-Match", "if_match")
    if tags is None or tags.star_tag:
        return None
    return sorted(tag for tag in tags.as_set() if tag is not None)


def not_modified(tag):
    """304 with the tag and no body."""
    response = Response(status=304)
    del response.headers["Content-Type"]
    response.set_etag(tag)
    return response


def task_response(row, status=200, headers=None):
    """A task as JSON with its tag."""
    response = json_response(row, status, headers)
    response.set_etag(row["updated_at"])
    return response


def get_task_response(row, tags):
    """The task, or 304 when `tags` (If-None-Match) holds its current tag."""
    if tags is not None and tags.contains_weak(row["updated_at"]):
        return not_modified(row["updated_at"])
    return task_response(row)


def _query_digest(args):
    """The part of a list's tag that names the list: a digest of its validated query arguments."""
    return hashlib.blake2b(orjson.dumps(sorted(args.items()), default=str), digest_size=8).hexdigest()


def list_etag(version, args):
    """The tag of the list `args` selects, at the user's list `version`."""
    return f"{version.hex}-{_query_digest(args)}"


def _tagged_versions(tags, digest):
    """The list versions named by those of `tags` that were made for the list `digest` names."""
    if tags is None:
        return ()
    suffix = f"-{digest}"  # an empty tag ("") is None in Werkzeug's set
    return tuple(uuid.UUID(tag[:32]) for tag in tags.as_set(include_weak=True)
                 if tag and len(tag) == 32 + len(suffix) and tag.endswith(suffix) and VERSION_HEX.fullmatch(tag, 0, 32))


def list_response(user_id, args, render):
    """The list `args` selects, or 304 when If-None-Match holds its tag.

    `render(known)` returns the list's version, JSON and, for a page, its Link to the next one (or
    None), reading the version and the tasks in one statement; the JSON is None when the version is
    one of `known`, the versions the client's tags name, for that is a 304. A user without a version
    (never wrote, or the versions were truncated) gets a tag made from the body itself. `*` is
    weighed on the version alone, read first.
    """
    tags = if_none_match()
    digest = _query_digest(args)
    if tags is not None and tags.star_tag and (version := dao.list_version(user_id)) is not None:
        return not_modified(f"{version.hex}-{digest}")
    version, body, link = render(_tagged_versions(tags, digest))
    if version is not None:
        tag = f"{version.hex}-{digest}"
        if tags is not None and tags.contains_weak(tag):
            return not_modified(tag)  # nothing was encoded, nor read when the client named this version
    else:
        tag = "b" + hashlib.blake2b(body, digest_size=16).hexdigest()
        if tags is not None and tags.contains_weak(tag):
            return not_modified(tag)
    response = json_bytes_response(body)
    response.set_etag(tag)
    if link is not None:
        response.headers["Link"] = link
    return response


def cache_control(response):
    """GET answers may be kept by the client but must be revalidated; error answers not kept at all."""
    if "Cache-Control" not in response.headers:
        if response.status_code >= 400:
            response.headers["Cache-Control"] = ERROR_CACHE_CONTROL
        elif request.method in ("GET", "HEAD"):
            response.headers["Cache-Control"] = GET_CACHE_CONTROL
    return response


def init_app(app):
    """Cache-Control on every answer of `app`."""
    app.after_request(cache_control)
