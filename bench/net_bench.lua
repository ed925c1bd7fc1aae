-- Network benchmarks against the real nim-server on loopback (run by
-- `make bench`; NIM_SERVER names the server binary):
--   1. login sync of an account with 10,000 sessions and 200,000 stored
--      messages (190,000 already received = roaming, 10,000 offline; 50 of
--      the sessions hold 160,000 of them), so a fresh device gets 44,850:
--      the latest 100 of each session and every offline one; from
--      getInstance to onsyncdone; then the same login again (cursors);
--   1b. the worst round trip of another user while a device logs in with a
--      backlog of 8,000 offline messages of 16 KB, beside the same user's
--      worst round trip with the server idle;
--   2. message round trip (sendText -> the peer's onupdatesession), 1,000
--      messages one after another, median and p99, over ws:// and then over
--      wss:// (TLS, a throwaway CA) beside it;
--   3. the longest poll(0) of a 60 Hz receiver while another process sends
--      5,000 messages/s to it;
--   4. a login with the default 600,000 PBKDF2 iterations beside one with
--      1,000 (getInstance to onconnect), and another user's worst round trip
--      while 8 such logins are derived (on the server's credentials thread).
local NIM = require "nim"
local S = require "nim.server"
local uv = require "luv"

local function now() return uv.hrtime() / 1e9 end

local function report(name, value, unit, target, note)
  print(("%-58s %12s %-6s %s"):format(name, value, unit,
    target and ("(target " .. target .. ")") or note and ("(" .. note .. ")") or ""))
end

local function pump(list, cond, limit, what)
  local t0 = os.time()
  while not cond() do
    for _, n in ipairs(list) do n:poll(#list == 1 and 5 or 0) end
    if os.time() - t0 > (limit or 120) then error("benchmark timed out: " .. (what or "?")) end
  end
end

local function close(nim)
  local closed = false
  nim:destroy(function() closed = true end)
  pump({ nim }, function() return closed end, 30, "destroy")
end

local function tmpdir() local p = os.tmpname(); os.remove(p); return p .. ".d" end

---------------------------------------------------------------- sender process
if arg[1] == "--sender" then
  -- --sender URL RATE SECONDS: sends RATE messages/s to bob for SECONDS.
  local url, rate, secs = arg[2], tonumber(arg[3]), tonumber(arg[4])
  local synced, acked, failed = false, 0, 0
  local nim = NIM.getInstance { account = "carol", token = "t", server = url, db = false,
    onsyncdone = function() synced = true end }
  pump({ nim }, function() return synced end, 30, "sender sync")
  io.write("ready\n"); io.flush()
  local total, sent, t0 = rate * secs, 0, now()
  local function done(err) if err then failed = failed + 1 else acked = acked + 1 end end
  while sent < total do
    local due = math.min(total, math.floor((now() - t0) * rate))
    while sent < due do
      sent = sent + 1
      nim:sendText { scene = "p2p", to = "bob", text = "load " .. sent, done = done }
    end
    nim:poll(1)
  end
  pump({ nim }, function() return acked + failed == total end, 60, "sender acks")
  io.write(("sent %d acked %d failed %d in %.2f s\n"):format(total, acked, failed, now() - t0))
  close(nim)
  os.exit(0)
end

---------------------------------------------------------------- backlog process
if arg[1] == "--backlog" then
  -- --backlog URL FILE: logs in as bob (a fresh device); writes the sync's
  -- time to FILE (renamed into place, so a reader never sees it half written).
  local synced, t0 = false, now()
  local nim = NIM.getInstance { account = "bob", token = "t", server = arg[2], db = false,
    onsyncdone = function() synced = true end }
  io.write("start\n"); io.flush()
  pump({ nim }, function() return synced end, 300, "backlog sync")
  local f = assert(io.open(arg[3] .. ".tmp", "w"))
  f:write(("synced %.2f\n"):format(now() - t0))
  f:close()
  assert(os.rename(arg[3] .. ".tmp", arg[3]))
  close(nim)
  os.exit(0)
end

local bin = S.find_binary()

-- A stopped server's database (schema made by a start) with `rows` messages
-- made by SQL: select is the SELECT over c(i) giving the msgs columns
-- (id, id_client, scene, from_account, from_device, to_target, time, type,
-- text); inbox is the INSERT INTO inbox that follows. Returns the path.
local function bench_db(accounts, rows, select, inbox)
  local srv0 = S.start { accounts = accounts, kdfIterations = 1000, maxSendRate = 1000000 }
  srv0:stop()
  local sql = table.concat({ "PRAGMA journal_mode = WAL;", "BEGIN;",
    ("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d)"):format(rows),
    "INSERT INTO msgs(id, id_client, scene, from_account, from_device, to_target, time, type, text)",
    select .. ";", inbox .. ";", "COMMIT;" }, "\n")
  local f = assert(io.open(srv0.db .. ".sql", "w")); f:write(sql); f:close()
  assert(os.execute(("sqlite3 '%s' < '%s' > /dev/null"):format(srv0.db, srv0.db .. ".sql")),
    "sqlite3 (the command-line tool) is needed to build the benchmark database")
  os.remove(srv0.db .. ".sql")
  return srv0.db
end

local function remove_db(db)
  for _, s in ipairs { "", "-wal", "-shm", ".log" } do os.remove(db .. s) end
end

---------------------------------------------------------------- 1. login sync
do
  local SESSIONS, MSGS, OFFLINE = 10000, 200000, 10000
  local db = bench_db({ alice = "t" }, MSGS,
    ("SELECT i, 'b' || i, 'p2p', 'u' || (CASE WHEN i <= 160000 THEN i %% 50 ELSE i %% %d END), 'dev', " ..
     "'alice', 1700000000000 + i, 'text', 'benchmark message number ' || i FROM c"):format(SESSIONS),
    ("INSERT INTO inbox(account, msg_id, session_id, delivered) SELECT 'alice', id, " ..
     "'p2p-' || from_account, CASE WHEN id > %d THEN 0 ELSE 1 END FROM msgs"):format(MSGS - OFFLINE))
  local srv = S.start { db = db, kdfIterations = 1000, maxSendRate = 1000000 }

  local function login(dir)
    local synced, nsessions, nmsgs = false, 0, 0
    local t0 = now()
    local t_conn
    local nim = NIM.getInstance { account = "alice", token = "t", server = srv.url, dataDir = dir,
      onconnect = function() t_conn = t_conn or now() end,
      onsessions = function(l) nsessions = #l end,
      onsyncdone = function() synced = true end }
    pump({ nim }, function() return synced end, 120, "login sync")
    local dt = now() - t0
    if os.getenv("NIM_BENCH_VERBOSE") then
      io.stderr:write(("  (login reply after %.3f s)\n"):format((t_conn or t0) - t0))
    end
    local got
    nim:getLocalMsgs { limit = 1000000, done = function(_, obj) got = #obj.msgs end }
    pump({ nim }, function() return got ~= nil end, 60, "count")
    nmsgs = got
    close(nim)
    return dt, nsessions, nmsgs
  end
  local dir = tmpdir()
  local dt, ns, nm = login(dir)
  report(("login sync: %d sessions, %d msgs stored on the device"):format(ns, nm), ("%.2f"):format(dt), "s", "<= 1 s")
  local dt2 = login(dir)
  report("second login of the same device (cursors, nothing new)", ("%.3f"):format(dt2), "s")
  os.execute("rm -rf '" .. dir .. "'")
  srv:cleanup()
  remove_db(db)
end

---------------------------------------------------------------- 1b. backlog login
do
  -- 16 KB: the protocol's largest text is 16 KiB (a client refuses more)
  local BACKLOG, SIZE = 8000, 16000
  local db = bench_db({ bob = "t", carol = "t" }, BACKLOG,
    ("SELECT i, 'k' || i, 'p2p', 'carol', 'dev', 'bob', 1700000000000 + i, 'text', " ..
     "substr(hex(zeroblob(%d)), 1, %d) FROM c"):format(SIZE // 2 + 1, SIZE),
    "INSERT INTO inbox(account, msg_id, session_id, delivered) SELECT 'bob', id, 'p2p-carol', 0 FROM msgs")
  local srv = S.start { db = db, kdfIterations = 1000, maxSendRate = 1000000 }
  local synced = false
  local c = NIM.getInstance { account = "carol", token = "t", server = srv.url, db = false,
    onsyncdone = function() synced = true end }
  pump({ c }, function() return synced end, 30, "carol sync")
  -- carol's worst round trip over n server requests
  local function worst_rtt(n, stop)
    local worst, count = 0, 0
    while (n and count < n) or (stop and not stop()) do
      local t0, answered = now(), false
      c:getStickTopSessions { done = function() answered = true end }
      while not answered do c:poll(1) end
      worst = math.max(worst, now() - t0)
      count = count + 1
    end
    return worst * 1000, count
  end
  local idle = worst_rtt(200)
  -- the child writes its sync time to a file when done; carol measures
  -- until it is there
  local mark = os.tmpname()
  os.remove(mark)
  local p = io.popen(("NIM_SERVER='%s' lua5.4 bench/net_bench.lua --backlog %s %s"):format(bin, srv.url, mark), "r")
  assert(p:read("*l") == "start")
  local done_line
  local busy, n = worst_rtt(nil, function()
    local mf = io.open(mark)
    done_line = mf and mf:read("*l")
    if mf then mf:close() end
    return done_line ~= nil
  end)
  p:close()
  os.remove(mark)
  report(("backlog login (%d x 16 KB offline): another user's worst round trip"):format(BACKLOG),
    ("%.1f"):format(busy), "ms", "< 100 ms")
  report("the same user's worst round trip, server idle (floor)", ("%.1f"):format(idle), "ms")
  report("ratio, during the backlog login / idle", ("%.1f"):format(busy / math.max(idle, 0.001)), "x")
  report(("backlog login: the device's sync (%d round trips of carol meanwhile)"):format(n),
    (done_line or "?"):match("[%d.]+") or "?", "s")
  close(c)
  srv:cleanup()
  remove_db(db)
end

---------------------------------------------------------------- 2. round trip
-- The median and p99 of N sendText -> peer onupdatesession round trips on srv.
local function round_trips(srv, N)
  local function open(account)
    local synced, seen = false, {}
    local o = { account = account, token = "t", server = srv.url, db = false, tlsCAFile = srv.caFile,
      onsyncdone = function() synced = true end,
      onupdatesession = function(s) if s.lastMsg and s.lastMsg.idClient then seen[s.lastMsg.idClient] = now() end end }
    local nim = NIM.getInstance(o)
    pump({ nim }, function() return synced end, 30, account .. " sync")
    return nim, seen
  end
  local a = open("alice")
  local b, seen = open("bob")
  local rtt = {}
  for i = 1, N do
    local id = "rt-" .. i
    local t0 = now()
    a:sendText { scene = "p2p", to = "bob", text = "ping " .. i, idClient = id }
    while not seen[id] do a:poll(0); b:poll(0) end
    rtt[i] = (seen[id] - t0) * 1000
  end
  table.sort(rtt)
  close(a); close(b)
  return rtt[N // 2], rtt[math.ceil(N * 0.99)]
end

local srv = S.start { accounts = { alice = "t", bob = "t", carol = "t" }, kdfIterations = 1000, maxSendRate = 1000000 }
do
  local N = 1000
  local med, p99 = round_trips(srv, N)
  report(("round trip sendText -> peer onupdatesession (%d msgs): median"):format(N), ("%.3f"):format(med), "ms")
  report("round trip: p99", ("%.3f"):format(p99), "ms")
  local tls = S.start { accounts = { alice = "t", bob = "t" }, tls = true, kdfIterations = 1000, maxSendRate = 1000000 }
  local tmed, tp99 = round_trips(tls, N)
  tls:cleanup()
  report("the same over wss:// (TLS): median", ("%.3f"):format(tmed), "ms", nil, ("%.2fx plain"):format(tmed / med))
  report("over wss:// (TLS): p99", ("%.3f"):format(tp99), "ms", nil, ("%.2fx plain"):format(tp99 / p99))
end

---------------------------------------------------------------- 3. poll(0) under load
do
  local RATE, SECS = 5000, 3
  local received, first_at, last_at = 0, nil, nil
  local synced = false
  local b = NIM.getInstance { account = "bob", token = "t", server = srv.url, db = tmpdir() .. "/bob.db",
    onsyncdone = function() synced = true end,
    onmsg = function()
      received = received + 1
      last_at = now()
      first_at = first_at or last_at
    end,
    onupdatesession = function() end }
  pump({ b }, function() return synced end, 30, "receiver sync")
  local p = io.popen(("NIM_SERVER='%s' lua5.4 bench/net_bench.lua --sender %s %d %d"):format(bin, srv.url, RATE, SECS), "r")
  assert(p:read("*l") == "ready")
  local longest, polls, times = 0, 0, {}
  local total = RATE * SECS
  local t_end = now() + SECS + 30
  while received < total and now() < t_end do
    local t0 = uv.hrtime()
    b:poll(0)
    local dt = (uv.hrtime() - t0) / 1e6
    collectgarbage("step", 0)                     -- the app's per-frame GC step, as games do
    polls = polls + 1
    times[polls] = dt
    if dt > longest then longest = dt end
    uv.sleep(16)                                  -- a 60 Hz frame
  end
  local line = p:read("*l")
  p:close()
  table.sort(times)
  report(("receiver at 60 Hz, %d msgs/s arriving: longest poll(0)"):format(RATE), ("%.3f"):format(longest), "ms")
  report("receiver poll(0): p99", ("%.3f"):format(times[math.ceil(#times * 0.99)]), "ms")
  report(("messages received of %d (%s)"):format(total, line or "?"), received, "")
  report("arrival rate at the receiver (first to last onmsg)",
    ("%.0f"):format(received / math.max(1e-9, (last_at or 0) - (first_at or 0))), "msg/s")
  close(b)
end
srv:cleanup()

---------------------------------------------------------------- 4. credentials
do
  local function login_ms(server, account)
    local connected = false
    local t0 = now()
    local nim = NIM.getInstance { account = account, token = "t", server = server.url, db = false,
      onconnect = function() connected = true end }
    pump({ nim }, function() return connected end, 30, "login")
    local ms = (now() - t0) * 1000
    close(nim)
    return ms
  end
  local function median(list) table.sort(list); return list[(#list + 1) // 2] end
  local weak = S.start { accounts = { alice = "t" }, kdfIterations = 1000, maxSendRate = 1000000 }
  local strong = S.start { accounts = { alice = "t", carol = "t" } }
  local w, st = {}, {}
  for i = 1, 5 do w[i] = login_ms(weak, "alice"); st[i] = login_ms(strong, "alice") end
  report("login (getInstance -> onconnect), 1,000 PBKDF2 iterations", ("%.1f"):format(median(w)), "ms")
  report("login with the default 600,000 iterations", ("%.1f"):format(median(st)), "ms", nil,
    ("%.0fx; the derivation is the difference"):format(median(st) / median(w)))
  -- carol pings while 8 logins are being derived
  local carol
  do
    local synced = false
    carol = NIM.getInstance { account = "carol", token = "t", server = strong.url, db = false,
      onsyncdone = function() synced = true end }
    pump({ carol }, function() return synced end, 30, "carol")
  end
  local others, connected = {}, 0
  for i = 1, 8 do
    others[i] = NIM.getInstance { account = "alice", token = "t", server = strong.url, db = false,
      deviceId = "bench-" .. i, onconnect = function() connected = connected + 1 end }
  end
  local worst = 0
  while connected < 8 do
    local t0, done = now(), false
    carol:getStickTopSessions { done = function() done = true end }
    local list = { carol, table.unpack(others) }
    pump(list, function() return done end, 30, "carol's round trip")
    worst = math.max(worst, (now() - t0) * 1000)
  end
  report("another user's worst round trip during 8 default logins", ("%.1f"):format(worst), "ms", "100")
  close(carol)
  for _, o in ipairs(others) do close(o) end
  weak:cleanup(); strong:cleanup()
end
