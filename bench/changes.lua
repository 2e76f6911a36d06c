-- A small delta of the change feed: GET /api/{user}/tasks/changes?since=TOKEN on a random seeded user,
-- TOKEN being the one bench/feed.py took just before 5 of that user's tasks changed, so every answer
-- holds those 5 tasks. BENCH_SINCE_TOKENS is a file of "user token" lines.
local common = require("common")
local since = {}
for line in io.lines(common.env("BENCH_SINCE_TOKENS")) do
   local user, token = line:match("^(%S+) (%S+)$")
   since[user] = token
end

function request()
   local user = common.random_user()
   return common.request("GET", common.tasks_path(user) .. "/changes?since=" .. since[user])
end
