-- Poll a user's 100 tasks as a client does: GET /api/{user}/tasks with If-None-Match holding the
-- tag of the previous answer for that user, so an unchanged list answers 304 (counted as answered).
-- The first poll of each user by each wrk thread has no tag yet and gets the list (200).
local common = require("common")
local tags = {}
common.also_ok[304] = true

function common.on_response(status, headers, body)
   if status == 200 then
      local user = string.match(body, '"user_id":"([^"]+)"')
      if user ~= nil then
         tags[user] = headers["ETag"]
      end
   end
end

function request()
   local user = common.random_user()
   local tag = tags[user]
   if tag == nil then
      return common.request("GET", common.tasks_path(user))
   end
   return common.request("GET", common.tasks_path(user), nil, {["If-None-Match"] = tag})
end
