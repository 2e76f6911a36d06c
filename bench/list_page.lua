-- The big user's first page of 50: GET /api/{big user}/tasks?limit=50.
local common = require("common")
local path = common.tasks_path(common.env("BENCH_BIG_USER")) .. "?limit=50"

function request()
   return common.request("GET", path)
end
