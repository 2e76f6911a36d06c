-- Writes sent with an Idempotency-Key, and the upkeep of the keys (migration 0006).
-- A keyed write and its stored answer are one statement: the key's row exists exactly when the
-- write committed. A concurrent request with the same key fails on idempotency_keys_pkey, which
-- rolls its own write back; the service then answers it with the stored answer
-- (todo_service/idempotency.py). The outcome column says what happened:
--   written   the write was done now; status, body, location, etag are its answer
--   replayed  the key's live answer for the same request, nothing written
--   reused    the key's live answer is for another request, nothing written
--   expired   the key's answer has expired but is not deleted yet, nothing written
-- and no row at all (toggle only) means that the task is missing or someone else's.

-- name: create_task_once :one
-- Create a task and store its 201 answer under the user's key, unless the key has an answer.
-- The head row takes the change as in create_task (sql/queries/tasks.sql), quota included:
-- outcome 'over_quota' when the user has max_tasks tasks already and the key has no answer.
-- params: user_id, idempotency_key, request_hash, title, description, completed, location_prefix, ttl, max_tasks
-- index: idempotency_keys_pkey and task_list_versions_pkey
WITH previous AS (
    SELECT request_hash, status, body, location, etag, expires_at > now() AS live
    FROM idempotency_keys
    WHERE user_id = %(user_id)s AND idempotency_key = %(idempotency_key)s
),

head AS (
    INSERT INTO task_list_versions AS v (user_id, version, seq, task_count)
    SELECT %(user_id)s, gen_random_uuid() AS version, 1 AS seq, 1 AS task_count
    WHERE NOT EXISTS (SELECT FROM previous)
    ON CONFLICT (user_id) DO UPDATE
        SET version = excluded.version, seq = v.seq + 1, task_count = v.task_count + 1
        WHERE v.task_count < %(max_tasks)s
    RETURNING v.user_id, v.seq
),

created AS (
    INSERT INTO tasks (user_id, title, description, completed, change_seq)
    SELECT head.user_id, %(title)s, %(description)s, %(completed)s, head.seq
    FROM head
    RETURNING
        id, user_id, title, description, completed,
        api_timestamp(created_at) AS created_at, api_timestamp(updated_at) AS updated_at
),

stored AS (
    INSERT INTO idempotency_keys (
        user_id, idempotency_key, request_hash, status, body, location, etag, expires_at
    )
    SELECT
        created.user_id,
        %(idempotency_key)s,
        %(request_hash)s,
        201 AS status,
        convert_to(row_to_json(created)::text, 'UTF8') AS body,
        %(location_prefix)s || created.id AS location,
        created.updated_at AS etag,
        now() + %(ttl)s::interval AS expires_at
    FROM created
    RETURNING status, body, location, etag
)

SELECT 'written' AS outcome, stored.status, stored.body, stored.location, stored.etag
FROM stored
UNION ALL
SELECT
    CASE
        WHEN NOT previous.live THEN 'expired'
        WHEN previous.request_hash = %(request_hash)s THEN 'replayed'
        ELSE 'reused'
    END AS outcome,
    previous.status, previous.body, previous.location, previous.etag
FROM previous
UNION ALL
SELECT 'over_quota' AS outcome, null AS status, null AS body, null AS location, null AS etag
WHERE NOT EXISTS (SELECT FROM previous) AND NOT EXISTS (SELECT FROM stored);

-- name: toggle_task_once :one
-- Flip a task's completed flag and store its 200 answer under the user's key, unless the key has
-- an answer. etags: the If-Match tags (the task's updated_at as api_timestamp), NULL for none or
-- '*'; the flip happens only when the current tag is one of them, compared on the row `target`
-- locks, as in toggle_task_if_match. Outcome 'precondition_failed': the task exists but its tag
-- matched none.
-- params: user_id, id, idempotency_key, request_hash, etags, ttl
-- index: tasks_pkey and idempotency_keys_pkey
WITH previous AS (
    SELECT request_hash, status, body, location, etag, expires_at > now() AS live
    FROM idempotency_keys
    WHERE user_id = %(user_id)s AND idempotency_key = %(idempotency_key)s
),

target AS (
    SELECT
        id,
        (%(etags)s::text[] IS null OR api_timestamp(updated_at) = any(%(etags)s::text[])) AS matched
    FROM tasks
    WHERE
        id = %(id)s
        AND user_id = %(user_id)s
        AND NOT EXISTS (SELECT FROM previous)
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
),

stored AS (
    INSERT INTO idempotency_keys (
        user_id, idempotency_key, request_hash, status, body, location, etag, expires_at
    )
    SELECT
        toggled.user_id,
        %(idempotency_key)s,
        %(request_hash)s,
        200 AS status,
        convert_to(row_to_json(toggled)::text, 'UTF8') AS body,
        null AS location,
        toggled.updated_at AS etag,
        now() + %(ttl)s::interval AS expires_at
    FROM toggled
    RETURNING status, body, location, etag
)

SELECT 'written' AS outcome, stored.status, stored.body, stored.location, stored.etag
FROM stored
UNION ALL
SELECT
    CASE
        WHEN NOT previous.live THEN 'expired'
        WHEN previous.request_hash = %(request_hash)s THEN 'replayed'
        ELSE 'reused'
    END AS outcome,
    previous.status, previous.body, previous.location, previous.etag
FROM previous
UNION ALL
SELECT 'precondition_failed' AS outcome, null AS status, null AS body, null AS location, null AS etag
FROM target
WHERE NOT target.matched;

-- name: get_idempotency_answer :one
-- The stored answer of a user's key, read after a concurrent request with the same key committed
-- first; live is false once it has expired.
-- params: user_id, idempotency_key
-- index: idempotency_keys_pkey
SELECT request_hash, status, body, location, etag, expires_at > now() AS live
FROM idempotency_keys
WHERE user_id = %(user_id)s AND idempotency_key = %(idempotency_key)s;

-- name: delete_expired_idempotency_key :execrows
-- Forget one of a user's keys whose answer has expired, so the key can carry a new request.
-- params: user_id, idempotency_key
-- index: idempotency_keys_pkey
DELETE FROM idempotency_keys
WHERE
    user_id = %(user_id)s
    AND idempotency_key = %(idempotency_key)s
    AND expires_at <= now();

-- name: purge_idempotency_keys :execrows
-- Delete up to batch expired keys of any user, oldest first; rows a concurrent purge holds are
-- skipped, not waited for. The service runs it now and then (todo_service/idempotency.py).
-- The rows are found through the expiry index, locked, then deleted by their ctid (a TID scan,
-- whatever the planner guesses for the batch size; a locked row keeps its ctid).
-- params: batch
-- index: idempotency_keys_expires_idx
DELETE FROM idempotency_keys
WHERE ctid = any(array(
    SELECT expired.ctid
    FROM idempotency_keys AS expired
    WHERE expired.expires_at <= now()
    ORDER BY expired.expires_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
));
