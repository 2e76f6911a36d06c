-- migration: 0003_api_timestamp
-- The API's timestamp format, made where the value lives: RFC 3339 in UTC with microseconds and a
-- trailing Z (2026-11-26T13:29:37.123456Z), whatever the session's TimeZone or DateStyle.
-- Formatting here instead of in Python halves the service's CPU time per listed task
-- (docs/performance.md). A plain SQL function, so the planner inlines it.

SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

CREATE OR REPLACE FUNCTION api_timestamp(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
