-- Get one task: GET /api/{user}/tasks/{id} on a random seeded task (also the baseline's requests).
local common = require("common")

function request()
   return common.request("GET", common.task_path(common.random_task()))
end
