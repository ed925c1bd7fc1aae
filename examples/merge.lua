-- examples/merge.lua: the session list functions on sample data (no server).
local NIM = require "nim"

local function show(title, sessions)
  print("\n" .. title)
  print(string.format("  %-16s %6s  %-14s %s", "id", "unread", "updateTime", "last message"))
  for _, s in ipairs(sessions) do
    print(string.format("  %-16s %6s  %-14s %s", s.id, s.unread or "-", s.updateTime or "-",
      s.lastMsg and (s.lastMsg.from .. ": " .. (s.lastMsg.text or "")) or ""))
  end
end

local t = 1700000000000
local function msg(from, to, text, dt)
  return {from = from, to = to, scene = "p2p", type = "text", text = text, time = t + dt}
end

-- What onsessions hands an app at login: sessions made from roaming and offline messages.
local sessions = NIM.mergeSessions(nil, {
  {id = "p2p-bob", scene = "p2p", to = "bob", updateTime = t + 3000, unread = 2, lastMsg = msg("bob", "alice", "lunch?", 3000)},
  {id = "team-42", scene = "team", to = "42", updateTime = t + 5000, unread = 7, lastMsg = msg("carol", "42", "release at 5", 5000)},
  {id = "p2p-dave", scene = "p2p", to = "dave", updateTime = t + 1000, unread = 0, lastMsg = msg("alice", "dave", "thanks!", 1000)},
})
show("onsessions -> mergeSessions(nil, sessions): newest first", sessions)

-- onupdatesession: bob writes again; the app merges the one changed session.
sessions = NIM.mergeSessions(sessions, {id = "p2p-bob", updateTime = t + 9000, unread = 3,
                                        lastMsg = msg("bob", "alice", "at noon?", 9000)})
show("onupdatesession(p2p-bob) -> mergeSessions(sessions, session): bob moves to the top", sessions)

-- The app deletes a session from its list.
sessions = NIM.cutSessionsByIds(sessions, "p2p-dave")
show("cutSessionsByIds(sessions, 'p2p-dave')", sessions)

local s = NIM.findSession(sessions, "team-42")
print(("\nfindSession(sessions, 'team-42').unread = %d"):format(s.unread))

-- How fast: merging one update into a 10,000-session list, as every onupdatesession does.
local big = {}
for i = 1, 10000 do big[i] = {id = "p2p-u" .. i, updateTime = t - i} end
local clock = os.clock()
for _ = 1, 100 do NIM.mergeSessions(big, {id = "p2p-u5000", updateTime = t + 1}) end
print(("mergeSessions of one update into 10,000 sessions: %.2f ms"):format((os.clock() - clock) * 10))
print("\nNext: README.md (API and benchmarks), make test, make bench.")
