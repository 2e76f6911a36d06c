-- migration: 0004_task_list_versions
-- A version per user that changes with every committed change to that user's tasks, so the
-- service can keep a user's rendered lists and tell with one primary-key read whether a kept list
-- is still current (todo_service/listcache.py).
-- Each change commits a new random version (gen_random_uuid), so an unchanged version means
-- unchanged tasks; random rather than the transaction id, which repeats after a point-in-time
-- restore, a branch reset or a failover, while the service keeps running.
-- Statement-level triggers with transition tables: one upsert per statement, also for bulk inserts.
-- TRUNCATE forgets every version; the service then reads the lists afresh.

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE TABLE IF NOT EXISTS task_list_versions (
    user_id text PRIMARY KEY,
    version uuid NOT NULL
);

-- Users in ascending order, so one statement touching several users locks their rows in one order.
-- The row of a user stays locked until the writing transaction ends: see sql/README.md.
CREATE OR REPLACE FUNCTION bump_task_list_versions(user_ids text[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO task_list_versions AS v (user_id, version)
    SELECT changed.user_id, gen_random_uuid() AS version
    FROM (SELECT DISTINCT unnest(user_ids) AS user_id) AS changed
    ORDER BY changed.user_id
    ON CONFLICT (user_id) DO UPDATE SET version = excluded.version;
$$;

CREATE OR REPLACE FUNCTION tasks_bump_list_versions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM bump_task_list_versions(ARRAY(SELECT user_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM bump_task_list_versions(ARRAY(SELECT user_id FROM old_rows));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM bump_task_list_versions(ARRAY(SELECT user_id FROM old_rows UNION SELECT user_id FROM new_rows));
    ELSE
        DELETE FROM task_list_versions;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER tasks_list_version_insert
AFTER INSERT ON tasks REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION tasks_bump_list_versions();

CREATE OR REPLACE TRIGGER tasks_list_version_update
AFTER UPDATE ON tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION tasks_bump_list_versions();

CREATE OR REPLACE TRIGGER tasks_list_version_delete
AFTER DELETE ON tasks REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION tasks_bump_list_versions();

CREATE OR REPLACE TRIGGER tasks_list_version_truncate
AFTER TRUNCATE ON tasks
FOR EACH STATEMENT EXECUTE FUNCTION tasks_bump_list_versions();

-- Users whose tasks exist already get a version now.
INSERT INTO task_list_versions (user_id, version)
SELECT owners.user_id, gen_random_uuid() AS version
FROM (SELECT DISTINCT user_id FROM tasks) AS owners
ON CONFLICT (user_id) DO NOTHING;
