-- The request mix of bench/bench_load.py (wrk -s): POST /api/v1/predict 6 in 10, GET /health
-- 3 in 10, a batch of 10 items 1 in 10; done() prints the figures wrk's summary lacks (p95,
-- each kind of socket error) as one JSON line after "LOAD ".
local requests = {}
local json = "application/json"
init = function(args)
  local predict = wrk.format("POST", "/api/v1/predict", {["Content-Type"] = json},
    '{"coin": "bitcoin", "timeframe": "1h", "steps": 7}')
  local items = {}
  for i = 1, 10 do
    items[i] = '{"timeframe": "' .. (i % 2 == 0 and "1d" or "1h") .. '", "steps": 7}'
  end
  local batch = wrk.format("POST", "/api/v1/predict/batch", {["Content-Type"] = json},
    '{"requests": [' .. table.concat(items, ", ") .. ']}')
  local health = wrk.format("GET", "/health")
  requests = {predict, health, predict, predict, health, predict, batch, predict, health, predict}
end
local n = 0
request = function()
  n = n % #requests + 1
  return requests[n]
end
done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'LOAD {"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, '
    .. '"max_ms": %.3f, "connect": %d, "read": %d, "write": %d, "timeout": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(95) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    e.connect, e.read, e.write, e.timeout, e.status))
end
