"""What happens around every request: request id, header sizes, UTF-8 path check, one log line per request."""

import logging
import random
import re
import time

from flask import g, request

from .errors import ApiError, validation_error

log = logging.getLogger("todo_service.request")
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=-]{1,128}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The largest header value the service reads (a bearer token fits many times over). gunicorn.conf.py lets
# fields of up to 32 KiB through, so that the service, not gunicorn's plain-text page, answers those between.
MAX_HEADER_BYTES = 8 * 1024


def _printable(text):
    """Control characters escaped, so a crafted path cannot forge log lines."""
    return CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def new_request_id():
    """32 random hex digits: unique enough to trace a request, and no system call (uuid4 makes one)."""
    return f"{random.getrandbits(128):032x}"


def begin_request():
    """Adopt a sane incoming X-Request-ID or make one."""
    g.started = time.perf_counter()
    incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
    g.request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else new_request_id()


def check_headers():
    """431 HEADER_TOO_LARGE, naming the header, for any header value over 8 KiB."""
    environ = request.environ
    # Nearly every request has none: one pass over the lengths, and only then look at the names.
    if not any(type(value) is str and len(value) > MAX_HEADER_BYTES for value in environ.values()):
        return
    for key, value in environ.items():
        if key.startswith(("HTTP_", "CONTENT_")) and len(value) > MAX_HEADER_BYTES:
            name = key.removeprefix("HTTP_").replace("_", "-").title()
            raise ApiError(431, "HEADER_TOO_LARGE", f"The {name} header is larger than 8 KiB.", name)


def check_path():
    """Refuse paths that are not UTF-8 (after authentication, like any other validation)."""
    path = request.environ.get("PATH_INFO", "")
    if not path.isascii():  # WSGI hands the raw bytes over as latin-1
        try:
            path.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise validation_error("The URL path is not valid UTF-8.") from None


def end_request(response):
    """Echo the request id and log the request in one line."""
    request_id = g.get("request_id") or new_request_id()
    response.headers["X-Request-ID"] = request_id
    if log.isEnabledFor(logging.INFO):
        method, path, status = request.method, _printable(request.path), response.status_code
        duration_ms = round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2)
        user = g.get("auth_user")
        extra = {"request_id": request_id, "method": method, "path": path, "status": status,
                 "duration_ms": duration_ms}
        if user is None:
            log.info("%s %s %s %.2fms", method, path, status, duration_ms, extra=extra)
        else:  # the authenticated user, never the token
            extra["user"] = user = _printable(user)
            log.info("%s %s %s %.2fms user=%s", method, path, status, duration_ms, user, extra=extra)
    return response


def init_app(app):
    """Give every request of `app` an id and a log line."""
    app.before_request(begin_request)
    app.before_request(check_headers)
    app.after_request(end_request)
