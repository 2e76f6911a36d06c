-- Statements on the tasks table. Conventions: sql/README.md.
-- Every statement filters by user_id, so a caller only ever reads or changes its own rows.
-- Tasks come back in the API's shape: timestamps already formatted by api_timestamp (0003).
-- ORDER BY names tasks.created_at / tasks.updated_at: the bare names would mean the formatted text
-- columns of the select list, which no index can serve.

-- name: create_task :one
-- Insert a task for a user and return it as stored (defaults and timestamps included).
-- params: user_id, title, description, completed
-- index: none (insert; no lookup)
INSERT INTO tasks (user_id, title, description, completed)
VALUES (%(user_id)s, %(title)s, %(description)s, %(completed)s)
RETURNING
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at;

-- name: get_task :one
-- Fetch one task of one user; no row when it is missing or belongs to someone else.
-- params: user_id, id
-- index: tasks_pkey
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE id = %(id)s AND user_id = %(user_id)s;

-- name: update_task :one
-- Partial update: a NULL title or completed keeps the stored value; description is replaced
-- (also by NULL) only when set_description is true. The trigger moves updated_at forward.
-- params: user_id, id, title, description, set_description, completed
-- index: tasks_pkey
UPDATE tasks
SET
    title = coalesce(%(title)s::text, title),
    description = CASE WHEN %(set_description)s::boolean THEN %(description)s::text ELSE description END,
    completed = coalesce(%(completed)s::boolean, completed)
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at;

-- name: toggle_task :one
-- Flip completed atomically in one statement; concurrent toggles serialise on the row lock.
-- params: user_id, id
-- index: tasks_pkey
UPDATE tasks
SET completed = NOT completed
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at;

-- name: delete_task :execrows
-- Delete one task of one user; 0 rows when it is missing or belongs to someone else.
-- params: user_id, id
-- index: tasks_pkey
DELETE FROM tasks
WHERE id = %(id)s AND user_id = %(user_id)s;

-- Conditional writes (If-Match). etags: the client's strong tags; a task's tag is its updated_at
-- as api_timestamp formats it, which moves forward with every change. The UPDATE or DELETE itself
-- checks the tag on the row it locks, so no change can slip in between check and write; under
-- concurrent writers of one tag exactly one succeeds. The select around it tells "no such task"
-- (no row) from "tag did not match" (a row of NULLs, or deleted = false): it reads the task as it
-- was when the statement started.

-- name: update_task_if_match :one
-- update_task, only when the task's current tag is one of etags.
-- No row: no such task; id NULL: the task exists but its tag matched none.
-- params: user_id, id, title, description, set_description, completed, etags
-- index: tasks_pkey
WITH changed AS (
    UPDATE tasks
    SET
        title = coalesce(%(title)s::text, title),
        description = CASE WHEN %(set_description)s::boolean THEN %(description)s::text ELSE description END,
        completed = coalesce(%(completed)s::boolean, completed)
    WHERE
        id = %(id)s
        AND user_id = %(user_id)s
        AND api_timestamp(updated_at) = any(%(etags)s::text[])
    RETURNING
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
)

SELECT
    changed.id, changed.user_id, changed.title, changed.description, changed.completed,
    changed.created_at, changed.updated_at
FROM (
    SELECT id FROM tasks
    WHERE id = %(id)s AND user_id = %(user_id)s
) AS current_task
LEFT JOIN changed ON current_task.id = changed.id;

-- name: toggle_task_if_match :one
-- toggle_task, only when the task's current tag is one of etags.
-- No row: no such task; id NULL: the task exists but its tag matched none.
-- params: user_id, id, etags
-- index: tasks_pkey
WITH toggled AS (
    UPDATE tasks
    SET completed = NOT completed
    WHERE
        id = %(id)s
        AND user_id = %(user_id)s
        AND api_timestamp(updated_at) = any(%(etags)s::text[])
    RETURNING
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
)

SELECT
    toggled.id, toggled.user_id, toggled.title, toggled.description, toggled.completed,
    toggled.created_at, toggled.updated_at
FROM (
    SELECT id FROM tasks
    WHERE id = %(id)s AND user_id = %(user_id)s
) AS current_task
LEFT JOIN toggled ON current_task.id = toggled.id;

-- name: delete_task_if_match :one
-- delete_task, only when the task's current tag is one of etags.
-- No row: no such task; deleted false: the task exists but its tag matched none.
-- params: user_id, id, etags
-- index: tasks_pkey
WITH removed AS (
    DELETE FROM tasks
    WHERE
        id = %(id)s
        AND user_id = %(user_id)s
        AND api_timestamp(updated_at) = any(%(etags)s::text[])
    RETURNING id
)

SELECT removed.id IS NOT null AS deleted
FROM (
    SELECT id FROM tasks
    WHERE id = %(id)s AND user_id = %(user_id)s
) AS current_task
LEFT JOIN removed ON current_task.id = removed.id;

-- name: seed_tasks :execrows
-- Demo data for `make seed`: count tasks for one user, every third one completed.
-- params: user_id, count
-- index: none (insert; no lookup)
INSERT INTO tasks (user_id, title, description, completed)
SELECT
    %(user_id)s,
    'Task ' || g AS title,
    CASE WHEN mod(g, 2) = 0 THEN 'Demo task number ' || g END AS description,
    mod(g, 3) = 0 AS completed
FROM generate_series(1, %(count)s::integer) AS g;

-- name: list_tasks_all_created_asc :many
-- List all tasks of a user, by creation time ascending; ties by id.
-- params: user_id
-- index: tasks_user_created_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s
ORDER BY tasks.created_at ASC, id ASC;

-- name: list_tasks_all_created_desc :many
-- List all tasks of a user, by creation time descending; ties by id.
-- params: user_id
-- index: tasks_user_created_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s
ORDER BY tasks.created_at DESC, id DESC;

-- name: list_tasks_all_updated_asc :many
-- List all tasks of a user, by last change ascending; ties by id.
-- params: user_id
-- index: tasks_user_updated_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s
ORDER BY tasks.updated_at ASC, id ASC;

-- name: list_tasks_all_updated_desc :many
-- List all tasks of a user, by last change descending; ties by id.
-- params: user_id
-- index: tasks_user_updated_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s
ORDER BY tasks.updated_at DESC, id DESC;

-- name: list_tasks_all_title_asc :many
-- List all tasks of a user, by title, case-insensitive, ascending; ties by id.
-- params: user_id
-- index: tasks_user_title_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s
ORDER BY lower(title) ASC, id ASC;

-- name: list_tasks_all_title_desc :many
-- List all tasks of a user, by title, case-insensitive, descending; ties by id.
-- params: user_id
-- index: tasks_user_title_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s
ORDER BY lower(title) DESC, id DESC;

-- name: list_tasks_by_status_created_asc :many
-- List a user's tasks with the given completed flag, by creation time ascending; ties by id.
-- params: user_id, completed
-- index: tasks_user_status_created_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s AND completed = %(completed)s
ORDER BY tasks.created_at ASC, id ASC;

-- name: list_tasks_by_status_created_desc :many
-- List a user's tasks with the given completed flag, by creation time descending; ties by id.
-- params: user_id, completed
-- index: tasks_user_status_created_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s AND completed = %(completed)s
ORDER BY tasks.created_at DESC, id DESC;

-- name: list_tasks_by_status_updated_asc :many
-- List a user's tasks with the given completed flag, by last change ascending; ties by id.
-- params: user_id, completed
-- index: tasks_user_status_updated_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s AND completed = %(completed)s
ORDER BY tasks.updated_at ASC, id ASC;

-- name: list_tasks_by_status_updated_desc :many
-- List a user's tasks with the given completed flag, by last change descending; ties by id.
-- params: user_id, completed
-- index: tasks_user_status_updated_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s AND completed = %(completed)s
ORDER BY tasks.updated_at DESC, id DESC;

-- name: list_tasks_by_status_title_asc :many
-- List a user's tasks with the given completed flag, by title, case-insensitive, ascending; ties by id.
-- params: user_id, completed
-- index: tasks_user_status_title_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s AND completed = %(completed)s
ORDER BY lower(title) ASC, id ASC;

-- name: list_tasks_by_status_title_desc :many
-- List a user's tasks with the given completed flag, by title, case-insensitive, descending; ties by id.
-- params: user_id, completed
-- index: tasks_user_status_title_idx
SELECT
    id, user_id, title, description, completed,
    api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
FROM tasks
WHERE user_id = %(user_id)s AND completed = %(completed)s
ORDER BY lower(title) DESC, id DESC;

-- name: get_list_version :one
-- The version of a user's task lists (migration 0004): it changes with every committed change to
-- the user's tasks. No row: no version known, so nothing may be served from a kept list.
-- params: user_id
-- index: task_list_versions_pkey
SELECT version
FROM task_list_versions
WHERE user_id = %(user_id)s;
