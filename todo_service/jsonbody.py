"""Reading a request body as strict RFC 8259 JSON, with the contract's 413/415/422 answers."""

import json

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import ApiError, invalid_json

MAX_BODY_BYTES = 64 * 1024
# A client that goes silent mid-body for this long gets 400 and frees its worker thread.
BODY_IDLE_TIMEOUT_SECONDS = 5.0


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _is_json(mimetype, charset):
    json_type = mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))
    return json_type and charset in (None, "utf-8", "utf8")


def json_object():
    """The body as a dict; raises ApiError (415/422) or lets Werkzeug raise 413 for oversized bodies."""
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(BODY_IDLE_TIMEOUT_SECONDS)
    data = request.get_data(cache=False)
    if len(data) >= MAX_BODY_BYTES and request.content_length is None and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()  # a chunked body longer than the limit: Werkzeug only truncates it
    if not data:
        raise invalid_json("A JSON object body is required.")
    charset = request.mimetype_params.get("charset")
    if not _is_json(request.mimetype, charset.lower() if charset else None):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       "Send the body as JSON with the header 'Content-Type: application/json'.")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise invalid_json(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise invalid_json("The body must be a JSON object.")
    return value
