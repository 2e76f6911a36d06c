-- Delete tasks: DELETE /api/{user}/tasks/{id} over a pool of ids created just for this scenario.
-- A second DELETE of an id answers 404, so each id is sent once: thread i of n takes
-- FIRST+i, FIRST+i+n, ... and stops at LAST; the runner starts the next run after `cursor`.
local common = require("common")
local user = common.env("BENCH_DELETE_USER")
local first = common.env_number("BENCH_DELETE_FIRST")
local last = common.env_number("BENCH_DELETE_LAST")
local stride = common.env_number("BENCH_WRK_THREADS")
local next_id

function request()
   next_id = next_id or first + thread_index
   local id = next_id
   next_id = next_id + stride
   if id > last then
      -- Out of ids: flag it (the runner fails the run) and stop this thread with a harmless request.
      exhausted = true
      wrk.thread:stop()
      return common.request("GET", "/healthz")
   end
   cursor = id
   return common.request("DELETE", common.task_path(user, id))
end
