-- Statements for developer tools only (`make sql-plan`, the plan test); the API never runs them.

-- name: seed_plan_dataset :execrows
-- The large data set for plan checks: total rows, every tenth for big_user, the rest spread over
-- 9,000 users in insertion order (as real traffic interleaves them), a quarter completed; each
-- row's change_seq is its number, as if every task had been written by a statement of its own.
-- params: big_user, total
-- index: none (bulk insert)
INSERT INTO tasks (user_id, title, description, completed, created_at, updated_at, change_seq)
SELECT
    CASE WHEN mod(g, 10) = 0 THEN %(big_user)s ELSE 'user-' || mod(g, 9000) END AS user_id,
    md5(g::text) AS title,
    CASE WHEN mod(g, 3) = 0 THEN 'details ' || g END AS description,
    mod(g, 4) = 0 AS completed,
    timestamptz '2026-01-01' + g * interval '1 second' AS created_at,
    timestamptz '2026-01-01' + g * interval '1 second' + mod(g, 977) * interval '1 minute' AS updated_at,
    g AS change_seq
FROM generate_series(1, %(total)s::integer) AS g;

-- name: seed_plan_tombstones :execrows
-- Tombstones for the plan data set: total deletions of big_user, at seqs above every task's
-- change_seq, deleted over the last total seconds, so all are within any retention.
-- params: big_user, total, after_seq
-- index: none (bulk insert)
INSERT INTO task_tombstones (user_id, seq, task_id, deleted_at)
SELECT
    %(big_user)s AS user_id,
    %(after_seq)s::bigint + g AS seq,
    %(after_seq)s::bigint + g AS task_id,
    now() - (%(total)s::integer - g) * interval '1 second' AS deleted_at
FROM generate_series(1, %(total)s::integer) AS g;

-- name: seed_plan_idempotency_keys :execrows
-- Idempotency keys for the plan data set: total keys over the same 9,000 users, their expiry
-- spread over the day before and the day after now, so about half are due for the purge.
-- params: total
-- index: none (bulk insert)
INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash, status, body, location, etag, expires_at)
SELECT
    'user-' || mod(g, 9000) AS user_id,
    md5(g::text) AS idempotency_key,
    sha256(g::text::bytea) AS request_hash,
    201 AS status,
    convert_to('{"id":' || g || '}', 'UTF8') AS body,
    '/api/user-' || mod(g, 9000) || '/tasks/' || g AS location,
    '2026-01-01T00:00:00.000000Z' AS etag,
    now() - interval '1 day' + mod(g * 7919, 172800) * interval '1 second' AS expires_at
FROM generate_series(1, %(total)s::integer) AS g;
