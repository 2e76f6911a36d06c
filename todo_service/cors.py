"""CORS for the browser frontend: flask-cors, consulted only for requests that carry an Origin."""

from flask import request
from flask_cors import CORS

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ALLOW_HEADERS = ["Content-Type", "Authorization", "X-Request-ID", "If-Match", "If-None-Match", "Idempotency-Key"]
EXPOSE_HEADERS = ["Location", "X-Request-ID", "Retry-After", "WWW-Authenticate", "Link", "ETag", "Idempotent-Replayed",
                  "RateLimit-Policy", "RateLimit"]


def init_app(app, origins):
    """Answer CORS for `origins` (credentials allowed, never `*`).

    A request without an Origin header is not a CORS request (curl, server-side fetches, other
    services): it gets no CORS headers (`always_send=False`), and flask-cors's per-response work,
    about a tenth of a one-task request, is skipped for it. Every answer says `Vary: Origin`, since
    its CORS headers depend on that header.
    """
    CORS(app, origins=list(origins), supports_credentials=True, methods=METHODS, always_send=False,
         allow_headers=ALLOW_HEADERS, expose_headers=EXPOSE_HEADERS, max_age=600)
    flask_cors_hook = app.after_request_funcs[None].pop()  # the one hook CORS() just registered
    if flask_cors_hook.__name__ != "cors_after_request":
        raise RuntimeError(f"flask-cors registered {flask_cors_hook!r}, not its after-request hook")

    @app.after_request
    def cors_headers(response):
        if "Origin" in request.headers:
            response = flask_cors_hook(response)
        if "Vary" not in response.headers:
            response.headers["Vary"] = "Origin"
        elif "origin" not in response.headers["Vary"].lower():
            response.headers["Vary"] += ", Origin"
        return response
