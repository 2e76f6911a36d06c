"""The interactive API reference at /docs: Swagger UI for /openapi.json, every file served from here.

Swagger UI's files come from the pinned flask-swagger-ui package (only its `dist/` folder is used,
not its blueprint, whose page carries an inline script). Asset URLs hold a version, so a browser may
keep them a year; the page itself is revalidated on every load and says where its code may come
from: this origin only. Nothing here touches the database or needs a token.
"""

import hashlib
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory, url_for

SWAGGER_UI_DIST = Path(str(files("flask_swagger_ui") / "dist"))
INIT_SCRIPT = Path(__file__).with_name("docs.js")  # starts Swagger UI; a file, so the CSP needs no inline code
SWAGGER_UI_FILES = {"swagger-ui-bundle.js", "swagger-ui.css", "index.css", "favicon-32x32.png", "favicon-16x16.png"}
# The package's version is Swagger UI's; the hash covers our own script. A new release of either
# gives every asset a new URL, so a year-long cache never serves a stale file.
ASSET_VERSION = f"{version('flask-swagger-ui')}-{hashlib.sha256(INIT_SCRIPT.read_bytes()).hexdigest()[:10]}"
ONE_YEAR = 31_536_000
# Only this origin. `data:` images are the icons inlined in swagger-ui.css; they load nothing.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>todo_service API</title>
  <link rel="icon" type="image/png" sizes="32x32" href="{favicon32}">
  <link rel="icon" type="image/png" sizes="16x16" href="{favicon16}">
  <link rel="stylesheet" href="{index_css}">
  <link rel="stylesheet" href="{swagger_css}">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi}"></div>
  <script src="{bundle}"></script>
  <script src="{init}"></script>
</body>
</html>
"""

bp = Blueprint("docs", __name__)


def _asset(name):
    return url_for("docs.asset", asset_version=ASSET_VERSION, name=name)


@bp.get("/docs")
def page():
    """The Swagger UI page for /openapi.json."""
    html = PAGE.format(
        favicon32=_asset("favicon-32x32.png"), favicon16=_asset("favicon-16x16.png"),
        index_css=_asset("index.css"), swagger_css=_asset("swagger-ui.css"),
        bundle=_asset("swagger-ui-bundle.js"), init=_asset("docs.js"),
        openapi=url_for("openapi.openapi_document"),
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.cache_control.no_cache = True  # tiny; always current, so it always names current assets
    return response


@bp.get("/docs/assets/<asset_version>/<name>")
def asset(asset_version, name):
    """One of the page's files, cacheable for a year: its URL changes whenever its content does."""
    if asset_version != ASSET_VERSION:
        abort(404)
    if name == INIT_SCRIPT.name:
        response = send_from_directory(INIT_SCRIPT.parent, name, max_age=ONE_YEAR)
    elif name in SWAGGER_UI_FILES:
        response = send_from_directory(SWAGGER_UI_DIST, name, max_age=ONE_YEAR)
    else:
        abort(404)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response


def init_app(app):
    """Serve /docs and its files unless DOCS_ENABLED=false."""
    if app.config["SETTINGS"].docs_enabled:
        app.register_blueprint(bp)
