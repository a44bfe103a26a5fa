-- Stateless forecast: every request carries the last W readings of B series.
-- Arguments (after --): model name, W, form ("observations": one object per reading, or
-- "columns": {"timestamps": [...], "values": [...]}), B (series per request, default 1).
-- The window slides by one reading per request over a few pre-built bodies, so the work
-- matches a window service's (parse W readings, run T=W).
local bodies = {}
local path = "/v1/models/taylor-lstm/forecast"
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

local function series(k, w, form)
  local times, values, parts = {}, {}, {}
  for i = 1, w do
    local t = 1700000000 + (k + i) * 1800
    local v = 30000 + 5000 * math.sin((k + i) * 2 * math.pi / 48)
    if form == "columns" then
      times[i] = string.format("%d", t)
      values[i] = string.format("%.2f", v)
    else
      parts[i] = string.format('{"timestamp":%d,"value":%.2f}', t, v)
    end
  end
  if form == "columns" then
    return '{"timestamps":[' .. table.concat(times, ",") .. '],"values":[' ..
      table.concat(values, ",") .. ']}'
  end
  return '{"observations":[' .. table.concat(parts, ",") .. ']}'
end

function init(args)
  local model = args[1] or "taylor-lstm"
  local w = tonumber(args[2]) or 512
  local form = args[3] or "observations"
  local b = tonumber(args[4]) or 1
  path = "/v1/models/" .. model .. "/forecast"
  for k = 0, 15 do
    local all = {}
    for row = 0, b - 1 do
      all[row + 1] = series(k + row, w, form)
    end
    bodies[k + 1] = '{"series":[' .. table.concat(all, ",") .. ']}'
  end
end

function request()
  counter = counter + 1
  return wrk.format("POST", path, headers, bodies[(counter % #bodies) + 1])
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
