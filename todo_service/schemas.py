"""marshmallow schemas: what requests may carry, and the documented shape of every answer."""

import re
import unicodedata

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from .dao import DEFAULT_ORDER, ORDERS, SORTS, STATUSES

TITLE_MAX = 200
DESCRIPTION_MAX = 1000
USER_ID_MAX = 128
BIGINT_MAX = 2**63 - 1
PAGE_LIMIT_MAX = 1000
CURSOR_MAX = 2000
CURSOR_PATTERN = "^[A-Za-z0-9_-]+$"  # base64url without padding: unreserved in any URL
# Whitespace as Python's str.isspace() and JavaScript's \s see it, so the documented patterns and
# the checks here agree on every character.
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
_WS = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
# After trimming: 1-200 characters, no NUL; any whitespace around them.
TITLE_PATTERN = f"^[{_WS}]*[^{_WS}\\x00](?:[^\\x00]{{0,{TITLE_MAX - 2}}}[^{_WS}\\x00])?[{_WS}]*$"
NO_NUL_PATTERN = "^[^\\x00]*$"
# Ends in a lookahead, not `$`: Python's `$` also matches before a final newline.
USER_ID_PATTERN = f"^[^{_WS}/\\x00-\\x1f\\x7f-\\x9f]+(?![\\s\\S])"
USER_ID_RE = re.compile(USER_ID_PATTERN)


def _check_text(value):
    """Reject what PostgreSQL text cannot hold: NUL and unpaired surrogates."""
    if "\x00" in value:
        raise ValidationError("must not contain the NUL character (U+0000).")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("must not contain unpaired surrogate characters.") from None


class Text(fields.String):
    """A JSON string that PostgreSQL can store as sent."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        _check_text(value)
        return value


class Title(Text):
    """A title: surrounding whitespace stripped, then 1-200 characters."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs).strip(WHITESPACE)
        if not 1 <= len(value) <= TITLE_MAX:
            raise ValidationError("must be 1 to 200 characters after trimming whitespace.")
        return value


class StrictBoolean(fields.Boolean):
    """Only JSON true or false; no "yes", 1 or "true"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class PageLimit(fields.Integer):
    """A page size: a whole number written in ASCII digits only (no sign, point, space or exponent)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictSchema(Schema):
    """Unknown fields are an error, so typos never pass silently."""

    class Meta:
        unknown = RAISE


TITLE_DOC = {"pattern": TITLE_PATTERN, "example": "Buy milk",
             "description": "1-200 characters after surrounding whitespace is trimmed; no NUL."}
DESCRIPTION_DOC = {"pattern": NO_NUL_PATTERN, "description": "At most 1000 characters, kept as sent; no NUL."}
DESCRIPTION_RULE = validate.Length(max=DESCRIPTION_MAX, error="must be at most 1000 characters.")
MESSAGES = {"required": "is required.", "null": "must not be null.", "invalid": "must be a string."}
ONE_OF = "must be one of: {choices}."
BOOL_MESSAGES = {**MESSAGES, "invalid": "must be true or false."}
LIMIT_MESSAGE = f"must be a whole number from 1 to {PAGE_LIMIT_MAX}."
CURSOR_MESSAGE = "is not a cursor of this list; follow the Link of the previous page or start without one."


class TaskCreateSchema(StrictSchema):
    """Body of POST /api/{user_id}/tasks."""

    title = Title(required=True, error_messages=MESSAGES, metadata=TITLE_DOC)
    description = Text(allow_none=True, load_default=None, validate=DESCRIPTION_RULE, error_messages=MESSAGES,
                       metadata=DESCRIPTION_DOC)
    completed = StrictBoolean(load_default=False, error_messages=BOOL_MESSAGES)


class TaskUpdateSchema(StrictSchema):
    """Body of PUT /api/{user_id}/tasks/{task_id}: any of the fields, at least one."""

    title = Title(error_messages=MESSAGES, metadata=TITLE_DOC)
    description = Text(allow_none=True, validate=DESCRIPTION_RULE, error_messages=MESSAGES, metadata=DESCRIPTION_DOC)
    completed = StrictBoolean(error_messages=BOOL_MESSAGES)

    @validates_schema
    def at_least_one(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one of title, description, completed.")


class ListQuerySchema(Schema):
    """Query string of GET /api/{user_id}/tasks."""

    class Meta:
        unknown = EXCLUDE

    status = fields.String(load_default="all", validate=validate.OneOf(STATUSES, error=ONE_OF))
    sort = fields.String(load_default="created", validate=validate.OneOf(SORTS, error=ONE_OF))
    order = fields.String(validate=validate.OneOf(ORDERS, error=ONE_OF), metadata={
        "description": "Default: desc for created and updated (newest first), asc for title.",
    })
    limit = PageLimit(load_default=None, validate=validate.Range(1, PAGE_LIMIT_MAX, error=LIMIT_MESSAGE),
                      error_messages={"invalid": LIMIT_MESSAGE}, metadata={
        "description": "Page size, 1-1000: at most this many tasks, and a Link header with rel=\"next\" "
                       "while more follow. Without limit and cursor, the whole list.",
    })
    cursor = fields.String(load_default=None, error_messages={"invalid": CURSOR_MESSAGE}, validate=[
        validate.Length(max=CURSOR_MAX, error=CURSOR_MESSAGE), validate.Regexp(CURSOR_PATTERN, error=CURSOR_MESSAGE),
    ], metadata={
        "description": "Opaque: copy it from the Link rel=\"next\" of the previous page, with the same status, "
                       "sort and order. Without limit, the page size is the one the cursor was made with.",
    })

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._defaults = self._load_args({})

    def _load_args(self, args):
        values = self.load(args)
        values.setdefault("order", DEFAULT_ORDER[values["sort"]])
        return values

    def load_args(self, args):
        """Validated arguments with the sort's default order filled in."""
        if not args:  # the common request: no parameters, so the defaults, without a schema pass
            return dict(self._defaults)
        return self._load_args(args)


SYNC_LIMIT_DEFAULT = 500
SYNC_WAIT_MAX = 25
SYNC_LIMIT_MESSAGE = f"must be a whole number from 1 to {PAGE_LIMIT_MAX}."
SYNC_WAIT_MESSAGE = f"must be a whole number of seconds from 0 to {SYNC_WAIT_MAX}."
SYNC_TOKEN_DOC = "^[A-Za-z0-9_-]{76}$"  # sync.py's token: 57 bytes in base64url without padding


class ChangesQuerySchema(Schema):
    """Query string of GET /api/{user_id}/tasks/changes."""

    class Meta:
        unknown = EXCLUDE

    since = fields.String(load_default=None, metadata={
        "pattern": SYNC_TOKEN_DOC,
        "description": "Opaque: the next of the previous answer. Without it, a snapshot of every task.",
    })
    limit = PageLimit(load_default=SYNC_LIMIT_DEFAULT, validate=validate.Range(1, PAGE_LIMIT_MAX,
                      error=SYNC_LIMIT_MESSAGE), error_messages={"invalid": SYNC_LIMIT_MESSAGE}, metadata={
        "description": f"At most this many changes and deletions in one answer (default {SYNC_LIMIT_DEFAULT}); "
                       "has_more says whether more follow.",
    })
    wait = PageLimit(load_default=0, validate=validate.Range(0, SYNC_WAIT_MAX, error=SYNC_WAIT_MESSAGE),
                     error_messages={"invalid": SYNC_WAIT_MESSAGE}, metadata={
        "description": "Long-poll: while nothing has changed, hold the answer until a change commits or this "
                       "many seconds pass (0-25, default 0).",
    })


class TaskSchema(Schema):
    """A task as the API returns it (shaped by the SQL in sql/queries/tasks.sql)."""

    id = fields.Integer(dump_only=True, metadata={"example": 42})
    user_id = fields.String(dump_only=True, metadata={"example": "alice"})
    title = fields.String(dump_only=True, metadata={"example": "Buy milk"})
    description = fields.String(dump_only=True, allow_none=True)
    completed = fields.Boolean(dump_only=True)
    created_at = fields.DateTime(dump_only=True, metadata={"example": "2026-11-26T13:29:37.123456Z"})
    updated_at = fields.DateTime(dump_only=True, metadata={"example": "2026-11-26T13:29:37.123456Z"})


class ChangesSchema(Schema):
    """An answer of GET /api/{user_id}/tasks/changes."""

    changes = fields.List(fields.Nested(TaskSchema), dump_only=True, metadata={
        "description": "Tasks created or changed after since (or, without since, every task): each once, in its "
                       "current state, in the order the changes committed. Replace the local copy by id."})
    deleted = fields.List(fields.Integer(), dump_only=True, metadata={
        "description": "Ids of tasks deleted after since: remove them locally (an id never seen may appear)."})
    next = fields.String(dump_only=True, metadata={
        "description": "The token to send as since next time (the same one when nothing changed).",
        "example": "AZ3f6cOlT2dNAAAAAAAAAAZ__________wAAAAAAAAAGAAZhup_GajnhrbQsIW0DMOiRXwAVFAlo"})
    has_more = fields.Boolean(dump_only=True, metadata={
        "description": "More changes follow: call again at once with since=next."})


class ErrorSchema(Schema):
    """The error envelope of every 4xx and 5xx answer."""

    detail = fields.String(required=True, metadata={"description": "A sentence a frontend can show."})
    error_code = fields.String(required=True, metadata={"example": "VALIDATION_ERROR"})
    field = fields.String(required=True, allow_none=True, metadata={"description": "The invalid field, or null."})
    request_id = fields.String(allow_none=True)


class HealthSchema(Schema):
    """Body of /healthz and /readyz."""

    status = fields.String(required=True, metadata={"example": "ok"})


def check_user_id(value):
    """A user id as the contract allows it, else a ValidationError."""
    if len(value) <= USER_ID_MAX and USER_ID_RE.match(value) and value.isprintable():
        return value  # the common case, in one regex; the checks below name what is wrong
    if not 1 <= len(value) <= USER_ID_MAX:
        raise ValidationError("user_id must be 1 to 128 characters.")
    if any(ch == "/" or ch in WHITESPACE or unicodedata.category(ch) == "Cc" for ch in value):
        raise ValidationError("user_id must not contain whitespace, control characters or '/'.")
    _check_text(value)
    return value


def parse_task_id(value):
    """A task id as an int, or None when it is not a positive integer in bigint range."""
    if not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if 1 <= number <= BIGINT_MAX else None


TASK_CREATE = TaskCreateSchema()
TASK_UPDATE = TaskUpdateSchema()
LIST_QUERY = ListQuerySchema()
CHANGES_QUERY = ChangesQuerySchema()

