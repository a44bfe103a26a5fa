-- Stateless forecast: every request carries the last W readings of a series.
-- Arguments (after --): model name, W. The window slides by one reading per request over a
-- few pre-built bodies, so the work matches a window service's (parse W readings, run T=W).
local bodies = {}
local path = "/v1/models/taylor-lstm/forecast"
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local model = args[1] or "taylor-lstm"
  local w = tonumber(args[2]) or 512
  path = "/v1/models/" .. model .. "/forecast"
  for k = 0, 15 do
    local parts = {}
    for i = 1, w do
      local t = 1700000000 + (k + i) * 1800
      local v = 30000 + 5000 * math.sin((k + i) * 2 * math.pi / 48)
      parts[i] = string.format('{"timestamp":%d,"value":%.2f}', t, v)
    end
    bodies[k + 1] = '{"series":[{"observations":[' .. table.concat(parts, ",") .. ']}]}'
  end
end

function request()
  counter = counter + 1
  return wrk.format("POST", path, headers, bodies[(counter % #bodies) + 1])
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
