"""Every validation boundary of the contract: body fields, query parameters, path values."""

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from tests.support import WITH_AUTH, auth_headers
from tests.test_tasks_api import create
from todo_service.schemas import TASK_CREATE, TITLE_PATTERN, USER_ID_PATTERN, check_user_id


def error(response, status, code, field="__any__"):
    body = response.get_json()
    assert response.status_code == status, body
    assert body["error_code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    if field != "__any__":
        assert body["field"] == field
    return body


@pytest.mark.parametrize("title,stored", [("a", "a"), ("x" * 200, "x" * 200), ("  " + "y" * 200 + "\t\n", "y" * 200),
                                          ("é" * 200, "é" * 200), ("😀" * 200, "😀" * 200)])
def test_title_lengths_accepted(client, title, stored):
    assert create(client, title=title)["title"] == stored


@pytest.mark.parametrize("title", ["", "   ", "\t\n", "x" * 201, "😀" * 201, " " + "z" * 201 + " "])
def test_title_lengths_rejected(client, title):
    error(client.post("/api/alice/tasks", json={"title": title}), 400, "VALIDATION_ERROR", "title")


def test_description_boundaries(client):
    assert create(client, description="d" * 1000)["description"] == "d" * 1000
    assert create(client, description="  spaced  ")["description"] == "  spaced  "
    assert create(client, description="")["description"] == ""
    assert create(client, description=None)["description"] is None
    for body in ({"title": "t", "description": "d" * 1001}, {"title": "t", "description": "😀" * 1001}):
        error(client.post("/api/alice/tasks", json=body), 400, "VALIDATION_ERROR", "description")


@pytest.mark.parametrize("body,field", [
    ({}, "title"),
    ({"description": "no title"}, "title"),
    ({"title": None}, "title"),
    ({"title": 5}, "title"),
    ({"title": ["a"]}, "title"),
    ({"title": {"a": 1}}, "title"),
    ({"title": True}, "title"),
    ({"title": "ok", "description": 5}, "description"),
    ({"title": "ok", "description": False}, "description"),
    ({"title": "ok", "completed": "true"}, "completed"),
    ({"title": "ok", "completed": 1}, "completed"),
    ({"title": "ok", "completed": 0}, "completed"),
    ({"title": "ok", "completed": None}, "completed"),
    ({"title": "ok", "id": 5}, "id"),
    ({"title": "ok", "user_id": "bob"}, "user_id"),
    ({"title": "ok", "created_at": "2026-01-01T00:00:00Z"}, "created_at"),
    ({"title": "ok", "priority": 1}, "priority"),
])
def test_create_rejects_wrong_types_and_unknown_fields(client, body, field):
    error(client.post("/api/alice/tasks", json=body), 400, "VALIDATION_ERROR", field)


@pytest.mark.parametrize("raw,field", [
    ('{"title": "a\\u0000b"}', "title"),
    ('{"title": "ok", "description": "nul \\u0000"}', "description"),
    ('{"title": "\\ud800"}', "title"),
    ('{"title": "x\\udfff"}', "title"),
    ('{"title": "ok", "description": "\\ud83d"}', "description"),
])
def test_nul_and_unpaired_surrogates_are_400_naming_the_field(client, raw, field):
    response = client.post("/api/alice/tasks", data=raw, content_type="application/json")
    error(response, 400, "VALIDATION_ERROR", field)


def test_paired_surrogate_escapes_are_fine(client):
    response = client.post("/api/alice/tasks", data='{"title": "\\ud83d\\ude00"}', content_type="application/json")
    assert response.status_code == 201 and response.get_json()["title"] == "😀"


@pytest.mark.parametrize("body,field", [
    ({}, None),
    ({"title": ""}, "title"),
    ({"title": "   "}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"title": None}, "title"),
    ({"completed": None}, "completed"),
    ({"completed": "yes"}, "completed"),
    ({"description": "d" * 1001}, "description"),
    ({"description": 3}, "description"),
    ({"title": "ok", "extra": True}, "extra"),
    ({"id": 9}, "id"),
])
def test_put_rejects_bad_bodies_and_changes_nothing(client, body, field):
    task = create(client, description="keep")
    url = f"/api/alice/tasks/{task['id']}"
    error(client.put(url, json=body), 400, "VALIDATION_ERROR", field)
    assert client.get(url).get_json() == task


@pytest.mark.parametrize("query,field", [
    ("status=done", "status"), ("status=", "status"), ("status=ALL", "status"),
    ("sort=priority", "sort"), ("sort=", "sort"), ("order=up", "order"), ("order=", "order"),
    ("order=DESC", "order"),
])
def test_list_rejects_unknown_parameter_values(client, query, field):
    error(client.get(f"/api/alice/tasks?{query}"), 400, "VALIDATION_ERROR", field)


@pytest.mark.parametrize("user", ["x" * 129, "a b", "a%20b", "tab%09", "nl%0A", "nul%00", "del%7F", "c1%C2%85",
                                  "a%2Fb", "nbsp%C2%A0", "", "em%E2%80%83space"])
def test_bad_user_ids_are_400_on_every_endpoint(client, user):
    for method, path in [("get", ""), ("post", ""), ("get", "/1"), ("put", "/1"), ("delete", "/1"),
                         ("patch", "/1/complete")]:
        if WITH_AUTH and not user:  # no token names an empty user: the token's own user is refused the path
            response = getattr(client, method)(f"/api//tasks{path}", json={"title": "t"}, headers=auth_headers("u"))
            error(response, 403, "FORBIDDEN", None)
            continue
        response = getattr(client, method)(f"/api/{user}/tasks{path}", json={"title": "t"})
        error(response, 400, "VALIDATION_ERROR", "user_id")


def test_user_id_of_128_characters_works(client):
    user = "u" * 128
    assert create(client, user=user)["user_id"] == user
    assert create(client, user="é" * 128)["user_id"] == "é" * 128


@pytest.mark.parametrize("task_id", ["abc", "-1", "0", "00", "99999999999999999999", "9223372036854775808",
                                     "1.5", "1e3", "%EF%BC%95", "+1", " 1"])
def test_malformed_task_ids_are_404(client, task_id):
    for method, suffix in [("get", ""), ("put", ""), ("delete", ""), ("patch", "/complete")]:
        response = getattr(client, method)(f"/api/alice/tasks/{task_id}{suffix}", json={"title": "t"})
        error(response, 404, "TASK_NOT_FOUND", None)


def test_largest_bigint_id_is_a_plain_404(client):
    error(client.get("/api/alice/tasks/9223372036854775807"), 404, "TASK_NOT_FOUND", None)


@pytest.mark.parametrize("raw", ['{"title": NaN}', '{"title": "ok", "x": Infinity}', '{"title": -Infinity}',
                                 "{'title': 'single quotes'}", '{"title": "ok",}', '{"title": "ok"', "nul",
                                 '{"title": "a"} trailing', '{"title": "a", "title": "b"}', "\ufeff{\"title\": \"a\"}"])
def test_malformed_json_is_422(client, raw):
    response = client.post("/api/alice/tasks", data=raw.encode("utf-8"), content_type="application/json")
    error(response, 422, "INVALID_JSON", None)


@pytest.mark.parametrize("raw", ["[]", '["title"]', '"title"', "1", "true", "null"])
def test_json_that_is_not_an_object_is_422(client, raw):
    error(client.post("/api/alice/tasks", data=raw, content_type="application/json"), 422, "INVALID_JSON")
    task = create(client)
    error(client.put(f"/api/alice/tasks/{task['id']}", data=raw, content_type="application/json"),
          422, "INVALID_JSON")


def test_empty_body_is_422(client):
    error(client.post("/api/alice/tasks", data=b"", content_type="application/json"), 422, "INVALID_JSON")
    error(client.post("/api/alice/tasks"), 422, "INVALID_JSON")
    task = create(client)
    error(client.put(f"/api/alice/tasks/{task['id']}", data=b"", content_type="application/json"),
          422, "INVALID_JSON")


def test_invalid_utf8_body_is_422(client):
    response = client.post("/api/alice/tasks", data=b'{"title": "\xff\xfe"}', content_type="application/json")
    error(response, 422, "INVALID_JSON")


def test_deep_nesting_is_422_not_500(client):
    raw = '{"title": ' + "[" * 100_00 + "]" * 100_00 + "}"
    response = client.post("/api/alice/tasks", data=raw, content_type="application/json")
    assert response.status_code in (400, 422)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/xml", "application/json; charset=latin-1", None])
def test_non_json_content_type_is_415_and_says_how_to_fix(client, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    response = client.post("/api/alice/tasks", data=json.dumps({"title": "t"}), headers=headers)
    body = error(response, 415, "UNSUPPORTED_MEDIA_TYPE", None)
    assert "application/json" in body["detail"]


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "APPLICATION/JSON; charset=UTF-8", "application/merge-patch+json"])
def test_json_content_types_accepted(client, ctype):
    response = client.post("/api/alice/tasks", data=json.dumps({"title": "t"}), headers={"Content-Type": ctype})
    assert response.status_code == 201


def test_body_over_64_kib_is_413(client):
    body = json.dumps({"title": "t", "description": "d" * (64 * 1024)})
    error(client.post("/api/alice/tasks", data=body, content_type="application/json"), 413, "PAYLOAD_TOO_LARGE")


def test_body_of_64_kib_is_read(client):
    body = json.dumps({"title": "t", "description": "d"}).encode()
    body = body[:-1] + b" " * (64 * 1024 - len(body)) + b"}"
    assert len(body) == 64 * 1024
    assert client.post("/api/alice/tasks", data=body, content_type="application/json").status_code == 201


@given(st.text(alphabet=st.sampled_from(["a", "é", " ", "\t", "\x1e", "\x85", "\ufeff", "\u3000", "\x00", "\n"]),
               max_size=205) | st.text(st.characters(exclude_categories=["Cs"]), max_size=210))
@settings(max_examples=400, deadline=None)
def test_documented_title_pattern_agrees_with_the_validation(text):
    documented = re.search(TITLE_PATTERN, text) is not None
    try:
        TASK_CREATE.load({"title": text})
        accepted = True
    except ValidationError:
        accepted = False
    assert documented == accepted


@given(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=130))
@settings(max_examples=400, deadline=None)
def test_documented_user_id_pattern_agrees_with_the_validation(text):
    documented = re.search(USER_ID_PATTERN, text) is not None and len(text) <= 128
    try:
        check_user_id(text)
        accepted = True
    except ValidationError:
        accepted = False
    assert documented == accepted
