-- The paged lists: GET /api/{user_id}/tasks?limit=N[&cursor=...] (todo_service/paging.py).
-- Keyset paging, never OFFSET: a page starts right after the boundary task that its cursor names,
-- by that task's sort key and id, so each page reads only its own rows, in the order of the sort's
-- index, and page 500 costs what page 1 costs. Every page is in exactly the order of the unpaged
-- list with the same status, sort and order (sql/queries/tasks.sql), ties broken by id.
-- row_limit is the page size plus one: the extra row only says that more tasks follow.
-- after_key is the boundary task's sort key as the API returned it: created_at or updated_at in
-- the API's RFC 3339 form (exact to the microsecond), or the title, compared as lower(title), the
-- expression of the title indexes, so the database's own collation decides, as in the full list.
-- Each page reads the user's head row with it and skips its tasks when the version is known, as
-- the unpaged lists do (the top of sql/queries/tasks.sql).
-- ORDER BY names tasks.created_at / tasks.updated_at: the bare names are the formatted output columns.

-- name: first_page_all_created_asc :many
-- The first page of all tasks of a user, by creation time ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, row_limit, known_versions
-- index: tasks_user_created_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.created_at ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_all_created_desc :many
-- The first page of all tasks of a user, by creation time descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, row_limit, known_versions
-- index: tasks_user_created_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.created_at DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_all_updated_asc :many
-- The first page of all tasks of a user, by last change ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, row_limit, known_versions
-- index: tasks_user_updated_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.updated_at ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_all_updated_desc :many
-- The first page of all tasks of a user, by last change descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, row_limit, known_versions
-- index: tasks_user_updated_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.updated_at DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_all_title_asc :many
-- The first page of all tasks of a user, by title, case-insensitive, ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, row_limit, known_versions
-- index: tasks_user_title_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY lower(title) ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_all_title_desc :many
-- The first page of all tasks of a user, by title, case-insensitive, descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, row_limit, known_versions
-- index: tasks_user_title_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY lower(title) DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_by_status_created_asc :many
-- The first page of a user's tasks with the given completed flag, by creation time ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, row_limit, known_versions
-- index: tasks_user_status_created_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s AND completed = %(completed)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.created_at ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_by_status_created_desc :many
-- The first page of a user's tasks with the given completed flag, by creation time descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, row_limit, known_versions
-- index: tasks_user_status_created_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s AND completed = %(completed)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.created_at DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_by_status_updated_asc :many
-- The first page of a user's tasks with the given completed flag, by last change ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, row_limit, known_versions
-- index: tasks_user_status_updated_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s AND completed = %(completed)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.updated_at ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_by_status_updated_desc :many
-- The first page of a user's tasks with the given completed flag, by last change descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, row_limit, known_versions
-- index: tasks_user_status_updated_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s AND completed = %(completed)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.updated_at DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_by_status_title_asc :many
-- The first page of a user's tasks with the given completed flag, by title, case-insensitive, ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, row_limit, known_versions
-- index: tasks_user_status_title_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s AND completed = %(completed)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY lower(title) ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: first_page_by_status_title_desc :many
-- The first page of a user's tasks with the given completed flag, by title, case-insensitive, descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, row_limit, known_versions
-- index: tasks_user_status_title_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s AND completed = %(completed)s
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY lower(title) DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_all_created_asc :many
-- The page of all tasks of a user
-- after the boundary task (after_key, after_id), by creation time ascending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, after_key, after_id, row_limit, known_versions
-- index: tasks_user_created_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND (tasks.created_at, id) > (%(after_key)s::timestamptz, %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.created_at ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_all_created_desc :many
-- The page of all tasks of a user
-- after the boundary task (after_key, after_id), by creation time descending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, after_key, after_id, row_limit, known_versions
-- index: tasks_user_created_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND (tasks.created_at, id) < (%(after_key)s::timestamptz, %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.created_at DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_all_updated_asc :many
-- The page of all tasks of a user
-- after the boundary task (after_key, after_id), by last change ascending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, after_key, after_id, row_limit, known_versions
-- index: tasks_user_updated_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND (tasks.updated_at, id) > (%(after_key)s::timestamptz, %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.updated_at ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_all_updated_desc :many
-- The page of all tasks of a user
-- after the boundary task (after_key, after_id), by last change descending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, after_key, after_id, row_limit, known_versions
-- index: tasks_user_updated_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND (tasks.updated_at, id) < (%(after_key)s::timestamptz, %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.updated_at DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_all_title_asc :many
-- The page of all tasks of a user
-- after the boundary task (after_key, after_id), by title, case-insensitive, ascending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, after_key, after_id, row_limit, known_versions
-- index: tasks_user_title_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND (lower(title), id) > (lower(%(after_key)s::text), %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY lower(title) ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_all_title_desc :many
-- The page of all tasks of a user
-- after the boundary task (after_key, after_id), by title, case-insensitive, descending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, after_key, after_id, row_limit, known_versions
-- index: tasks_user_title_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND (lower(title), id) < (lower(%(after_key)s::text), %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY lower(title) DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_by_status_created_asc :many
-- The page of a user's tasks with the given completed flag
-- after the boundary task (after_key, after_id), by creation time ascending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, after_key, after_id, row_limit, known_versions
-- index: tasks_user_status_created_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND completed = %(completed)s
        AND (tasks.created_at, id) > (%(after_key)s::timestamptz, %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.created_at ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_by_status_created_desc :many
-- The page of a user's tasks with the given completed flag
-- after the boundary task (after_key, after_id), by creation time descending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, after_key, after_id, row_limit, known_versions
-- index: tasks_user_status_created_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND completed = %(completed)s
        AND (tasks.created_at, id) < (%(after_key)s::timestamptz, %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.created_at DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_by_status_updated_asc :many
-- The page of a user's tasks with the given completed flag
-- after the boundary task (after_key, after_id), by last change ascending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, after_key, after_id, row_limit, known_versions
-- index: tasks_user_status_updated_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND completed = %(completed)s
        AND (tasks.updated_at, id) > (%(after_key)s::timestamptz, %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.updated_at ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_by_status_updated_desc :many
-- The page of a user's tasks with the given completed flag
-- after the boundary task (after_key, after_id), by last change descending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, after_key, after_id, row_limit, known_versions
-- index: tasks_user_status_updated_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND completed = %(completed)s
        AND (tasks.updated_at, id) < (%(after_key)s::timestamptz, %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY tasks.updated_at DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_by_status_title_asc :many
-- The page of a user's tasks with the given completed flag
-- after the boundary task (after_key, after_id), by title, case-insensitive, ascending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, after_key, after_id, row_limit, known_versions
-- index: tasks_user_status_title_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND completed = %(completed)s
        AND (lower(title), id) > (lower(%(after_key)s::text), %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY lower(title) ASC, id ASC
    LIMIT %(row_limit)s
) AS task ON true;

-- name: next_page_by_status_title_desc :many
-- The page of a user's tasks with the given completed flag
-- after the boundary task (after_key, after_id), by title, case-insensitive, descending;
-- ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, after_key, after_id, row_limit, known_versions
-- index: tasks_user_status_title_idx and task_list_versions_pkey (the head row)
SELECT
    task.id, task.user_id, task.title, task.description, task.completed, task.created_at, task.updated_at,
    head.version AS list_version
FROM (SELECT %(user_id)s::text AS user_id) AS asked
LEFT JOIN task_list_versions AS head ON asked.user_id = head.user_id
LEFT JOIN LATERAL (
    SELECT
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
    FROM tasks
    WHERE
        user_id = %(user_id)s
        AND completed = %(completed)s
        AND (lower(title), id) < (lower(%(after_key)s::text), %(after_id)s::bigint)
        AND NOT coalesce(head.version = any(%(known_versions)s::uuid[]), false)
    ORDER BY lower(title) DESC, id DESC
    LIMIT %(row_limit)s
) AS task ON true;
