-- Toggle a task: PATCH /api/{user}/tasks/{id}/complete on a random seeded task.
local common = require("common")

function request()
   return common.request("PATCH", common.task_path(common.random_task()) .. "/complete")
end
