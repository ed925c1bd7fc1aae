-- examples/tour.lua: a walk through the recent-sessions API with real clients
-- against a real nim-server (make demo starts one; or pass its URL:
--   lua5.4 examples/tour.lua ws://127.0.0.1:PORT   with alice, bob, carol
--   registered with the token "secret").
--
-- It is written in coroutine style: inside NIM.run a call without `done`
-- waits for its result and returns `err, obj`, so the script reads top to
-- bottom. Callbacks (onsessions, onupdatesession, ...) still run inside poll.
local NIM = require "nim"
local Server = require "nim.server"

local url, server = arg[1], nil
local started = os.time()
if not url then
  server = Server.start{accounts = {alice = "secret", bob = "secret", carol = "secret"}}
  url = server.url
  print(("nim-server listening on %s (database %s)"):format(url, server.db))
end
local dataDir = os.tmpname()
os.remove(dataDir)
os.execute("mkdir -p " .. dataDir)

---------------------------------------------------------------- printing

local function when(ms) return ms and os.date("%H:%M:%S", math.floor(ms / 1000)) or "-" end

local function show(title, sessions)
  print("\n-- " .. title)
  print(("   %-14s %6s %3s  %-34s %s"):format("id", "unread", "top", "last message", "time"))
  for _, s in ipairs(sessions) do
    local m = s.lastMsg
    local text = m and ((m.flow == "out" and "me" or m.from) .. ": " .. (m.text or m.content or "")) or ""
    print(("   %-14s %6d %3s  %-34s %s"):format(s.id, s.unread or 0, s.isTop and "*" or "",
      #text > 34 and text:sub(1, 33) .. "~" or text, when(s.updateTime)))
  end
end

local function step(n, text) print(("\n== %d. %s"):format(n, text)) end

---------------------------------------------------------------- helpers

-- An instance that keeps its session list the way an app does: merging
-- onsessions and onupdatesession into it.
local function client(account, opts)
  local app = {sessions = {}, updates = 0}
  local o = {
    account = account, token = "secret", server = url,
    dataDir = dataDir .. "/" .. (opts and opts.deviceId or account),   -- one database per device
    onsessions = function(list) app.sessions = NIM.mergeSessions(app.sessions, list) end,
    onupdatesession = function(s)
      app.updates = app.updates + 1
      app.sessions = NIM.mergeSessions(app.sessions, s)
    end,
    onerror = function(e) print("   (" .. account .. " onerror: " .. tostring(e) .. ")") end,
  }
  for k, v in pairs(opts or {}) do o[k] = v end
  app.nim = NIM.getInstance(o)
  assert(app.nim:waitSync() == nil, account .. " could not log in")
  return app
end

local everyone = {}
-- Polls every instance until cond() holds (at most 5 s): the way a script
-- waits for something another client does.
local function until_(cond, what)
  local deadline = os.time() + 5
  while not cond() do
    if os.time() > deadline then error("tour: timed out waiting for " .. what) end
    for _, app in ipairs(everyone) do app.nim:poll(10) end
  end
end

local function find(app, id) return NIM.findSession(app.sessions, id) end

local function check(err, what)
  if err then error(what .. " failed: " .. tostring(err), 2) end
end

---------------------------------------------------------------- the tour

NIM.run(function()
  step(1, "bob and carol write to alice while she is offline")
  local bob = client("bob", {db = false})
  local carol = client("carol", {db = false})
  everyone = {bob, carol}
  check(bob.nim:sendText{scene = "p2p", to = "alice", text = "lunch today?"}, "send")
  check(bob.nim:sendText{scene = "p2p", to = "alice", text = "the usual place"}, "send")
  check(carol.nim:sendText{scene = "p2p", to = "alice", text = "slides attached"}, "send")
  local err, team = carol.nim:createTeam{name = "release", accounts = {"alice", "bob"}}
  check(err, "createTeam")
  local teamId = team.team.teamId
  check(carol.nim:sendText{scene = "team", to = teamId, text = "release at 5"}, "send")
  print(("   bob sent 2 messages, carol 1 and one to the new team %s"):format(teamId))

  step(2, "alice logs in: her session list is made from the offline messages (onsessions)")
  local phone = client("alice", {deviceId = "alice-phone", syncSessionUnread = true,
                                 syncStickTopSessions = true})
  everyone[#everyone + 1] = phone
  show("alice's phone after login", phone.sessions)

  step(3, "a live message updates one session (onupdatesession + mergeSessions)")
  check(bob.nim:sendText{scene = "p2p", to = "alice", text = "are you there?"}, "send")
  until_(function() local s = find(phone, "p2p-bob") return s and s.unread == 3 end, "bob's message")
  show("after bob's live message: p2p-bob moved to the top, unread 3", phone.sessions)

  step(4, "setCurrSession: the open conversation has no unread, even as messages arrive")
  check(phone.nim:setCurrSession("p2p-bob"), "setCurrSession")
  check(bob.nim:sendText{scene = "p2p", to = "alice", text = "see you at 12"}, "send")
  until_(function() local s = find(phone, "p2p-bob") return s.lastMsg.text == "see you at 12" end, "message")
  show("p2p-bob is current: unread stays 0", phone.sessions)
  phone.nim:resetCurrSession()

  step(5, "multi-device unread: reading on the laptop clears the phone's badge (syncSessionUnread)")
  local laptop = client("alice", {deviceId = "alice-laptop", syncSessionUnread = true})
  everyone[#everyone + 1] = laptop
  show("alice's laptop after login (roaming messages)", laptop.sessions)
  check(laptop.nim:resetSessionUnread("team-" .. teamId), "resetSessionUnread")
  until_(function() return find(phone, "team-" .. teamId).unread == 0 end, "the pointer to reach the phone")
  show("the phone, after the laptop read team-" .. teamId, phone.sessions)

  step(6, "paging the local database: getLocalSessions, 2 at a time")
  local page, last, n = nil, nil, 0
  repeat
    err, page = phone.nim:getLocalSessions{limit = 2, lastSessionId = last}
    check(err, "getLocalSessions")
    n = n + 1
    local ids = {}
    for i, s in ipairs(page.sessions) do ids[i] = s.id end
    if #ids > 0 then print(("   page %d: %s"):format(n, table.concat(ids, ", "))) end
    last = page.sessions[#page.sessions] and page.sessions[#page.sessions].id
  until #page.sessions < 2

  step(7, "local custom fields: kept in the local database only")
  local _, obj = phone.nim:updateLocalSession{id = "p2p-carol", localCustom = '{"draft":"thanks!"}'}
  print("   p2p-carol localCustom = " .. obj.session.localCustom)

  step(8, "sticky top: pinned on the phone, shown pinned on the laptop")
  check(phone.nim:addStickTopSession{id = "p2p-carol", topCustom = "work"}, "addStickTopSession")
  until_(function() local c = find(laptop, "p2p-carol") return c and c.isTop end, "the pin on the laptop")
  show("the laptop: p2p-carol is pinned (*)", laptop.sessions)
  check(phone.nim:deleteStickTopSession{id = "p2p-carol"}, "deleteStickTopSession")

  step(9, "deleting a session locally and on the server")
  check(phone.nim:deleteLocalSession{id = "p2p-carol", isDeleteRoaming = true}, "deleteLocalSession")
  phone.sessions = NIM.cutSessionsByIds(phone.sessions, "p2p-carol")
  show("the phone without p2p-carol", phone.sessions)
  local tablet = client("alice", {deviceId = "alice-tablet", db = false})
  everyone[#everyone + 1] = tablet
  show("a fresh tablet logs in: p2p-carol does not come back", tablet.sessions)
  print("   (the tablet runs with db = false and without syncSessionUnread: it keeps no read")
  print("    pointer, so every message it receives counts as unread, as in the JS SDK)")
  assert(not find(tablet, "p2p-carol"), "deleted session came back")

  for _, app in ipairs(everyone) do app.nim:destroy() end
end)

if server then server:cleanup() end
os.execute("rm -rf " .. dataDir)
print(("\nThe tour took %d s. Next:"):format(os.time() - started))
print("  docs/api.md        every function, option, callback and field")
print("  examples/chat.lua  an interactive terminal client (lua5.4 examples/chat.lua URL ACCOUNT TOKEN)")
print("  examples/embed/    the SDK in a 60 Hz game loop written in C")
print("  make test, make bench")
