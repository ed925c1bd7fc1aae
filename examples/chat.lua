-- examples/chat.lua: an interactive terminal chat client for one account.
--
--   lua5.4 examples/chat.lua ws://127.0.0.1:8787 alice secret [dataDir]
--
-- The session list (pinned first, then newest; unread badges, * for sticky
-- top) beside the current conversation, a status line for the connection,
-- and a command line. It waits on nim:getfd() and the terminal together with
-- luv (Debian: lua-luv), so it uses no CPU while idle.
--
-- Commands: /open N|ID   open session N of the list (or an id like p2p-bob)
--           /new SCENE TO   start a session (p2p bob, team 42)
--           /pin  /unpin    sticky top for the open session
--           /delete         delete the open session here and on the server
--           /quit
--           anything else is sent as a text message to the open session.
local uv = require "luv"
local NIM = require "nim"

local server, account, token, dataDir = arg[1], arg[2], arg[3], arg[4]
if not (server and account and token) then
  io.stderr:write("usage: lua5.4 examples/chat.lua ws://HOST:PORT ACCOUNT TOKEN [DATADIR]\n")
  os.exit(2)
end

local sessions = {}          -- the list the app keeps, merged from callbacks
local current = nil          -- id of the open session
local conversation = {}      -- messages of the open session, oldest first
local status = "connecting"
local notice = ""            -- the last command's result
local nim

local function short(s, n)
  s = tostring(s or ""):gsub("%s+", " ")
  if utf8.len(s) and utf8.len(s) > n then
    s = s:sub(1, utf8.offset(s, n) - 1) .. "~"
  end
  return s
end

local function msg_text(m)
  if not m then return "" end
  local who = m.flow == "out" and "me" or m.from
  local body = m.type == "text" and m.text or ("[" .. tostring(m.type) .. "] " .. tostring(m.content or ""))
  local mark = m.status == "sending" and " (sending)" or (m.status == "fail" and " (failed)" or "")
  return who .. ": " .. body .. mark
end

-- Pinned sessions first, then newest first (what chat apps show).
local function ordered()
  local list = {}
  for i, s in ipairs(sessions) do list[i] = s end
  table.sort(list, function(a, b)
    if (a.isTop and 1 or 0) ~= (b.isTop and 1 or 0) then return a.isTop == true end
    if (a.updateTime or 0) ~= (b.updateTime or 0) then return (a.updateTime or 0) > (b.updateTime or 0) end
    return a.id < b.id
  end)
  return list
end

local function redraw()
  local out = {"\27[H\27[2J"}
  local function line(s) out[#out + 1] = s .. "\27[K\n" end
  line(("== nim chat: %s ==  status: %s"):format(account, status))
  line(("%-3s %-20s %6s  %-28s | %s"):format("#", "session", "unread", "last message",
    current and ("conversation: " .. current) or "no session open (/open N)"))
  local list = ordered()
  local rows = math.max(#list, #conversation, 1)
  for i = 1, math.min(rows, 15) do
    local s = list[i]
    local left = s and ("%-3d%s%-20s %6s  %-28s"):format(i, s.isTop and "*" or " ", short(s.id, 20),
      (s.unread or 0) > 0 and ("(" .. s.unread .. ")") or "", short(msg_text(s.lastMsg), 28)) or (" "):rep(62)
    local m = conversation[#conversation - math.min(#conversation, 15) + i]
    local right = m and (os.date("[%H:%M:%S] ", (m.time or 0) // 1000) .. short(msg_text(m), 50)) or ""
    line(left .. " | " .. right)
  end
  line("")
  line("commands: /open N|id  /new p2p bob  /pin  /unpin  /delete  /quit   (other text is sent)")
  if notice ~= "" then line(notice) end
  out[#out + 1] = "> "
  io.stdout:write(table.concat(out))
  io.stdout:flush()
end

local function load_conversation()
  if not current then conversation = {} return end
  local id = current
  nim:getLocalMsgs{sessionId = id, limit = 15, done = function(err, obj)
    if err or id ~= current then return end
    conversation = {}
    for i = #obj.msgs, 1, -1 do conversation[#conversation + 1] = obj.msgs[i] end  -- oldest first
    redraw()
  end}
end

local function open(id)
  current = id
  nim:setCurrSession(id)
  notice = "opened " .. id
  load_conversation()
end

local function say(err, what)
  notice = err and (what .. " failed: " .. tostring(err)) or (what .. ": ok")
  redraw()
end

local commands = {}
function commands.open(argv)
  local n = tonumber(argv[1])
  local list = ordered()
  local id = n and list[n] and list[n].id or argv[1]
  if not id or not id:match("^%w+%-.+") then notice = "usage: /open N|ID" return end
  open(id)
end
commands.o = commands.open
commands["new"] = function(argv)
  local scene, to = argv[1], argv[2]
  if not (scene and to) then notice = "usage: /new p2p ACCOUNT | /new team TEAMID" return end
  local ok, e = pcall(nim.insertLocalSession, nim, {scene = scene, to = to, done = function(err, obj)
    if err and err.code ~= "Session_Exist" then return say(err, "new") end
    open(scene .. "-" .. to)
  end})
  if not ok then notice = tostring(e) end
end
function commands.pin()
  if not current then notice = "open a session first" return end
  nim:addStickTopSession{id = current, done = function(err) say(err, "pin") end}
end
function commands.unpin()
  if not current then notice = "open a session first" return end
  nim:deleteStickTopSession{id = current, done = function(err) say(err, "unpin") end}
end
function commands.delete()
  if not current then notice = "open a session first" return end
  local id = current
  nim:deleteLocalSession{id = id, isDeleteRoaming = true, done = function(err)
    if not err then
      sessions = nim:cutSessionsByIds(sessions, id)
      if current == id then current = nil; conversation = {}; nim:resetCurrSession() end
    end
    say(err, "delete " .. id)
  end}
end

local loop_done = false
local function quit()
  if loop_done then return end
  loop_done = true
  nim:destroy()
  io.stdout:write("\nbye\n")
  uv.stop()
end
commands.quit = quit
commands.q = quit

local function on_line(text)
  text = text:gsub("^%s+", ""):gsub("%s+$", "")
  if text == "" then return redraw() end
  local cmd, rest = text:match("^/(%S+)%s*(.*)$")
  if cmd then
    local f = commands[cmd]
    if not f then notice = "unknown command /" .. cmd
    else
      local argv = {}
      for w in rest:gmatch("%S+") do argv[#argv + 1] = w end
      f(argv)
    end
  elseif not current then
    notice = "open a session first: /open N"
  else
    local scene, to = current:match("^(%w+)%-(.+)$")
    nim:sendText{scene = scene, to = to, text = text, done = function(err)
      if err then say(err, "send") end
    end}
    notice = ""
  end
  if not loop_done then redraw() end
end

local function on_session(s)
  sessions = nim:mergeSessions(sessions, s)
  if s.id == current then load_conversation() end
end

nim = NIM.getInstance{
  account = account, token = token, server = server, dataDir = dataDir or "./nim-data",
  syncStickTopSessions = true,
  onconnect = function() status = "connected" end,
  onwillreconnect = function(o) status = ("reconnecting in %.1f s"):format((o and o.duration or 0) / 1000) end,
  ondisconnect = function(e) status = "disconnected" .. (e and e.code and (" (" .. tostring(e.code) .. ")") or "") end,
  onsyncdone = function() status = "connected, synced" end,
  onsessions = function(list) sessions = nim:mergeSessions(sessions, list) end,
  onupdatesession = on_session,
  onerror = function(e) notice = "error: " .. tostring(e) end,
}

-- The terminal: cooked mode, a line at a time.
local stdin = uv.new_tty(0, true)
local pending = ""
stdin:read_start(function(err, data)
  if err or not data then return quit() end
  pending = pending .. data
  for l in pending:gmatch("([^\n]*)\n") do on_line(l) end
  pending = pending:match("[^\n]*$")
end)

-- The SDK: nim:getfd() is readable whenever poll has work.
local fdpoll = uv.new_poll(nim:getfd())
fdpoll:start("r", function()
  if loop_done then return end
  if nim:poll(0) > 0 then redraw() end
end)

local sig = uv.new_signal()
sig:start("sigint", quit)

redraw()
uv.run()
