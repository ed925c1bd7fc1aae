-- Session engine benchmarks (run by `make bench` from the project root):
--   ingest of 100,000 messages over 10,000 sessions through saveMsgsToLocal
--   (batches of 500, durable), the longest poll(0) meanwhile, getLocalSessions
--   first vs last page of 100,000 sessions, and resident memory per session.
local NIM = require "nim"
local uv = require "luv"

local function now() return uv.hrtime() / 1e9 end   -- seconds, monotonic

local function tmpdir()
  local p = os.tmpname(); os.remove(p); return p .. ".d"
end

local function rss_kb()
  local f = io.open("/proc/self/statm")
  local _, res = f:read("n", "n")
  f:close()
  return res * 4          -- pages of 4 KiB
end

local function wait(nim, cond)
  local t0 = os.time()
  while not cond() do
    nim:poll(50)
    assert(os.time() - t0 < 120, "benchmark timed out")
  end
end

local function open(dir, extra)
  local synced = false
  local o = { account = "me", dataDir = dir, onsyncdone = function() synced = true end }
  for k, v in pairs(extra or {}) do o[k] = v end
  local nim = NIM.getInstance(o)
  wait(nim, function() return synced end)
  return nim
end

local function close(nim)
  local closed = false
  nim:destroy(function() closed = true end)
  wait(nim, function() return closed end)
end

local function report(name, value, unit, target)
  print(("%-58s %12s %-6s %s"):format(name, value, unit, target and ("(target " .. target .. ")") or ""))
end

if arg[1] == "--memory" then
  local before = rss_kb()
  local nim = open(arg[2])
  collectgarbage(); collectgarbage()
  io.write(before, " ", rss_kb(), "\n")
  close(nim)
  os.exit(0)
end

---------------------------------------------------------------- ingest
-- gcstep: the frame loop runs collectgarbage("step", 0) once per frame, as
-- games do; without it a whole Lua GC cycle of the app's heap can land in
-- whichever poll allocates when the debt comes due.
local function ingest(gcstep)
  local dir = tmpdir()
  local updates = 0
  local nim = open(dir, { onupdatesession = function() updates = updates + 1 end })
  local N, SESSIONS, BATCH = 100000, 10000, 500
  local NB = N // BATCH
  local t = 1700000000000
  -- batches are made as they are sent, like an importer reading a file
  local function batch(b)
    local msgs = {}
    for i = 1, BATCH do
      local k = (b - 1) * BATCH + i
      t = t + 1
      msgs[i] = { scene = "p2p", from = "u" .. (k * 7919 % SESSIONS), to = "me", time = t,
                  idServer = "s" .. k, type = "text", text = "message number " .. k }
    end
    return msgs
  end
  local done, sent, inflight = 0, 0, 0
  local maxpoll, polls, durations = 0, 0, {}
  local t0 = now()
  local function on_done(err)
    assert(err == nil, tostring(err))
    done = done + 1
    inflight = inflight - 1
  end
  while done < NB do
    -- a game-like loop: submit while a few batches are in flight, poll(0) each frame
    while sent < NB and inflight < 4 do
      sent = sent + 1
      inflight = inflight + 1
      nim:saveMsgsToLocal { msgs = batch(sent), done = on_done }
    end
    local p0 = now()
    nim:poll(0)
    local dt = now() - p0
    polls = polls + 1
    durations[polls] = dt
    if dt > maxpoll then maxpoll = dt end
    if gcstep then collectgarbage("step", 0) end
    if inflight >= 4 or sent == NB then uv.sleep(0) end
  end
  local elapsed = now() - t0
  local how = gcstep and "frame loop with a GC step per frame" or "default GC, no step per frame"
  print("-- ingest, " .. how)
  report("ingest 100,000 msgs / 10,000 sessions, batches of 500", ("%.0f"):format(N / elapsed), "msg/s", ">= 50000")
  report("  elapsed", ("%.3f"):format(elapsed), "s")
  report("  longest poll(0) during ingest (" .. polls .. " polls)", ("%.3f"):format(maxpoll * 1000), "ms",
    gcstep and "< 2" or nil)
  table.sort(durations)
  report("  poll(0) p99 / p99.9", ("%.3f / %.3f"):format(durations[math.ceil(polls * 0.99)] * 1000,
    durations[math.ceil(polls * 0.999)] * 1000), "ms")
  report("  onupdatesession calls (coalesced per poll)", updates, "")
  local verified
  nim:_request("verify", nil, function(err, r) verified = r end)
  wait(nim, function() return verified ~= nil end)
  assert(#verified.mismatches == 0 and verified.unread == N, "unread does not match the stored messages")
  close(nim)
  os.execute("rm -rf '" .. dir .. "'")
end
ingest(true)
ingest(false)

---------------------------------------------------------------- paging
do
  local dir = tmpdir()
  local nim = open(dir)
  local N = 100000
  local t = 1700000000000
  local pending = 0
  for b = 0, N // 5000 - 1 do
    local msgs = {}
    for i = 1, 5000 do
      local k = b * 5000 + i
      msgs[i] = { scene = "p2p", from = "peer" .. k, to = "me", time = t + (k % 50000),
                  idServer = "p" .. k, text = "hello " .. k }
    end
    pending = pending + 1
    nim:saveMsgsToLocal { msgs = msgs, done = function(err) assert(not err); pending = pending - 1 end }
  end
  wait(nim, function() return pending == 0 end)

  local function page(opts)
    local got
    opts.done = function(err, obj) assert(not err, tostring(err)); got = obj end
    nim:getLocalSessions(opts)
    while not got do nim:poll(100) end
    return got.sessions
  end
  -- the cursor for the last page: the 101st oldest session
  local oldest = page { limit = 101, reverse = true }
  local cursor = oldest[101].id
  -- median and best of rounds, each from the call to its done (the thread
  -- hop, the query, the Lua tables)
  local function time_page(opts, rounds)
    local ts = {}
    for r = 1, rounds do
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      local t0 = now()
      local s = page(o)
      ts[r] = now() - t0
      assert(#s == 100)
    end
    table.sort(ts)
    return ts[rounds // 2 + 1], ts[1]
  end
  time_page({ limit = 100 }, 20)                       -- warm up
  local first, firstbest = time_page({ limit = 100 }, 200)
  local last, lastbest = time_page({ limit = 100, lastSessionId = cursor }, 200)
  local lastpage = page { limit = 100, lastSessionId = cursor }
  assert(lastpage[100].id == oldest[1].id, "the last page ends with the oldest session")
  report("getLocalSessions first page of 100 (of 100,000), median", ("%.3f"):format(first * 1000), "ms", "< 1")
  report("getLocalSessions last page of 100 (of 100,000), median", ("%.3f"):format(last * 1000), "ms", "< 1")
  report("  last / first", ("%.2f"):format(last / first), "x", "<= 2")
  report("  best first / best last", ("%.3f / %.3f"):format(firstbest * 1000, lastbest * 1000), "ms")
  close(nim)

  -- memory: a fresh process opening an instance that loads the 100,000
  -- sessions (resident size after minus before)
  if arg[1] ~= "--child" then
    local p = io.popen("lua5.4 bench/engine_bench.lua --memory '" .. dir .. "'")
    local out = p:read("*a")
    p:close()
    local before, after = out:match("(%d+) (%d+)")
    before, after = tonumber(before), tonumber(after)
    report("resident memory, 100,000 sessions loaded", ("%.1f"):format((after - before) / 1024), "MiB")
    report("  per session", ("%.0f"):format((after - before) * 1024 / N), "bytes")
  end
  os.execute("rm -rf '" .. dir .. "'")
end
