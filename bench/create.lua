-- Create a task: POST /api/{user}/tasks with a JSON body. The users are not the listed ones,
-- so the list scenarios keep reading exactly the seeded 100 tasks whatever runs first.
local common = require("common")
local prefix = common.env("BENCH_NEW_USER_PREFIX")
local body = '{"title": "Benchmark task", "description": "Created by bench/create.lua"}'

function request()
   return common.request("POST", common.tasks_path(prefix .. math.random(1, common.users)), body)
end
