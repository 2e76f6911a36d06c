"""The OpenAPI 3 document, generated from the marshmallow schemas with apispec."""

import copy

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app

from . import conditional, schemas
from .responses import json_response

bp = Blueprint("openapi", __name__)

USER_ID = {
    "name": "user_id", "in": "path", "required": True,
    "description": "The owner's id: 1-128 characters, no whitespace, control characters or '/'.",
    "schema": {"type": "string", "minLength": 1, "maxLength": schemas.USER_ID_MAX,
               "pattern": schemas.USER_ID_PATTERN},
}
TASK_ID = {
    "name": "task_id", "in": "path", "required": True,
    "description": "A task id; anything that is not a positive bigint answers 404.",
    "schema": {"type": "integer", "minimum": 1, "maximum": schemas.BIGINT_MAX},
}
REQUEST_ID = {
    "name": "X-Request-ID", "in": "header", "required": False,
    "description": "Echoed when it is 1-128 of [A-Za-z0-9._:@+=-]; generated otherwise.",
    "schema": {"type": "string"},
}


ETAG_LIST_PATTERN = conditional.ETAG_LIST_PATTERN
IF_NONE_MATCH = {
    "name": "If-None-Match", "in": "header", "required": False,
    "description": "Tags from earlier answers (ETag): 304 without a body when one is the current tag (weak "
                   "comparison; `*` matches any). Werkzeug parses it: a value in which it finds no tag is 400.",
    "schema": {"type": "string", "pattern": ETAG_LIST_PATTERN, "example": '"2026-11-26T13:29:37.123456Z"'},
}
IF_MATCH = {
    "name": "If-Match", "in": "header", "required": False,
    "description": "Change the task only if its current tag (ETag) is one of these (strong comparison; `*`: "
                   "if it exists), decided by the statement that writes; otherwise 412 and nothing changes. "
                   "A missing task stays 404. Werkzeug parses it: a value in which it finds no tag is 400.",
    "schema": {"type": "string", "pattern": ETAG_LIST_PATTERN, "example": '"2026-11-26T13:29:37.123456Z"'},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Do this write at most once: a retry of the same request with the same key within "
                   "IDEMPOTENCY_TTL_HOURS (24) gets the first answer again, byte for byte, with "
                   "`Idempotent-Replayed: true`. 1-255 printable ASCII characters without spaces; per user.",
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$", "example": "3f2b8c1e-6a1d-4c55-9a8e-0c7d2f1b9e47"},
}
RESPONSE_HEADERS = {
    "ETag": {"description": "The strong entity tag of the task or list in this answer.", "schema": {"type": "string"}},
    "Cache-Control": {"description": "`private, no-cache` on GET answers, `no-store` on errors.",
                      "schema": {"type": "string"}},
    "Idempotent-Replayed": {"description": "`true` when this is the stored answer of an earlier request "
                                           "with the same Idempotency-Key.", "schema": {"type": "string"}},
}


def _error(description, *extra_headers):
    headers = {"X-Request-ID": {"schema": {"type": "string"}}}
    headers.update({name: RESPONSE_HEADERS.get(name, {"schema": {"type": "string"}}) for name in extra_headers})
    return {"description": description, "headers": headers,
            "content": {"application/json": {"schema": "Error"}}}


def _ok(description, schema=None, *extra_headers):
    response = _error(description, *extra_headers)
    if schema is None:
        del response["content"]
    else:
        response["content"]["application/json"]["schema"] = schema
    return response


def _body(schema):
    return {"required": True, "content": {"application/json": {"schema": schema}}}


COMMON = {
    "404": _error("No such route (NOT_FOUND), or no such task (TASK_NOT_FOUND)."),
    "400": _error("Invalid path value, query parameter or body field (VALIDATION_ERROR)."),
    "405": _error("Known path, other method (METHOD_NOT_ALLOWED).", "Allow"),
    "503": _error("The database is unavailable (DATABASE_UNAVAILABLE) or too slow to answer (DATABASE_TIMEOUT), "
                  "or with authentication on, the auth server's key set cannot be fetched (AUTH_UNAVAILABLE).",
                  "Retry-After"),
    "500": _error("Unexpected error (INTERNAL_ERROR)."),
}
# With authentication on (AUTH_JWKS_URL or AUTH_JWT_SECRET), every /api/ request needs a bearer token.
AUTHENTICATED = {
    "401": _error("No bearer token (AUTH_REQUIRED), or a token that is malformed, "
                  "badly signed, expired, not yet valid or for another issuer or audience (INVALID_TOKEN).",
                  "WWW-Authenticate"),
    "403": _error("The token belongs to another user than the path's (FORBIDDEN)."),
    "431": _error("The Authorization header is larger than 8 KiB (HEADER_TOO_LARGE)."),
}
BEARER = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
          "description": "A JWT from the frontend's auth server whose user claim (default `sub`) is the "
                         "path's user_id."}
WITH_BODY = {
    "413": _error("Body over 64 KiB (PAYLOAD_TOO_LARGE)."),
    "415": _error("Body not sent as application/json (UNSUPPORTED_MEDIA_TYPE)."),
    "422": _error("Body empty, malformed or not a JSON object (INVALID_JSON)."),
}
TASK = {"$ref": "#/components/schemas/Task"}
METRICS = {
    "200": {"description": "The Prometheus text format (OpenMetrics when the Accept header asks for it).",
            "content": {"text/plain": {"schema": {"type": "string"}}}},
    "401": _error("METRICS_TOKEN is set and this request does not carry it as a bearer token (UNAUTHORIZED).",
                  "WWW-Authenticate"),
    "403": _error("Authentication is on and METRICS_TOKEN is not set: nobody may scrape (FORBIDDEN)."),
    "404": _error("METRICS_ENABLED=false (NOT_FOUND)."),
}
NEXT_LINK = {
    "description": 'With limit or cursor, while more tasks follow: <URL>; rel="next", URL (relative to the '
                   "request's URL) naming the next page: the same status, sort, order and limit, plus a cursor. "
                   "Absent on the last page and on the whole list.",
    "schema": {"type": "string", "example": '</api/alice/tasks?status=all&sort=created&order=desc&limit=50'
                                             '&cursor=AQEAMgAAAAAAABOJMjAyNi0xMS0yN1QwNzozNDoyMC44OTc5ODha'
                                             'S1pwQe1YZ49PHJClyC_gJA>; rel="next"'},
}
NOT_MODIFIED = {"304": _ok("Not modified: If-None-Match holds the current tag; no body.", None, "ETag",
                           "Cache-Control")}
PRECONDITION = {"412": _error("If-Match holds no current tag of the task (PRECONDITION_FAILED); nothing changed.")}
KEYED = {
    "409": _error("Another request with this Idempotency-Key is still in progress "
                  "(IDEMPOTENCY_KEY_IN_PROGRESS); retry.", "Retry-After"),
    "422": _error("This Idempotency-Key was used for another request (IDEMPOTENCY_KEY_REUSED), or the body "
                  "is empty, malformed or not a JSON object (INVALID_JSON)."),
}
# A create also meets the user's quota (MAX_TASKS_PER_USER); a keyed create that succeeded still replays.
CREATE_EXTRA = {**KEYED, "409": _error(
    "The user has MAX_TASKS_PER_USER tasks already (TASK_QUOTA_EXCEEDED; nothing created), or another "
    "request with this Idempotency-Key is still in progress (IDEMPOTENCY_KEY_IN_PROGRESS; retry).", "Retry-After")}


SYNC_ERRORS = {
    "400": _error("Invalid limit or wait (VALIDATION_ERROR), or since is not a token this endpoint gave this user: "
                  "altered, cut, or another user's (INVALID_SYNC_TOKEN)."),
    "410": _error("The token can no longer be answered exactly (SYNC_TOKEN_EXPIRED): older than the retention "
                  "of deletions (SYNC_TOMBSTONE_DAYS), its deletions purged, or issued by another database or "
                  "before a restore. Resync: call without since and replace the local list with the answer."),
}


def _op(summary, responses, body=None, parameters=(), extra=None):
    operation = {"summary": summary, "parameters": [REQUEST_ID, *parameters],
                 "responses": {**responses, **COMMON}}
    if body is not None:
        operation["requestBody"] = _body(body)
        operation["responses"].update(WITH_BODY)
    operation["responses"].update(extra or {})
    return operation


def _require_bearer(document):
    """Declare the bearer scheme, and on every task operation the token and its 401/403/431 answers."""
    document["components"]["securitySchemes"] = {"bearerAuth": BEARER}
    for response in AUTHENTICATED.values():  # added after apispec resolved the other references
        response["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/Error"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/") and method != "parameters":
                operation["security"] = [{"bearerAuth": []}]
                operation["responses"].update(copy.deepcopy(AUTHENTICATED))


RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {"description": "The rate-limit policies (draft-ietf-httpapi-ratelimit-headers): q requests "
                                        "per w seconds, per user (per client address without a valid token); "
                                        '"default" counts every /api/ request (RATE_LIMIT), "writes" POST, PUT, PATCH '
                                        "and DELETE (RATE_LIMIT_WRITES).", "schema": {"type": "string"}},
    "RateLimit": {"description": "What is left of each policy this request spent: a requests available for the "
                                 "next w seconds.", "schema": {"type": "string", "example": '"default";a=599;w=42'}},
}


def _limit_rates(document, policy):
    """On every task operation: the RateLimit headers on each answer, and the 429 answer."""
    headers = copy.deepcopy(RATE_LIMIT_HEADERS)
    headers["RateLimit-Policy"]["schema"]["example"] = policy
    limited = _error("Too many requests for this user or address (RATE_LIMITED); retry after Retry-After seconds.",
                     "Retry-After")
    limited["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/Error"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/") and method != "parameters":
                operation["responses"]["429"] = copy.deepcopy(limited)
                for response in operation["responses"].values():
                    response.setdefault("headers", {}).update(copy.deepcopy(headers))


def build_spec(authenticated=False, rate_limit_policy=None):
    """The whole document as a dict; with `authenticated`, task operations require a bearer token.

    With `rate_limit_policy` (the RateLimit-Policy the service sends), they document 429 and the headers.
    """
    spec = APISpec(
        title="todo_service", version="1.0.0", openapi_version="3.0.3", plugins=[MarshmallowPlugin()],
        info={"description": "Task API behind the Todo app. Every error body is an Error object."},
    )
    for name, schema in [("Task", schemas.TaskSchema), ("TaskCreate", schemas.TaskCreateSchema),
                         ("TaskUpdate", schemas.TaskUpdateSchema), ("Error", schemas.ErrorSchema),
                         ("Health", schemas.HealthSchema), ("Changes", schemas.ChangesSchema)]:
        spec.components.schema(name, schema=schema)
    spec.components.schemas["TaskUpdate"]["minProperties"] = 1  # at least one field
    task_list = {"type": "array", "items": TASK}
    listed = _ok("The tasks, possibly []: all of them, or one page (limit, cursor).", task_list, "ETag",
                 "Cache-Control")
    listed["headers"]["Link"] = NEXT_LINK
    spec.path("/api/{user_id}/tasks", parameters=[USER_ID], operations={
        "get": _op("List the user's tasks, whole or a page at a time.", {"200": listed, **NOT_MODIFIED},
                   parameters=[{"in": "query", "schema": schemas.ListQuerySchema}, IF_NONE_MATCH]),
        "post": _op("Create a task.", {"201": _ok("The new task.", TASK, "Location", "ETag", "Idempotent-Replayed")},
                    body="TaskCreate", parameters=[IDEMPOTENCY_KEY], extra=CREATE_EXTRA),
    })
    changed = _ok("What changed since `since` (or a snapshot), possibly nothing; has_more: call again at once.",
                  "Changes", "ETag", "Cache-Control")
    spec.path("/api/{user_id}/tasks/changes", parameters=[USER_ID], operations={
        "get": _op("The change feed: tasks created or changed and ids deleted since a sync token; long-poll "
                   "with wait (README: Keeping a client in sync).", {"200": changed, **NOT_MODIFIED},
                   parameters=[{"in": "query", "schema": schemas.ChangesQuerySchema}, IF_NONE_MATCH],
                   extra=SYNC_ERRORS),
    })
    spec.path("/api/{user_id}/tasks/{task_id}", parameters=[USER_ID, TASK_ID], operations={
        "get": _op("Get one task.", {"200": _ok("The task.", TASK, "ETag", "Cache-Control"), **NOT_MODIFIED},
                   parameters=[IF_NONE_MATCH]),
        "put": _op("Update any of title, description, completed.",
                   {"200": _ok("The updated task.", TASK, "ETag")}, body="TaskUpdate", parameters=[IF_MATCH],
                   extra=PRECONDITION),
        "delete": _op("Delete a task.", {"204": _ok("Deleted; no body.")}, parameters=[IF_MATCH], extra=PRECONDITION),
    })
    spec.path("/api/{user_id}/tasks/{task_id}/complete", parameters=[USER_ID, TASK_ID], operations={
        "patch": _op("Flip the task's completed flag.",
                     {"200": _ok("The task, flipped.", TASK, "ETag", "Idempotent-Replayed")},
                     parameters=[IF_MATCH, IDEMPOTENCY_KEY], extra={**PRECONDITION, **KEYED}),
    })
    spec.path("/healthz", operations={"get": {"summary": "Liveness; never touches the database.",
                                              "responses": {"200": _ok("Alive.", "Health")}}})
    spec.path("/readyz", operations={"get": {"summary": "Readiness: the database answers.", "responses": {
        "200": _ok("Ready.", "Health"), "503": COMMON["503"]}}})
    spec.path("/metrics", operations={"get": {"summary": "Prometheus metrics of every worker (README: Metrics).",
                                              "responses": METRICS}})
    document = {"description": "OpenAPI 3 document.", "content": {"application/json": {"schema": {"type": "object"}}}}
    spec.path("/openapi.json", operations={"get": {"summary": "This document.", "responses": {"200": document}}})
    document = spec.to_dict()
    if authenticated:
        _require_bearer(document)
    if rate_limit_policy:
        _limit_rates(document, rate_limit_policy)
    return document


@bp.get("/openapi.json")
def openapi_document():
    """Serve the document built once at startup."""
    return json_response(current_app.extensions["openapi"])


def init_app(app):
    """Build the document once and serve it."""
    policy = app.extensions.get("todo_ratelimit_policy")  # set by ratelimit.init_app when limits are on
    app.extensions["openapi"] = build_spec(app.config["SETTINGS"].auth_enabled, policy)
    app.register_blueprint(bp)
