-- The big user's pending tasks by title: GET /api/{big user}/tasks?status=pending&sort=title.
local common = require("common")
local path = common.tasks_path(common.env("BENCH_BIG_USER")) .. "?status=pending&sort=title"

function request()
   return common.request("GET", path)
end
