-- The mix: 60% get one, 20% list 100, 10% toggle, 10% create, in a fixed cycle of ten
-- (exact shares even in a short run), each on a random seeded user or task.
local common = require("common")
local prefix = common.env("BENCH_NEW_USER_PREFIX")
local body = '{"title": "Benchmark task", "description": "Created by bench/mix.lua"}'
local cycle = {"get", "get", "list", "get", "toggle", "get", "get", "list", "get", "create"}
local step = 0

function request()
   step = step % #cycle + 1
   local kind = cycle[step]
   if kind == "get" then
      return common.request("GET", common.task_path(common.random_task()))
   elseif kind == "list" then
      return common.request("GET", common.tasks_path((common.random_user())))
   elseif kind == "toggle" then
      return common.request("PATCH", common.task_path(common.random_task()) .. "/complete")
   end
   return common.request("POST", common.tasks_path(prefix .. math.random(1, common.users)), body)
end
