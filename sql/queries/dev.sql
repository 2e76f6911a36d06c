-- Statements for developer tools only (`make sql-plan`, the plan test); the API never runs them.

-- name: seed_plan_dataset :execrows
-- The large data set for plan checks: total rows, every tenth for big_user, the rest spread over
-- 9,000 users in insertion order (as real traffic interleaves them), a quarter completed.
-- params: big_user, total
-- index: none (bulk insert)
INSERT INTO tasks (user_id, title, description, completed, created_at, updated_at)
SELECT
    CASE WHEN mod(g, 10) = 0 THEN %(big_user)s ELSE 'user-' || mod(g, 9000) END AS user_id,
    md5(g::text) AS title,
    CASE WHEN mod(g, 3) = 0 THEN 'details ' || g END AS description,
    mod(g, 4) = 0 AS completed,
    timestamptz '2026-01-01' + g * interval '1 second' AS created_at,
    timestamptz '2026-01-01' + g * interval '1 second' + mod(g, 977) * interval '1 minute' AS updated_at
FROM generate_series(1, %(total)s::integer) AS g;
