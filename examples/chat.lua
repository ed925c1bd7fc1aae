-- examples/chat.lua: an interactive terminal chat client for one account.
--
--   lua5.4 examples/chat.lua ws://127.0.0.1:8787 alice secret [dataDir]
--
-- The session list (pinned first, then newest; unread badges, * for sticky
-- top) beside the current conversation, a status line for the connection,
-- and a command line, laid out for the terminal's size (80x24 and up, and
-- again when it is resized), text measured in the columns the terminal
-- draws it in (CJK and emoji 2, combining marks 0). It waits on nim:getfd()
-- and the terminal together with luv (Debian: lua-luv), so it uses no CPU
-- while idle.
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

-- Text on the screen is measured in the columns a terminal gives it, not in
-- bytes or characters: CJK and emoji take 2, combining marks 0. Plain Lua
-- (5.1, LuaJIT and 5.4 alike): its own UTF-8 decoder and width table.

-- The code point at byte i of s and the index after it, or nil and i + 1
-- for a byte that does not start a well-formed UTF-8 sequence.
local function decode(s, i)
  local c = s:byte(i)
  if c < 0x80 then return c, i + 1 end
  local n, cp, min
  if c >= 0xC2 and c <= 0xDF then n, cp, min = 1, c - 0xC0, 0x80
  elseif c >= 0xE0 and c <= 0xEF then n, cp, min = 2, c - 0xE0, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then n, cp, min = 3, c - 0xF0, 0x10000
  else return nil, i + 1 end
  for k = 1, n do
    local b = s:byte(i + k)
    if not b or b < 0x80 or b > 0xBF then return nil, i + 1 end
    cp = cp * 64 + (b - 0x80)
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil, i + 1 end
  return cp, i + n + 1
end

-- Zero width: combining marks (the common blocks), zero-width spaces and
-- joiners, direction marks, Hangul medial and final jamo, variation selectors.
local ZERO = {
  0x0300, 0x036F, 0x0483, 0x0489, 0x0591, 0x05BD, 0x05BF, 0x05BF, 0x05C1, 0x05C2,
  0x05C4, 0x05C5, 0x05C7, 0x05C7, 0x0610, 0x061A, 0x064B, 0x065F, 0x0670, 0x0670,
  0x06D6, 0x06DC, 0x06DF, 0x06E4, 0x06E7, 0x06E8, 0x06EA, 0x06ED, 0x0900, 0x0902,
  0x093A, 0x093A, 0x093C, 0x093C, 0x0941, 0x0948, 0x094D, 0x094D, 0x0951, 0x0957,
  0x0962, 0x0963, 0x0E31, 0x0E31, 0x0E34, 0x0E3A, 0x0E47, 0x0E4E, 0x1160, 0x11FF,
  0x1AB0, 0x1AFF, 0x1DC0, 0x1DFF, 0x200B, 0x200F, 0x202A, 0x202E, 0x2060, 0x206F,
  0x20D0, 0x20FF, 0x302A, 0x302D, 0x3099, 0x309A, 0xD7B0, 0xD7FF, 0xFE00, 0xFE0F,
  0xFE20, 0xFE2F, 0xFEFF, 0xFEFF, 0xE0000, 0xE0FFF,
}

-- Two columns: East Asian Wide and Fullwidth (Unicode's EastAsianWidth W
-- and F, which take in the emoji shown as emoji by default).
local WIDE = {
  0x1100, 0x115F, 0x231A, 0x231B, 0x2329, 0x232A, 0x23E9, 0x23EC, 0x23F0, 0x23F0,
  0x23F3, 0x23F3, 0x25FD, 0x25FE, 0x2614, 0x2615, 0x2648, 0x2653, 0x267F, 0x267F,
  0x2693, 0x2693, 0x26A1, 0x26A1, 0x26AA, 0x26AB, 0x26BD, 0x26BE, 0x26C4, 0x26C5,
  0x26CE, 0x26CE, 0x26D4, 0x26D4, 0x26EA, 0x26EA, 0x26F2, 0x26F3, 0x26F5, 0x26F5,
  0x26FA, 0x26FA, 0x26FD, 0x26FD, 0x2705, 0x2705, 0x270A, 0x270B, 0x2728, 0x2728,
  0x274C, 0x274C, 0x274E, 0x274E, 0x2753, 0x2755, 0x2757, 0x2757, 0x2795, 0x2797,
  0x27B0, 0x27B0, 0x27BF, 0x27BF, 0x2B1B, 0x2B1C, 0x2B50, 0x2B50, 0x2B55, 0x2B55,
  0x2E80, 0x303E, 0x3041, 0x33FF, 0x3400, 0xA4CF, 0xA960, 0xA97F, 0xAC00, 0xD7A3,
  0xF900, 0xFAFF, 0xFE10, 0xFE19, 0xFE30, 0xFE6F, 0xFF00, 0xFF60, 0xFFE0, 0xFFE6,
  0x16FE0, 0x16FE3, 0x16FF0, 0x18CFF, 0x18D00, 0x18D08, 0x1AFF0, 0x1B2FF, 0x1F004, 0x1F004,
  0x1F0CF, 0x1F0CF, 0x1F18E, 0x1F18E, 0x1F191, 0x1F19A, 0x1F200, 0x1F265, 0x1F300, 0x1F320,
  0x1F32D, 0x1F335, 0x1F337, 0x1F37C, 0x1F37E, 0x1F393, 0x1F3A0, 0x1F3CA, 0x1F3CF, 0x1F3D3,
  0x1F3E0, 0x1F3F0, 0x1F3F4, 0x1F3F4, 0x1F3F8, 0x1F43E, 0x1F440, 0x1F440, 0x1F442, 0x1F4FC,
  0x1F4FF, 0x1F53D, 0x1F54B, 0x1F54E, 0x1F550, 0x1F567, 0x1F57A, 0x1F57A, 0x1F595, 0x1F596,
  0x1F5A4, 0x1F5A4, 0x1F5FB, 0x1F64F, 0x1F680, 0x1F6C5, 0x1F6CC, 0x1F6CC, 0x1F6D0, 0x1F6D2,
  0x1F6D5, 0x1F6D7, 0x1F6DC, 0x1F6DF, 0x1F6EB, 0x1F6EC, 0x1F6F4, 0x1F6FC, 0x1F7E0, 0x1F7EB,
  0x1F7F0, 0x1F7F0, 0x1F90C, 0x1F93A, 0x1F93C, 0x1F945, 0x1F947, 0x1F9FF, 0x1FA70, 0x1FAFF,
  0x20000, 0x2FFFD, 0x30000, 0x3FFFD,
}

local function within(t, cp)  -- cp in one of the sorted ranges lo, hi, lo, hi, ...
  local lo, hi = 1, #t / 2
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if cp < t[2 * mid - 1] then hi = mid - 1
    elseif cp > t[2 * mid] then lo = mid + 1
    else return true end
  end
  return false
end

-- Columns of code point cp: -1 for a control character.
local function wcwidth(cp)
  if cp < 0x20 or (cp >= 0x7F and cp < 0xA0) then return -1 end
  if cp < 0x300 then return 1 end
  if within(ZERO, cp) then return 0 end
  if within(WIDE, cp) then return 2 end
  return 1
end

-- The characters of s, each with its columns, and the columns of all: a
-- white-space control character (tab, newline) shows as a space, another
-- control character or a malformed byte as "?"; an emoji joined to the one
-- before by U+200D shares its cell (as terminals draw it).
local function cells(s)
  s = tostring(s == nil and "" or s)
  local chars, cols, total, i, base, joined = {}, {}, 0, 1, 0, false
  while i <= #s do
    local cp, j = decode(s, i)
    local w = cp and wcwidth(cp) or -1
    local ch = s:sub(i, j - 1)
    if w < 0 then ch, w = ch:find("^%s$") and " " or "?", 1 end
    if joined and w == 2 and base == 2 then w = 0 end
    joined = cp == 0x200D
    if w > 0 then base = w end
    chars[#chars + 1], cols[#cols + 1], total = ch, w, total + w
    i = j
  end
  return chars, cols, total
end

local function width(s)
  local _, _, total = cells(s)
  return total
end

-- s in exactly n columns: cut between two characters with an ellipsis when
-- it is wider, padded with spaces after it (align "<") or before it (">"),
-- or not padded (no align).
local function fit(s, n, align)
  local chars, cols, used = cells(s)
  if used > n then
    local keep, budget = {}, n - 1                -- a column for the ellipsis
    used = 0
    for k = 1, #chars do
      if used + cols[k] > budget then break end
      keep[#keep + 1], used = chars[k], used + cols[k]
    end
    if n > 0 then keep[#keep + 1], used = "\226\128\166", used + 1 end   -- U+2026
    chars = keep
  end
  local text, pad = table.concat(chars), (" "):rep(n - used)
  if align == "<" then return text .. pad elseif align == ">" then return pad .. text end
  return text
end

local function msg_text(m)
  if not m then return "" end
  local who = m.flow == "out" and "me" or m.from
  local body = m.type == "text" and m.text or ("[" .. tostring(m.type) .. "] " .. tostring(m.content or ""))
  local mark = m.status == "sending" and " (sending)" or (m.status == "fail" and " (failed)" or "")
  return (who .. ": " .. tostring(body):gsub("%s+", " ") .. mark)
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

-- The terminal's size now (stdin is the terminal; SIGWINCH redraws for a new one).
local stdin
local function term_size()
  local w, h
  if stdin then w, h = stdin:get_winsize() end
  if type(w) ~= "number" or w < 1 then w = tonumber(os.getenv("COLUMNS")) or 80 end
  if type(h) ~= "number" or h < 1 then h = tonumber(os.getenv("LINES")) or 24 end
  return w, h
end

-- Rows for the list beside the conversation: the screen less the title,
-- the column titles and the 4 lines below (blank, commands, notice, prompt).
local function table_rows()
  local _, h = term_size()
  return math.max(1, h - 6)
end

-- The columns for a width w: the list (#, pin mark, session, unread, last
-- message) left of " | ", the conversation right of it.
local function columns(w)
  local c = { left = math.max(20, math.floor((w - 3) * 0.56)) }
  c.right = math.max(0, w - 3 - c.left)
  local rest = c.left - 12                          -- # (3), mark, 2 spaces, unread (6)
  c.session = math.min(24, math.max(7, math.floor(rest * 0.4)))
  c.last = math.max(0, rest - c.session)
  c.stamp = c.right >= 50 and "%H:%M:%S " or "%H:%M "
  return c
end

local HELP = {
  "commands: /open N|id  /new p2p bob  /pin  /unpin  /delete  /quit   (other text is sent)",
  "/open N|id  /new p2p bob  /pin  /unpin  /delete  /quit  (text is sent)",
}

local function redraw()
  local w = term_size()
  local c, rows = columns(w), table_rows()
  local out = {"\27[H\27[2J"}
  local function line(s) out[#out + 1] = s .. "\27[K\n" end
  line(fit(("== nim chat: %s ==  status: %s"):format(account, status), w))
  local function row(left, right) line(left .. " | " .. fit(right, c.right)) end
  row(fit(fit("#", 3, "<") .. " " .. fit("session", c.session, "<") .. " " .. fit("unread", 6, ">") .. " "
        .. fit("last message", c.last, "<"), c.left, "<"),
    current and ("conversation: " .. current) or "no session open (/open N)")
  local list = ordered()
  local shown = math.min(#conversation, rows)
  for i = 1, math.min(math.max(#list, shown, 1), rows) do
    local s = list[i]
    local left = s and (fit(tostring(i), 3, "<") .. (s.isTop and "*" or " ") .. fit(s.id, c.session, "<") .. " "
      .. fit((s.unread or 0) > 0 and ("(" .. s.unread .. ")") or "", 6, ">") .. " "
      .. fit(msg_text(s.lastMsg), c.last, "<")) or (" "):rep(c.left)
    local m = conversation[#conversation - shown + i]
    row(left, m and (os.date(c.stamp, math.floor((m.time or 0) / 1000)) .. msg_text(m)) or "")
  end
  line("")
  line(fit(width(HELP[1]) <= w and HELP[1] or HELP[2], w))
  line(fit(notice, w))
  out[#out + 1] = "> "
  io.stdout:write(table.concat(out))
  io.stdout:flush()
end

local function load_conversation()
  if not current then conversation = {} return end
  local id = current
  nim:getLocalMsgs{sessionId = id, limit = table_rows(), done = function(err, obj)
    if err or id ~= current then return end
    conversation = {}
    for i = #obj.msgs, 1, -1 do conversation[#conversation + 1] = obj.msgs[i] end  -- oldest first
    redraw()
  end}
end

local function say(err, what)
  notice = err and (what .. " failed: " .. tostring(err)) or (what .. ": ok")
  redraw()
end

local function open(id)
  current = id
  nim:setCurrSession(id, function(err) if err then say(err, "open " .. id) end end)
  notice = "opened " .. id
  load_conversation()
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
stdin = uv.new_tty(0, true)
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

-- A resized terminal: laid out again, and the conversation loaded again
-- for the rows it has now.
local winch = uv.new_signal()
winch:start("sigwinch", function()
  if loop_done then return end
  load_conversation()
  redraw()
end)

redraw()
uv.run()
