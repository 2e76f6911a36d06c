"""/docs: the Swagger UI page and its files, served by the service itself, open and database-free."""

import re
from dataclasses import replace
from html.parser import HTMLParser
from importlib.metadata import version

import pytest
from flask.testing import FlaskClient

from tests.conftest import settings_for
from tests.support import ROOT, free_port
from todo_service import create_app

ONE_YEAR = "max-age=31536000"


class PageParser(HTMLParser):
    """The page's script and stylesheet URLs, inline script bodies and inline event handlers."""

    def __init__(self):
        super().__init__()
        self.scripts, self.styles, self.icons, self.inline, self.handlers = [], [], [], [], []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.handlers += [name for name in attrs if name.startswith("on")]
        if tag == "script":
            self._in_script = "src" not in attrs
            if "src" in attrs:
                self.scripts.append(attrs["src"])
        elif tag == "link" and attrs.get("rel") == "stylesheet":
            self.styles.append(attrs["href"])
        elif tag == "link" and attrs.get("rel") == "icon":
            self.icons.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append(data)


def parse(html):
    parser = PageParser()
    parser.feed(html)
    return parser


@pytest.fixture
def unreachable_client():
    """The app pointed at a database nobody listens on, and requests carrying no token."""
    url = f"postgresql://todo@127.0.0.1:{free_port()}/todo?connect_timeout=1"
    settings = replace(settings_for(url, DB_POOL_TIMEOUT="1"), auth_jwt_secret="docs-tests-secret-0123456789abcdef")
    app = create_app({"SETTINGS": settings, "TESTING": True})
    app.test_client_class = FlaskClient  # Flask's own: adds no token, even when the suite runs with auth on
    return app.test_client()


def test_docs_page_loads_swagger_ui_for_the_openapi_document(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'data-openapi-url="/openapi.json"' in html
    page = parse(html)
    assert any(src.endswith("/swagger-ui-bundle.js") for src in page.scripts)
    assert any(href.endswith("/swagger-ui.css") for href in page.styles)
    assert client.get("/openapi.json").status_code == 200


def test_docs_page_allows_only_its_own_origin_and_no_inline_code(client):
    response = client.get("/docs")
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert not ({"script-src", "style-src", "connect-src", "font-src"} & set(policy))  # all fall back to 'self'
    assert set(policy["img-src"].split()) == {"'self'", "data:"}  # the icons inlined in swagger-ui.css
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert not re.search(r"https?:|\*|unsafe-", response.headers["Content-Security-Policy"])
    page = parse(response.get_data(as_text=True))
    assert page.inline == [] and page.handlers == []
    assert all(url.startswith("/") and not url.startswith("//") for url in page.scripts + page.styles + page.icons)
    assert response.headers["Cache-Control"] == "no-cache"


def test_assets_are_served_here_with_a_year_long_immutable_cache(client):
    page = parse(client.get("/docs").get_data(as_text=True))
    expected_types = {".js": {"text/javascript", "application/javascript"}, ".css": {"text/css"}, ".png": {"image/png"}}
    for url in page.scripts + page.styles + page.icons:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.mimetype in expected_types[url[url.rindex("."):]], url
        cache = {part.strip() for part in response.headers["Cache-Control"].split(",")}
        assert cache == {"public", ONE_YEAR, "immutable"}, url
        assert len(response.data) > 0
    bundle = next(url for url in page.scripts if url.endswith("/swagger-ui-bundle.js"))
    assert len(client.get(bundle).data) > 500_000  # the real Swagger UI, not a stub


def test_asset_urls_carry_the_swagger_ui_version(client):
    page = parse(client.get("/docs").get_data(as_text=True))
    assert all(f"/docs/assets/{version('flask-swagger-ui')}-" in url for url in page.scripts + page.styles)


@pytest.mark.parametrize("path", ["/docs/assets/0.0.1-0000000000/swagger-ui-bundle.js",
                                  "/docs/assets/{v}/oauth2-redirect.html", "/docs/assets/{v}/..%2Fdocs.py",
                                  "/docs/assets/{v}/VERSION", "/docs/assets/{v}/docs.py"])
def test_other_versions_and_files_are_404(client, path):
    current = re.search(r"/docs/assets/([^/]+)/", client.get("/docs").get_data(as_text=True))[1]
    response = client.get(path.format(v=current))
    assert response.status_code == 404 and response.get_json()["error_code"] == "NOT_FOUND"


def test_docs_need_no_token_and_no_database(unreachable_client):
    page_response = unreachable_client.get("/docs")
    assert page_response.status_code == 200
    page = parse(page_response.get_data(as_text=True))
    for url in page.scripts + page.styles + page.icons:
        assert unreachable_client.get(url).status_code == 200, url
    assert unreachable_client.get("/openapi.json").status_code == 200
    # The same app does need both for the API: the token first, then the database.
    assert unreachable_client.get("/api/alice/tasks").status_code == 401


def test_docs_enabled_false_turns_the_page_off(database_url):
    app = create_app({"SETTINGS": settings_for(database_url, DOCS_ENABLED="false"), "TESTING": True})
    client = app.test_client()
    for path in ("/docs", "/docs/"):
        response = client.get(path)
        assert response.status_code == 404 and response.get_json()["error_code"] == "NOT_FOUND"
    assert client.get("/openapi.json").status_code == 200


def test_readme_gives_the_docs_url_and_shows_the_page():
    readme = (ROOT / "README.md").read_text()
    top = readme.split("```", 2)[1]  # the first code block: the two commands
    assert "http://127.0.0.1:8000/docs" in top
    image = re.search(r"!\[[^\]]*\]\((docs/[^)]+\.png)\)", readme)
    assert image, "README shows no screenshot from docs/"
    png = (ROOT / image[1]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 1000 and height >= 600
