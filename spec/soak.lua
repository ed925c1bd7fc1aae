-- The fault-injection soak: SDK devices (each its own process,
-- spec/fixtures/soak_device.lua) send to each other through
-- build/faultproxy (which delays, stalls, cuts, half-closes and blackholes
-- connections, seeded) to nim-server, while the soak SIGSTOPs/SIGCONTs and
-- SIGKILLs devices and SIGKILLs the server. Devices send every 25-75 ms,
-- and every 25 s (first at 1 s) one device is stopped for 6-9 s: long
-- enough that more than a session's roaming cap (100) is sent to it. Then every device syncs once
-- more, straight to the server, and reports: every message the server
-- acknowledged to its sender must be stored exactly once on every device of
-- both accounts, and each device's unread must equal its recount.
--
--   local report = require("soak").run { seconds = 20, seed = 7 }
--
-- Used by spec/soak_spec.lua (a short run in make test) and by
-- `make soak` (SOAK_SECONDS, SOAK_SEED). Prints its seed first.
local H = require "helpers"
local S = require "nim.server"
local uv = require "luv"
local cjson = require "cjson"

local M = {}

local function ms() return uv.hrtime() / 1e6 end
local function sh(cmd) return os.execute(cmd .. " >/dev/null 2>&1") end
local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local ACCOUNTS = { "sa", "sb", "sc" }
local DEVICES_PER_ACCOUNT = 2

-- Starts a process that prints its pid, then execs argv (stderr appended
-- to errlog when given); returns pid, pipe.
local function spawn(argv, errlog)
  local env = ("LUA_PATH=%s LUA_CPATH=%s"):format(quote(package.path), quote(package.cpath))
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = quote(a) end
  local redirect = errlog and (" 2>>" .. quote(errlog)) or ""
  local p = assert(io.popen("exec sh -c 'echo $$; exec env \"$@\"' sh " .. env .. " " .. table.concat(parts, " ")
                            .. redirect, "r"))
  return assert(tonumber(p:read("*l")), "child pid"), p
end

local function lua_bin() return os.getenv("NIM_LUA") or "lua5.4" end

function M.run(opts)
  local seconds = opts.seconds or 20
  local seed = opts.seed or (os.time() % 100000)
  local say = opts.say or print
  say(("soak: seed %d, %d s (make soak SOAK_SEED=%d SOAK_SECONDS=%d repeats it)"):format(seed, seconds, seed, seconds))
  math.randomseed(seed)
  local dir = H.tmpdir()
  assert(os.execute("mkdir -p " .. quote(dir)))
  local accounts = {}
  for _, a in ipairs(ACCOUNTS) do accounts[a] = a .. "-token" end
  local KDF = 1000   -- logins are many here; the default's cost is not what this tests
  -- on PostgreSQL under make test-pg (NIM_TEST_PG), else a SQLite file
  local db = os.getenv("NIM_TEST_PG") and require("net_helpers").pg_database() or dir .. "/server.db"
  local srv = S.start { accounts = accounts, db = db, kdfIterations = KDF, maxSendRate = 1000000 }
  local port = srv.port
  local proxy_bin = opts.proxy or os.getenv("NIM_FAULTPROXY") or "build/faultproxy"
  local ppid, ppipe = spawn({ proxy_bin, "--listen", "127.0.0.1:0", "--to", "127.0.0.1:" .. port,
                              "--seed", tostring(seed), "--faults", "0.3", "--max-bytes", "32768",
                              "--max-ms", "2500", "--quiet" }, dir .. "/proxy.log")
  local pport = assert(tonumber((ppipe:read("*l") or ""):match("^listening (%d+)")), "proxy port")
  local purl = "ws://127.0.0.1:" .. pport

  local devices, stats = {}, { stops = 0, long_stops = 0, kills = 0, server_kills = 0, cuts = 0 }
  for _, a in ipairs(ACCOUNTS) do
    for k = 1, DEVICES_PER_ACCOUNT do
      local peers = {}
      for _, b in ipairs(ACCOUNTS) do if b ~= a then peers[#peers + 1] = b end end
      devices[#devices + 1] = { account = a, id = a .. "-d" .. k, db = dir .. "/" .. a .. k .. ".db",
                                acklog = dir .. "/" .. a .. k .. ".acks", peers = table.concat(peers, ","), gen = 0 }
    end
  end
  local function start(d)
    d.gen = d.gen + 1
    d.pid, d.pipe = spawn { lua_bin(), "spec/fixtures/soak_device.lua", "chaos", purl, d.account,
                            accounts[d.account], d.db, d.id, tostring(d.gen), tostring(seed * 131 + d.gen * 7 + #d.id),
                            d.peers, d.acklog, "25", "75", dir .. "/go" }
    d.stopped_until = nil
  end
  local function reap(d)
    if d.pipe then d.pipe:close(); d.pipe = nil end
    d.pid = nil
  end
  -- every device syncs once cleanly first: a device that has synced gets
  -- everything after its cursor from then on
  for _, d in ipairs(devices) do
    start(d)
    assert(d.pipe:read("*l") == "synced", d.id .. " did not sync")
  end
  -- then they all send: a first sync that came after sends could rightly
  -- bring only the latest 100 of each session (roaming), not all of them
  assert(io.open(dir .. "/go", "w")):close()

  local t_end, next_event = ms() + seconds * 1000, ms() + 200
  local next_long = ms() + 1000        -- a long stall: a phone in a pocket
  local srv_down_until
  while ms() < t_end do
    uv.sleep(20)                                   -- the chaos schedule's tick
    local now = ms()
    for _, d in ipairs(devices) do
      if d.stopped_until and now >= d.stopped_until then
        sh("kill -CONT " .. d.pid)
        d.stopped_until, d.long = nil, nil
      end
      if d.restart_at and now >= d.restart_at then d.restart_at = nil; start(d) end
    end
    if srv_down_until and now >= srv_down_until then
      srv = S.start { db = db, port = port, kdfIterations = KDF, maxSendRate = 1000000 }
      srv_down_until = nil
    end
    if now >= next_long then
      local up = {}
      for _, d in ipairs(devices) do if d.pid and not d.stopped_until then up[#up + 1] = d end end
      local len = math.min(math.random(6000, 9000), t_end - now - 1000)
      if #up == 0 then
        next_long = now + 200                                     -- every device is down: soon
      else
        next_long = now + 25000
        if len > 0 then
          local d = up[math.random(#up)]
          sh("kill -STOP " .. d.pid)
          d.stopped_until = now + len
          d.long = true
          stats.long_stops = stats.long_stops + 1
        end
      end
    end
    if now >= next_event then
      next_event = now + math.random(100, 600)
      local r = math.random(100)
      local d = devices[math.random(#devices)]
      if d.long and d.stopped_until then                          -- leave the long stall be
        r = 100
      end
      if r <= 35 and d.pid and not d.stopped_until then          -- a suspended app
        sh("kill -STOP " .. d.pid)
        d.stopped_until = now + math.random(200, 2500)
        stats.stops = stats.stops + 1
      elseif r <= 55 and d.pid then                               -- a crash
        if d.stopped_until then sh("kill -CONT " .. d.pid); d.stopped_until = nil end
        sh("kill -KILL " .. d.pid)
        reap(d)
        d.restart_at = now + math.random(100, 1500)
        stats.kills = stats.kills + 1
      elseif r <= 65 and not srv_down_until then                  -- the server crashes
        srv:kill()
        srv_down_until = now + math.random(50, 800)
        stats.server_kills = stats.server_kills + 1
      elseif r <= 80 then                                         -- a network blip for everyone
        sh("kill -USR1 " .. ppid)
        stats.cuts = stats.cuts + 1
      end
    end
  end

  -- the end: everyone stops; the server is up; each device syncs straight to it
  for _, d in ipairs(devices) do
    if d.pid then
      if d.stopped_until then sh("kill -CONT " .. d.pid) end
      sh("kill -KILL " .. d.pid)
      reap(d)
    end
  end
  sh("kill -TERM " .. ppid)
  ppipe:close()
  if srv_down_until then srv = S.start { db = db, port = port, kdfIterations = KDF, maxSendRate = 1000000 } end

  local acked = {}
  for _, d in ipairs(devices) do
    local f = io.open(d.acklog, "r")
    for line in f and f:lines() or function() end do
      local idc, from, to = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
      if idc then acked[#acked + 1] = { idc = idc, from = from, to = to } end
    end
    if f then f:close() end
  end
  local report = { seed = seed, acked = #acked, stats = stats, devices = {} }
  for _, d in ipairs(devices) do
    local exp = dir .. "/" .. d.id .. ".expected"
    local f = assert(io.open(exp, "w"))
    for _, m in ipairs(acked) do
      if m.from == d.account or m.to == d.account then f:write(m.idc, "\n") end
    end
    f:close()
    local out = dir .. "/" .. d.id .. ".report"
    local _, p = spawn { lua_bin(), "spec/fixtures/soak_device.lua", "verify", srv.url, d.account,
                         accounts[d.account], d.db, d.id, exp, out }
    p:close()
    local rf = io.open(out, "r")
    local r = rf and cjson.decode(rf:read("*a")) or { missing = { "no report" }, dupes = {}, mismatches = {} }
    if rf then rf:close() end
    r.id = d.id
    report.devices[#report.devices + 1] = r
  end
  srv:stop()
  if os.getenv("SOAK_KEEP") then say("soak: kept " .. dir) else H.rmdir(dir) end
  say(("soak: %d messages acknowledged; %d stops (%d of 6-9 s), %d device kills, %d server kills, %d cuts"):format(
    #acked, stats.stops + stats.long_stops, stats.long_stops, stats.kills, stats.server_kills, stats.cuts))
  return report
end

return M
