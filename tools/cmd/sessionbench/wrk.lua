-- sessionbench's wrk script. Arguments (after wrk's "--"): the path, the
-- workload (counter, read or new) and a file of "name=value" cookies, one a
-- line, each request naming one at random ("" for none). Every response is
-- checked: status 200 and "Current count: N" with N at least 2 (counter,
-- every session was seeded at 1), at least 1 (read), or 1 with a Set-Cookie
-- (new). done prints one line that sessionbench parses.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  workload = args[2]
  bad, first = 0, ""
  math.randomseed(os.time() * 1000 + id)
  reqs = {}
  if args[3] ~= nil and args[3] ~= "" then
    for line in io.lines(args[3]) do
      if line ~= "" then
        reqs[#reqs + 1] = wrk.format("GET", args[1], { Cookie = line })
      end
    end
  end
  if #reqs == 0 then
    reqs[1] = wrk.format("GET", args[1])
  end
  nreqs = #reqs
end

function request()
  return reqs[math.random(nreqs)]
end

function response(status, headers, body)
  local n = tonumber(string.match(body or "", "^Current count: (%d+)$"))
  local ok
  if status ~= 200 or n == nil then
    ok = false
  elseif workload == "new" then
    ok = n == 1 and headers["Set-Cookie"] ~= nil
  elseif workload == "counter" then
    ok = n >= 2
  else
    ok = n >= 1
  end
  if not ok then
    bad = bad + 1
    if first == "" then
      first = "status " .. status .. ": " .. string.sub(body or "", 1, 200)
    end
  end
end

function done(summary, latency, requests)
  local nbad, firstbad = 0, ""
  for _, t in ipairs(threads) do
    nbad = nbad + t:get("bad")
    if firstbad == "" then
      firstbad = t:get("first")
    end
  end
  local e = summary.errors
  io.write(string.format(
    "sessionbench-result requests=%d duration_us=%d connect=%d read=%d write=%d timeout=%d status=%d bad=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status, nbad,
    latency:percentile(50), latency:percentile(99)))
  io.write("sessionbench-first-bad " .. string.gsub(firstbad, "%c", " ") .. "\n")
end
