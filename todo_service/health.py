"""Liveness and readiness probes."""

from flask import Blueprint

from .db import run
from .responses import json_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers; the database is not touched."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: the database answers a statement."""
    run("ping")
    return json_response({"status": "ok"})
