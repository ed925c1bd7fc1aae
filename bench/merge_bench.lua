-- make bench: NIM.mergeSessions (C) beside a careful pure-Lua merge (hash
-- index + table.sort, bench/lua_merge.lua) on the same inputs, in one process.
local NIM = require "nim"
local peer = dofile("bench/lua_merge.lua")

local T0 = 1700000000000
local scenes = {"p2p", "team", "superTeam"}

local function session(i, t)
  local scene = scenes[i % 3 + 1]
  local to = "u" .. i
  return {
    id = scene .. "-" .. to, scene = scene, to = to, updateTime = t, unread = i % 7,
    lastMsg = {idClient = "c" .. i, idServer = tostring(900000 + i), scene = scene, from = "u" .. (i % 50),
               to = to, time = t, type = "text", text = "message " .. i, flow = "in", status = "success"},
  }
end

-- n sorted sessions, newest first (what an app keeps)
local function list(n)
  local t = {}
  for i = 1, n do t[i] = session(i, T0 + (n - i) * 1000) end
  return t
end

-- k new sessions: the first `updates` are updates of olds ids, the rest new ids
local function news(k, updates, n_old)
  local t = {}
  local step = math.max(1, math.floor(n_old / math.max(updates, 1)))
  for j = 1, k do
    local i = j <= updates and ((j - 1) * step % n_old + 1) or (n_old + j)
    t[j] = session(i, T0 + n_old * 1000 + j * 37)
  end
  return t
end

-- best-of-N CPU time per call, in ms; each call starts after a full
-- collection (not timed), so both sides pay only for their own garbage
local function time(f, min_total)
  local best, total, runs = math.huge, 0, 0
  repeat
    collectgarbage()
    local t = os.clock()
    f()
    local d = os.clock() - t
    best = math.min(best, d)
    total = total + d
    runs = runs + 1
  until total >= min_total and runs >= 5
  return best * 1000
end

-- inputs are built per case, so each runs on a heap of its own size
local cases = {
  {"1,000 into 10,000 (half updates)", function() return list(10000), news(1000, 500, 10000) end, 8},
  {"10,000 into 10,000 (half updates)", function() return list(10000), news(10000, 5000, 10000) end, 4},
  {"1 update into a sorted 10,000", function()
    local olds = list(10000)   -- an existing session moves to the top
    return olds, {id = olds[5001].id, updateTime = T0 + 10000 * 1000, unread = 1} end, 15},
  {"1 new into a sorted 100,000", function() return list(100000), news(1, 0, 100000)[1] end, nil},
}

print("mergeSessions: nim (C) vs pure Lua (hash index + table.sort), same inputs, best of runs")
print(string.format("%-36s %12s %12s %9s %9s", "case", "nim ms", "Lua ms", "ratio", "required"))
local failed = false
for _, c in ipairs(cases) do
  local name, need = c[1], c[3]
  collectgarbage()
  local olds, new = c[2]()
  -- same result first: the peer is a fair one
  local a, b = NIM.mergeSessions(olds, new), peer.mergeSessions(olds, new)
  assert(#a == #b and a[1].id == b[1].id and a[#a].id == b[#b].id, "peer disagrees on " .. name)
  collectgarbage()
  local tn = time(function() NIM.mergeSessions(olds, new) end, 0.5)
  local tl = time(function() peer.mergeSessions(olds, new) end, 0.5)
  local ratio = tl / tn
  local ok = not need or ratio >= need
  failed = failed or not ok
  print(string.format("%-36s %12.3f %12.3f %8.1fx %9s%s", name, tn, tl, ratio,
    need and (need .. "x") or "-", ok and "" or "  BELOW TARGET"))
end
print("(JS SDK 9.21.12 mergeSessions, for scale: 860 ms for 1,000 into 10,000; 28 ms for 1 into 10,000)")
if failed then os.exit(1) end
