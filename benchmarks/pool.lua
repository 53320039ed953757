-- wrk script for benchmarks/ingest.py: send pre-generated raw HTTP requests, each once.
--
--   wrk -t T -c C -d 10s -s pool.lua http://127.0.0.1:PORT -- POOL_FILE T
--
-- POOL_FILE holds records "<length>\n<raw request bytes>". Thread k (0-based) sends records
-- k+1, k+1+T, k+1+2T, ... so no two threads send the same one; a thread that runs out starts
-- over and counts it in "wrapped" (the receiver then sees duplicates). done() prints one
-- JSON line starting with "WRKJSON " that ingest.py reads.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  stride = tonumber(args[2]) or 1
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local all = {}
  local pos = 1
  local size = #data
  while pos <= size do
    local nl = string.find(data, "\n", pos, true)
    if not nl then break end
    local len = tonumber(string.sub(data, pos, nl - 1))
    all[#all + 1] = string.sub(data, nl + 1, nl + len)
    pos = nl + 1 + len
  end
  data = nil
  reqs = {}
  for i = tid + 1, #all, stride do
    reqs[#reqs + 1] = all[i]
  end
  all = nil
  collectgarbage()
  idx = 0
  sent = 0
  wrapped = 0
  pool = #reqs
end

function request()
  idx = idx + 1
  if idx > pool then
    idx = 1
    wrapped = wrapped + 1
  end
  sent = sent + 1
  return reqs[idx]
end

function done(summary, latency, requests)
  local wraps, pool_total, sent_total = 0, 0, 0
  for _, thread in ipairs(threads) do
    wraps = wraps + (thread:get("wrapped") or 0)
    pool_total = pool_total + (thread:get("pool") or 0)
    sent_total = sent_total + (thread:get("sent") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f, "wrapped": %d, "pool": %d, "sent": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, wraps, pool_total, sent_total))
end
