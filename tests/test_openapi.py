"""The OpenAPI document matches the live routes and the error envelope."""

import re

from openapi_spec_validator import validate as validate_spec

from todo_service.schemas import TITLE_PATTERN


def flask_routes(app):
    """{(openapi_path, method)} of every route the app serves."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("docs."):
            continue  # files and the /docs page for people, not operations of the API
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def spec_routes(spec):
    return {(path, method) for path, ops in spec["paths"].items() for method in ops if method != "parameters"}


def test_document_is_served_and_valid(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    validate_spec(spec)


def test_document_lists_exactly_the_live_routes(app, client):
    assert spec_routes(client.get("/openapi.json").get_json()) == flask_routes(app)


def test_schemas_come_from_marshmallow(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert set(schemas["Task"]["properties"]) == {"id", "user_id", "title", "description", "completed",
                                                   "created_at", "updated_at"}
    assert schemas["TaskCreate"]["required"] == ["title"]
    assert schemas["TaskCreate"]["properties"]["title"]["pattern"] == TITLE_PATTERN
    assert schemas["TaskCreate"]["properties"]["description"]["maxLength"] == 1000
    assert schemas["TaskUpdate"]["minProperties"] == 1
    assert schemas["TaskCreate"]["additionalProperties"] is False
    assert schemas["TaskUpdate"]["properties"]["description"]["nullable"] is True
    assert set(schemas["Error"]["required"]) == {"detail", "error_code", "field"}


def test_every_operation_documents_its_errors(client):
    spec = client.get("/openapi.json").get_json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method == "parameters" or not path.startswith("/api/"):
                continue
            assert {"400", "405", "500", "503"} <= set(op["responses"]), (method, path)
            if "requestBody" in op:
                assert {"413", "415", "422"} <= set(op["responses"]), (method, path)


def test_conditional_and_idempotency_headers_and_answers_are_documented(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    task, tasks, complete = (paths[p] for p in ("/api/{user_id}/tasks/{task_id}", "/api/{user_id}/tasks",
                                                "/api/{user_id}/tasks/{task_id}/complete"))

    def headers(op):
        return {p["name"] for p in op["parameters"] if p.get("in") == "header"}

    for op in (task["get"], tasks["get"]):
        assert "If-None-Match" in headers(op) and "304" in op["responses"]
        assert {"ETag", "Cache-Control"} <= set(op["responses"]["200"]["headers"])
        assert "ETag" in op["responses"]["304"]["headers"] and "content" not in op["responses"]["304"]
    for op in (task["put"], task["delete"], complete["patch"]):
        assert "If-Match" in headers(op) and "412" in op["responses"]
    for op in (tasks["post"], complete["patch"]):
        assert "Idempotency-Key" in headers(op) and {"409", "422"} <= set(op["responses"])
        success = op["responses"]["201" if op is tasks["post"] else "200"]
        assert {"ETag", "Idempotent-Replayed"} <= set(success["headers"])
    assert "IDEMPOTENCY_KEY_REUSED" in tasks["post"]["responses"]["422"]["description"]
    assert "IDEMPOTENCY_KEY_IN_PROGRESS" in complete["patch"]["responses"]["409"]["description"]
