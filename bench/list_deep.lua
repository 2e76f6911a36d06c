-- A page of 50 from the middle of the big user's list: the URL bench/run.py reached by following
-- rel="next" from the first page (BENCH_DEEP_PAGE), so the cursor is one the service made.
local common = require("common")
local path = common.env("BENCH_DEEP_PAGE")

function request()
   return common.request("GET", path)
end
