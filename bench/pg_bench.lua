-- nim-server on PostgreSQL beside SQLite (run by `make bench` inside
-- spec/pg_cluster.sh, which sets NIM_TEST_PG; NIM_PG_FSYNC=on keeps the
-- cluster durable, as a real one is): messages a second acknowledged
-- durably (committed before their reply) and pushed to an online
-- recipient, from 4 senders at once with every send in flight, on
--   1. one node on SQLite (the peer figure),
--   2. one node on PostgreSQL,
--   3. three nodes on one PostgreSQL database (senders spread over them,
--      each recipient on its sender's node).
-- Goals (issue 14): 2 at least half of 1; 3 at least 2.
package.path = "./spec/?.lua;" .. package.path
local NIM = require "nim"
local S = require "nim.server"
local uv = require "luv"
local pg_database = require("net_helpers").pg_database   -- a database of its own on NIM_TEST_PG

local PG = os.getenv("NIM_TEST_PG")
if not PG then
  print("pg_bench: NIM_TEST_PG is not set (make bench runs it inside spec/pg_cluster.sh); skipped")
  return
end

local SENDERS, PER = 4, tonumber(os.getenv("NIM_BENCH_PG_MSGS") or "1500")

local function now() return uv.hrtime() / 1e9 end

local function pump(list, cond, limit, what)
  local t0 = os.time()
  while not cond() do
    for _, n in ipairs(list) do n:poll(0) end
    if os.time() - t0 > (limit or 120) then error("benchmark timed out: " .. (what or "?")) end
  end
end

local accounts = {}
for k = 1, SENDERS do accounts["s" .. k] = "t"; accounts["r" .. k] = "t" end

-- Starts `nodes` servers on db (nil: a SQLite file), sends PER messages
-- from each sender to its recipient, all in flight at once; returns
-- messages a second (acknowledged and pushed).
local function run(db, nodes)
  local srvs = { S.start { db = db, accounts = accounts, kdfIterations = 1000, maxSendRate = 1000000 } }
  for k = 2, nodes do
    srvs[k] = S.start { db = srvs[1].db, kdfIterations = 1000, maxSendRate = 1000000 }
  end
  local list, senders, got = {}, {}, {}
  for k = 1, SENDERS do
    local srv = srvs[(k - 1) % nodes + 1]
    local synced = 0
    local function open(account, onmsg)
      local nim = NIM.getInstance { account = account, token = "t", server = srv.url, db = false,
        onsyncdone = function() synced = synced + 1 end, onmsg = onmsg }
      list[#list + 1] = nim
      return nim
    end
    got[k] = 0
    open("r" .. k, function() got[k] = got[k] + 1 end)
    senders[k] = open("s" .. k)
    pump(list, function() return synced == 2 end, 30, "login")
  end
  local acked, total = 0, SENDERS * PER
  local t0 = now()
  for i = 1, PER do
    for k = 1, SENDERS do
      senders[k]:sendText { scene = "p2p", to = "r" .. k, text = "bench " .. i, done = function(err)
        assert(not err, err and err.message)
        acked = acked + 1
      end }
    end
  end
  pump(list, function()
    if acked < total then return false end
    for k = 1, SENDERS do if got[k] < PER then return false end end
    return true
  end, 300, "the burst")
  local rate = total / (now() - t0)
  for _, nim in ipairs(list) do
    local closed = false
    nim:destroy(function() closed = true end)
    pump({ nim }, function() return closed end, 30, "destroy")
  end
  for k = nodes, 1, -1 do if k == 1 then srvs[k]:cleanup() else srvs[k]:stop() end end
  return rate
end

local function report(name, value, note)
  print(("%-58s %9.0f msg/s  %s"):format(name, value, note or ""))
end

local sqlite = run(nil, 1)
report("1 node, SQLite (acknowledged and pushed)", sqlite)
local pg1 = run(pg_database(), 1)
report("1 node, PostgreSQL", pg1, ("(%.2fx SQLite; goal >= 0.5x)"):format(pg1 / sqlite))
local pg3 = run(pg_database(), 3)
report("3 nodes, one PostgreSQL", pg3, ("(%.2fx one PostgreSQL node; goal >= 1x)"):format(pg3 / pg1))
