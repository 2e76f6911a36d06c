-- Create a task with an Idempotency-Key, a new key per request: POST /api/{user}/tasks, as create.lua
-- (same users, same body), so the two compare the cost of keeping each answer with its key.
local common = require("common")
local prefix = common.env("BENCH_NEW_USER_PREFIX")
local body = '{"title": "Benchmark task", "description": "Created by bench/create_idem.lua"}'
local run = string.format("%x", os.time())

function request()
   local key = string.format("bench-%s-%d-%d-%d", run, thread_index, issued, math.random(1, 1000000000))
   return common.request("POST", common.tasks_path(prefix .. math.random(1, common.users)), body,
                         {["Idempotency-Key"] = key})
end
