"""One JSON error envelope for every failure: {detail, error_code, field, request_id}."""

import logging

from flask import Blueprint, g
from werkzeug.exceptions import HTTPException

from . import metrics
from .dao import PreconditionFailed, QuotaExceeded, TaskNotFound
from .db import DatabaseTimeout, DatabaseUnavailable
from .responses import json_response

log = logging.getLogger(__name__)
bp = Blueprint("errors", __name__)
RETRY_AFTER_SECONDS = "2"

# Status codes the contract names; any other HTTP error gets its reason phrase in SNAKE_CASE.
HTTP_CODES = {
    400: ("VALIDATION_ERROR", "The request is not valid."),
    404: ("NOT_FOUND", "There is no such endpoint; see /openapi.json for the API."),
    405: ("METHOD_NOT_ALLOWED", "This endpoint does not accept that method; see the Allow header."),
    413: ("PAYLOAD_TOO_LARGE", "The request body is larger than 64 KiB."),
    415: ("UNSUPPORTED_MEDIA_TYPE", "Send the body as JSON with 'Content-Type: application/json'."),
}


class ApiError(Exception):
    """An error the client can act on, rendered with the contract's envelope."""

    def __init__(self, status, error_code, detail, field=None, headers=None):
        super().__init__(detail)
        self.status, self.error_code, self.detail = status, error_code, detail
        self.field, self.headers = field, headers or {}


def validation_error(detail, field=None):
    """400 VALIDATION_ERROR naming the offending field (or None for the request as a whole)."""
    return ApiError(400, "VALIDATION_ERROR", detail, field)


def invalid_json(detail):
    """422 INVALID_JSON: the body is empty, malformed or not a JSON object."""
    return ApiError(422, "INVALID_JSON", detail)


def error_response(status, error_code, detail, field=None, headers=None):
    """The envelope as a response; carries the request id so a report can be traced in the logs."""
    body = {"detail": detail, "error_code": error_code, "field": field, "request_id": g.get("request_id")}
    metrics.error_answered(status, error_code)
    return json_response(body, status, headers)


@bp.app_errorhandler(ApiError)
def handle_api_error(exc):
    return error_response(exc.status, exc.error_code, exc.detail, exc.field, exc.headers)


@bp.app_errorhandler(TaskNotFound)
def handle_task_not_found(exc):
    return error_response(404, "TASK_NOT_FOUND", "No task with this id exists for this user.")


@bp.app_errorhandler(PreconditionFailed)
def handle_precondition_failed(exc):
    detail = "The task has changed since you read it: its ETag matches no tag of If-Match. Read it again."
    return error_response(412, "PRECONDITION_FAILED", detail, "If-Match")


@bp.app_errorhandler(QuotaExceeded)
def handle_quota_exceeded(exc):
    detail = f"This user has {exc.limit} tasks, the most allowed; delete some before creating more."
    return error_response(409, "TASK_QUOTA_EXCEEDED", detail)


@bp.app_errorhandler(DatabaseUnavailable)
def handle_database_unavailable(exc):
    detail = "The database is unavailable right now; retry in a few seconds."
    return error_response(503, "DATABASE_UNAVAILABLE", detail, headers={"Retry-After": RETRY_AFTER_SECONDS})


@bp.app_errorhandler(DatabaseTimeout)
def handle_database_timeout(exc):
    detail = "The database took too long to answer this request; retry in a few seconds."
    return error_response(503, "DATABASE_TIMEOUT", detail, headers={"Retry-After": RETRY_AFTER_SECONDS})


@bp.app_errorhandler(HTTPException)
def handle_http_exception(exc):
    code = exc.code or 500
    error_code, detail = HTTP_CODES.get(code, (exc.name.upper().replace(" ", "_"), exc.description))
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_response(code, error_code, detail, headers=headers)


@bp.app_errorhandler(Exception)
def handle_unexpected(exc):
    log.exception("unhandled error")
    return error_response(500, "INTERNAL_ERROR", "Something went wrong on our side; it has been logged.")
