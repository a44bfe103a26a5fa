-- One observation per request over N pre-created streams, round robin, timestamps strictly
-- increasing per stream (round r of stream s carries base + r * 1800).
-- Arguments (after --): streams, stream id prefix, base epoch seconds.
local streams, prefix, base = 1000, "s", 1700000000
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  streams = tonumber(args[1]) or streams
  prefix = args[2] or prefix
  base = tonumber(args[3]) or base
end

function request()
  local s = counter % streams
  local round = math.floor(counter / streams)
  counter = counter + 1
  local body = string.format(
    '{"observations":[{"timestamp":%d,"value":%d.5}]}', base + round * 1800, 30000 + s % 997)
  return wrk.format("POST", "/v1/streams/" .. prefix .. s .. "/observations", headers, body)
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
