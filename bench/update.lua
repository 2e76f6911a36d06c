-- Update a task: PUT /api/{user}/tasks/{id} with a JSON body on a random seeded task.
local common = require("common")
local body = '{"title": "Renamed by the benchmark", "description": "Updated by bench/update.lua"}'

function request()
   return common.request("PUT", common.task_path(common.random_task()), body)
end
