-- wrk script for bench/intake.py: replays pre-signed HTTP requests, each at most once.
--
-- bench/intake.py writes one file per wrk thread, `<prefix>.<thread number>`, holding complete
-- HTTP/1.1 requests, each preceded by a line with its length in bytes. Signing happens in
-- Python beforehand so that wrk, not Lua or Python, sets the pace. A thread that runs out
-- starts over and sets `wrapped`, which tells bench/intake.py to redo the phase with more
-- requests (a repeat would be a redelivery, a different code path).
--
-- done() prints one line, `BENCH_JSON {...}`, with the figures bench/intake.py reads.

local threads = {}
local created = 0

function setup(thread)
  thread:set("tid", created)
  created = created + 1
  table.insert(threads, thread)
end

function init(args)
  queue = {}
  local file = assert(io.open(args[1] .. "." .. tid, "rb"))
  while true do
    local size = file:read("*l")
    if size == nil then break end
    queue[#queue + 1] = file:read(tonumber(size))
  end
  file:close()
  assert(#queue > 0, "no requests for thread " .. tid)
  nxt, wrapped, accepted, other_2xx = 1, 0, 0, 0
end

function request()
  if nxt > #queue then
    nxt, wrapped = 1, 1
  end
  local raw = queue[nxt]
  nxt = nxt + 1
  return raw
end

function response(status, headers, body)
  -- Every accepted delivery is a 200: an effect says so in its body (opened/attached); any
  -- other 2xx answer (duplicate, ignored) is one a new delivery must never get.
  if status >= 200 and status < 300 then
    if body and (string.find(body, '"outcome":%s*"opened"') or string.find(body, '"outcome":%s*"attached"')) then
      accepted = accepted + 1
    else
      other_2xx = other_2xx + 1
    end
  end
end

function done(summary, latency, requests)
  local wrapped_any, accepted_all, other_all = 0, 0, 0
  for _, thread in ipairs(threads) do
    wrapped_any = math.max(wrapped_any, thread:get("wrapped"))
    accepted_all = accepted_all + thread:get("accepted")
    other_all = other_all + thread:get("other_2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"accepted": %d, "other_2xx": %d, "wrapped": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    accepted_all, other_all, wrapped_any))
end
