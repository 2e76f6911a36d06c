-- List one user's 100 tasks: GET /api/{user}/tasks for a random seeded user.
local common = require("common")

function request()
   return common.request("GET", common.tasks_path((common.random_user())))
end
