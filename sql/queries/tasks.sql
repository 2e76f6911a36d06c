-- Statements on the tasks table (and, for writes, the user's head row). Conventions: sql/README.md.
-- Every statement filters by user_id, so a caller only ever reads or changes its own rows.
-- Tasks come back in the API's shape: timestamps already formatted by api_timestamp (0003).
-- ORDER BY names tasks.created_at / tasks.updated_at: the bare names would mean the formatted text
-- columns of the select list, which no index can serve.

-- Lists (and the pages of sql/queries/task_pages.sql) read the user's head row in the same statement:
-- every row carries list_version, the user's list version (the key of the kept lists and of list
-- ETags), so a list read afresh is one round trip, and the rows are exactly those of that version
-- (one statement, one snapshot). known_versions are the versions whose rendering the caller holds
-- (a kept list, the client's If-None-Match): when the version is one of them, the tasks are not
-- read at all and one row comes back, the tasks' columns null. No head row: list_version is null
-- and the tasks are read. An empty list is also one row of nulls. The tasks come out in the order
-- of the inner ORDER BY: the outer side of the lateral join is a single row, so the nested loop
-- emits the inner rows as the index scan yields them (tests/test_sql_plans.py checks the order).

-- Writes. Every write statement also takes the change in the user's head row (task_list_versions,
-- migration 0007): a new random version, the next seq, and for creates and deletes the task count.
-- That row's lock is held until the write commits, so a user's writes commit in seq order, which
-- is what the change feed relies on; a statement that finds no task to change leaves the row
-- alone. Lock order, the same in every statement so that none can deadlock another: the task's
-- row first (the `target` CTE), then the head row. updated_at moves strictly forward on every
-- update, even within one clock tick: a task's tag (ETag) is its updated_at.

-- name: create_task :one
-- Insert a task for a user and return it as stored, unless the user has max_tasks tasks
-- already: then no row, nothing written (the quota, checked under the head row's lock).
-- params: user_id, title, description, completed, max_tasks
-- index: task_list_versions_pkey
WITH head AS (
    INSERT INTO task_list_versions AS v (user_id, version, seq, task_count)
    VALUES (%(user_id)s, gen_random_uuid(), 1, 1)
    ON CONFLICT (user_id) DO UPDATE
        SET version = excluded.version, seq = v.seq + 1, task_count = v.task_count + 1
        WHERE v.task_count < %(max_tasks)s
    RETURNING v.user_id, v.seq
)

INSERT INTO tasks (user_id, title, description, completed, change_seq)
SELECT head.user_id, %(title)s, %(description)s, %(completed)s, head.seq
FROM head
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
-- (also by NULL) only when set_description is true. No row: no such task.
-- params: user_id, id, title, description, set_description, completed
-- index: tasks_pkey
WITH target AS (
    SELECT id FROM tasks
    WHERE id = %(id)s AND user_id = %(user_id)s
    FOR UPDATE
),

head AS (
    INSERT INTO task_list_versions AS v (user_id, version, seq)
    SELECT %(user_id)s, gen_random_uuid() AS version, 1 AS seq FROM target
    ON CONFLICT (user_id) DO UPDATE SET version = excluded.version, seq = v.seq + 1
    RETURNING v.seq
)

UPDATE tasks
SET
    title = coalesce(%(title)s::text, tasks.title),
    description = CASE WHEN %(set_description)s::boolean THEN %(description)s::text ELSE tasks.description END,
    completed = coalesce(%(completed)s::boolean, tasks.completed),
    updated_at = greatest(clock_timestamp(), tasks.updated_at + interval '1 microsecond'),
    change_seq = head.seq
FROM head
WHERE tasks.id = %(id)s AND tasks.user_id = %(user_id)s
RETURNING
    tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed,
    api_timestamp(tasks.created_at) AS created_at, api_timestamp(tasks.updated_at) AS updated_at;

-- name: toggle_task :one
-- Flip completed atomically in one statement; concurrent toggles serialise on the row lock.
-- No row: no such task.
-- params: user_id, id
-- index: tasks_pkey
WITH target AS (
    SELECT id FROM tasks
    WHERE id = %(id)s AND user_id = %(user_id)s
    FOR UPDATE
),

head AS (
    INSERT INTO task_list_versions AS v (user_id, version, seq)
    SELECT %(user_id)s, gen_random_uuid() AS version, 1 AS seq FROM target
    ON CONFLICT (user_id) DO UPDATE SET version = excluded.version, seq = v.seq + 1
    RETURNING v.seq
)

UPDATE tasks
SET
    completed = NOT tasks.completed,
    updated_at = greatest(clock_timestamp(), tasks.updated_at + interval '1 microsecond'),
    change_seq = head.seq
FROM head
WHERE tasks.id = %(id)s AND tasks.user_id = %(user_id)s
RETURNING
    tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed,
    api_timestamp(tasks.created_at) AS created_at, api_timestamp(tasks.updated_at) AS updated_at;

-- name: delete_task :execrows
-- Delete one task of one user and leave its tombstone for the change feed; 0 rows when it is
-- missing or belongs to someone else.
-- params: user_id, id
-- index: tasks_pkey
WITH target AS (
    SELECT id FROM tasks
    WHERE id = %(id)s AND user_id = %(user_id)s
    FOR UPDATE
),

head AS (
    INSERT INTO task_list_versions AS v (user_id, version, seq)
    SELECT %(user_id)s, gen_random_uuid() AS version, 1 AS seq FROM target
    ON CONFLICT (user_id) DO UPDATE
        SET version = excluded.version, seq = v.seq + 1, task_count = greatest(v.task_count - 1, 0)
    RETURNING v.seq
),

removed AS (
    DELETE FROM tasks
    USING head
    WHERE tasks.id = %(id)s AND tasks.user_id = %(user_id)s
    RETURNING tasks.id, head.seq
)

INSERT INTO task_tombstones (user_id, seq, task_id)
SELECT %(user_id)s, removed.seq, removed.id
FROM removed;

-- Conditional writes (If-Match). etags: the client's strong tags; a task's tag is its updated_at
-- as api_timestamp formats it. The `target` CTE locks the task's row and then compares its tag on
-- the row as it is after any concurrent writer committed (READ COMMITTED re-reads a row it had to
-- wait for), so no change can slip in between check and write, and under concurrent writers of
-- one tag exactly one succeeds. No target row: no such task (404); a row that did not match:
-- the tag matched none (412), and nothing was written, not even the head row.

-- name: update_task_if_match :one
-- update_task, only when the task's current tag is one of etags.
-- No row: no such task; id NULL: the task exists but its tag matched none.
-- params: user_id, id, title, description, set_description, completed, etags
-- index: tasks_pkey
WITH target AS (
    SELECT
        id,
        api_timestamp(updated_at) = any(%(etags)s::text[]) AS matched
    FROM tasks
    WHERE id = %(id)s AND user_id = %(user_id)s
    FOR UPDATE
),

head AS (
    INSERT INTO task_list_versions AS v (user_id, version, seq)
    SELECT %(user_id)s, gen_random_uuid() AS version, 1 AS seq FROM target
    WHERE target.matched
    ON CONFLICT (user_id) DO UPDATE SET version = excluded.version, seq = v.seq + 1
    RETURNING v.seq
),

changed AS (
    UPDATE tasks
    SET
        title = coalesce(%(title)s::text, tasks.title),
        description = CASE WHEN %(set_description)s::boolean THEN %(description)s::text ELSE tasks.description END,
        completed = coalesce(%(completed)s::boolean, tasks.completed),
        updated_at = greatest(clock_timestamp(), tasks.updated_at + interval '1 microsecond'),
        change_seq = head.seq
    FROM head
    WHERE tasks.id = %(id)s AND tasks.user_id = %(user_id)s
    RETURNING
        tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed,
        api_timestamp(tasks.created_at) AS created_at, api_timestamp(tasks.updated_at) AS updated_at
)

SELECT
    changed.id, changed.user_id, changed.title, changed.description, changed.completed,
    changed.created_at, changed.updated_at
FROM target
LEFT JOIN changed ON target.id = changed.id;

-- name: toggle_task_if_match :one
-- toggle_task, only when the task's current tag is one of etags.
-- No row: no such task; id NULL: the task exists but its tag matched none.
-- params: user_id, id, etags
-- index: tasks_pkey
WITH target AS (
    SELECT
        id,
        api_timestamp(updated_at) = any(%(etags)s::text[]) AS matched
    FROM tasks
    WHERE id = %(id)s AND user_id = %(user_id)s
    FOR UPDATE
),

head AS (
    INSERT INTO task_list_versions AS v (user_id, version, seq)
    SELECT %(user_id)s, gen_random_uuid() AS version, 1 AS seq FROM target
    WHERE target.matched
    ON CONFLICT (user_id) DO UPDATE SET version = excluded.version, seq = v.seq + 1
    RETURNING v.seq
),

toggled AS (
    UPDATE tasks
    SET
        completed = NOT tasks.completed,
        updated_at = greatest(clock_timestamp(), tasks.updated_at + interval '1 microsecond'),
        change_seq = head.seq
    FROM head
    WHERE tasks.id = %(id)s AND tasks.user_id = %(user_id)s
    RETURNING
        tasks.id, tasks.user_id, tasks.title, tasks.description, tasks.completed,
        api_timestamp(tasks.created_at) AS created_at, api_timestamp(tasks.updated_at) AS updated_at
)

SELECT
    toggled.id, toggled.user_id, toggled.title, toggled.description, toggled.completed,
    toggled.created_at, toggled.updated_at
FROM target
LEFT JOIN toggled ON target.id = toggled.id;

-- name: delete_task_if_match :one
-- delete_task, only when the task's current tag is one of etags.
-- No row: no such task; deleted false: the task exists but its tag matched none.
-- params: user_id, id, etags
-- index: tasks_pkey
WITH target AS (
    SELECT
        id,
        api_timestamp(updated_at) = any(%(etags)s::text[]) AS matched
    FROM tasks
    WHERE id = %(id)s AND user_id = %(user_id)s
    FOR UPDATE
),

head AS (
    INSERT INTO task_list_versions AS v (user_id, version, seq)
    SELECT %(user_id)s, gen_random_uuid() AS version, 1 AS seq FROM target
    WHERE target.matched
    ON CONFLICT (user_id) DO UPDATE
        SET version = excluded.version, seq = v.seq + 1, task_count = greatest(v.task_count - 1, 0)
    RETURNING v.seq
),

removed AS (
    DELETE FROM tasks
    USING head
    WHERE tasks.id = %(id)s AND tasks.user_id = %(user_id)s
    RETURNING tasks.id, head.seq
),

buried AS (
    INSERT INTO task_tombstones (user_id, seq, task_id)
    SELECT %(user_id)s, removed.seq, removed.id
    FROM removed
    RETURNING task_id
)

SELECT buried.task_id IS NOT null AS deleted
FROM target
LEFT JOIN buried ON target.id = buried.task_id;

-- name: seed_tasks :execrows
-- Demo data for `make seed`: count tasks for one user, every third one completed; one change of
-- the head row for all of them (they share one seq). Not bound by the quota.
-- params: user_id, count
-- index: task_list_versions_pkey
WITH head AS (
    INSERT INTO task_list_versions AS v (user_id, version, seq, task_count)
    VALUES (%(user_id)s, gen_random_uuid(), 1, %(count)s::integer)
    ON CONFLICT (user_id) DO UPDATE
        SET version = excluded.version, seq = v.seq + 1, task_count = v.task_count + excluded.task_count
    RETURNING v.user_id, v.seq
)

INSERT INTO tasks (user_id, title, description, completed, change_seq)
SELECT
    head.user_id,
    'Task ' || g AS title,
    CASE WHEN mod(g, 2) = 0 THEN 'Demo task number ' || g END AS description,
    mod(g, 3) = 0 AS completed,
    head.seq AS change_seq
FROM head, generate_series(1, %(count)s::integer) AS g;

-- name: list_tasks_all_created_asc :many
-- List all tasks of a user, by creation time ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, known_versions
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
) AS task ON true;

-- name: list_tasks_all_created_desc :many
-- List all tasks of a user, by creation time descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, known_versions
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
) AS task ON true;

-- name: list_tasks_all_updated_asc :many
-- List all tasks of a user, by last change ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, known_versions
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
) AS task ON true;

-- name: list_tasks_all_updated_desc :many
-- List all tasks of a user, by last change descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, known_versions
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
) AS task ON true;

-- name: list_tasks_all_title_asc :many
-- List all tasks of a user, by title, case-insensitive, ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, known_versions
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
) AS task ON true;

-- name: list_tasks_all_title_desc :many
-- List all tasks of a user, by title, case-insensitive, descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, known_versions
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
) AS task ON true;

-- name: list_tasks_by_status_created_asc :many
-- List a user's tasks with the given completed flag, by creation time ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, known_versions
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
) AS task ON true;

-- name: list_tasks_by_status_created_desc :many
-- List a user's tasks with the given completed flag, by creation time descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, known_versions
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
) AS task ON true;

-- name: list_tasks_by_status_updated_asc :many
-- List a user's tasks with the given completed flag, by last change ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, known_versions
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
) AS task ON true;

-- name: list_tasks_by_status_updated_desc :many
-- List a user's tasks with the given completed flag, by last change descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, known_versions
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
) AS task ON true;

-- name: list_tasks_by_status_title_asc :many
-- List a user's tasks with the given completed flag, by title, case-insensitive, ascending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, known_versions
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
) AS task ON true;

-- name: list_tasks_by_status_title_desc :many
-- List a user's tasks with the given completed flag, by title, case-insensitive, descending; ties by id.
-- With the user's list version (the head row), in one statement; see the top of this file.
-- params: user_id, completed, known_versions
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
) AS task ON true;

-- name: get_list_version :one
-- The version of a user's task lists (migration 0004): it changes with every committed change to
-- the user's tasks. No row: no version known, so nothing may be served from a kept list.
-- params: user_id
-- index: task_list_versions_pkey
SELECT version
FROM task_list_versions
WHERE user_id = %(user_id)s;
