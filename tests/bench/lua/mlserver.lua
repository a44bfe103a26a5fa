-- The stateless peer (MLServer, KServe v2): every request carries B windows of the last W
-- readings as one FP32 tensor x [B, W, 1]. Arguments (after --): model name, W, B. The
-- windows slide by one reading per request over a few pre-built bodies, as forecast.lua's.
local bodies = {}
local path = "/v2/models/taylor-lstm/infer"
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local model = args[1] or "taylor-lstm"
  local w = tonumber(args[2]) or 512
  local b = tonumber(args[3]) or 1
  path = "/v2/models/" .. model .. "/infer"
  for k = 0, 15 do
    local parts = {}
    for row = 0, b - 1 do
      for i = 1, w do
        local j = k + row + i
        parts[#parts + 1] = string.format("%.2f", 30000 + 5000 * math.sin(j * 2 * math.pi / 48))
      end
    end
    bodies[k + 1] = string.format(
      '{"inputs":[{"name":"x","datatype":"FP32","shape":[%d,%d,1],"data":[%s]}]}',
      b, w, table.concat(parts, ","))
  end
end

function request()
  counter = counter + 1
  return wrk.format("POST", path, headers, bodies[(counter % #bodies) + 1])
end

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
