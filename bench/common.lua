-- Shared by every scenario script (loaded with require; the runner puts bench/ on LUA_PATH).
-- It owns wrk's setup/init/response/done hooks: each script only defines request().
-- Parameters come from the environment the runner sets (BENCH_*), so one script serves any seed.

local M = {}

-- wrk runs every thread in its own Lua state; setup() runs in the main state, so the main state
-- keeps the thread objects and done() reads each thread's counters back with thread:get().
local threads = {}

function M.env(name)
   local value = os.getenv(name)
   if value == nil or value == "" then
      error(name .. " is not set; run the scenarios through bench/run.py")
   end
   return value
end

function M.env_number(name)
   return assert(tonumber(M.env(name)), name .. " is not a number")
end

-- The seeded data set: USERS users named PREFIX1..PREFIXn with TASKS tasks each, ids contiguous
-- from FIRST_ID in user order (bench/data.py checks that after seeding).
M.user_prefix = os.getenv("BENCH_USER_PREFIX")
M.users = tonumber(os.getenv("BENCH_USERS"))
M.tasks_per_user = tonumber(os.getenv("BENCH_TASKS_PER_USER"))
M.first_id = tonumber(os.getenv("BENCH_FIRST_ID"))

-- Statuses a script counts as answered besides 2xx (list_poll.lua: 304), and a hook a script may
-- set to see every answer (list_poll.lua keeps each user's last tag).
M.also_ok = {}
M.on_response = nil

function M.random_user()
   local number = math.random(1, M.users)
   return M.user_prefix .. number, number
end

-- A random seeded task: the user and one of that user's ids.
function M.random_task()
   local user, number = M.random_user()
   local id = M.first_id + (number - 1) * M.tasks_per_user + math.random(0, M.tasks_per_user - 1)
   return user, id
end

function M.tasks_path(user)
   return "/api/" .. user .. "/tasks"
end

function M.task_path(user, id)
   return M.tasks_path(user) .. "/" .. id
end

-- With BENCH_TOKENS (a file of "user token" lines, auth scenarios only) each request carries the
-- bearer token of the user its path names, as a signed-in browser's requests do.
local tokens = nil
local tokens_file = os.getenv("BENCH_TOKENS")
if tokens_file ~= nil and tokens_file ~= "" then
   tokens = {}
   for line in io.lines(tokens_file) do
      local user, token = line:match("^(%S+) (%S+)$")
      tokens[user] = "Bearer " .. token
   end
end

-- One HTTP request, with `headers` if given; counts it, so done() can report how many requests
-- were generated.
function M.request(method, path, body, headers)
   issued = issued + 1
   headers = headers or {}
   if tokens ~= nil then headers["Authorization"] = tokens[path:match("^/api/([^/]+)/")] end
   if body ~= nil then
      headers["Content-Type"] = "application/json"
      return wrk.format(method, path, headers, body)
   end
   return wrk.format(method, path, headers)
end

function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

function init(args)
   -- Globals, not locals: thread:get() can only read globals.
   issued, failures, statuses, first_failure, cursor, exhausted = 0, 0, {}, "", 0, false
   answers = {}  -- every status seen, failure or not
   -- LuaJIT seeds every state alike; without this each thread would send the same sequence.
   math.randomseed(os.time() + 7919 * thread_index)
end

-- Every answer is checked: anything but 2xx (or a status the script allows) is a failure (wrk itself
-- only counts >= 400).
function response(status, headers, body)
   answers[status] = (answers[status] or 0) + 1
   if M.on_response ~= nil then
      M.on_response(status, headers, body)
   end
   if (status < 200 or status > 299) and not M.also_ok[status] then
      failures = failures + 1
      statuses[status] = (statuses[status] or 0) + 1
      if first_failure == "" then
         first_failure = status .. " " .. string.sub(body or "", 1, 300)
      end
   end
end

local function encode(value)
   local kind = type(value)
   if kind == "table" and #value > 0 then
      local parts = {}
      for _, item in ipairs(value) do table.insert(parts, encode(item)) end
      return "[" .. table.concat(parts, ",") .. "]"
   elseif kind == "table" then
      local parts = {}
      for key, item in pairs(value) do
         table.insert(parts, encode(tostring(key)) .. ":" .. encode(item))
      end
      return "{" .. table.concat(parts, ",") .. "}"
   elseif kind == "string" then
      local escaped = value:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end)
      return '"' .. escaped .. '"'
   elseif kind == "number" then
      return string.format("%.17g", value)
   end
   return tostring(value)
end

-- One JSON line for bench/wrk.py: rates, percentiles in ms, and every kind of error.
function done(summary, latency, requests)
   local failures_total, issued_total, by_status, samples, max_cursor, ran_out = 0, 0, {}, {}, 0, false
   local answered = {}
   for _, thread in ipairs(threads) do
      failures_total = failures_total + thread:get("failures")
      issued_total = issued_total + thread:get("issued")
      max_cursor = math.max(max_cursor, thread:get("cursor"))
      ran_out = ran_out or thread:get("exhausted")
      for status, count in pairs(thread:get("statuses")) do
         by_status[tostring(status)] = (by_status[tostring(status)] or 0) + count
      end
      for status, count in pairs(thread:get("answers")) do
         answered[tostring(status)] = (answered[tostring(status)] or 0) + count
      end
      local sample = thread:get("first_failure")
      if sample ~= "" then table.insert(samples, sample) end
   end
   local seconds = summary.duration / 1e6
   local function ms(value) return value / 1000 end
   local result = {
      requests = summary.requests,
      duration_s = seconds,
      rps = summary.requests / seconds,
      bytes = summary.bytes,
      issued = issued_total,
      cursor = max_cursor,
      exhausted = ran_out,
      latency_ms = {
         mean = ms(latency.mean), max = ms(latency.max),
         p50 = ms(latency:percentile(50)), p90 = ms(latency:percentile(90)),
         p95 = ms(latency:percentile(95)), p99 = ms(latency:percentile(99)),
      },
      errors = {
         non2xx = failures_total,
         connect = summary.errors.connect, read = summary.errors.read,
         write = summary.errors.write, timeout = summary.errors.timeout,
         wrk_status = summary.errors.status,
      },
      statuses = by_status,
      answers = answered,
      failure_samples = samples,
   }
   io.write("BENCH_RESULT ", encode(result), "\n")
end

return M
