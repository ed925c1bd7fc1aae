-- examples/love: a small LÖVE 11 game with a chat overlay on nim-lua.
--
--   make LUA=luajit BUILD=build-luajit      (LÖVE embeds LuaJIT: the module built for it)
--   love examples/love ws://127.0.0.1:8787 alice secret [DATADIR]
--
-- Arrow keys fly the ship. The overlay lists the sessions, sticky-top ones
-- first with a gold star, unread counts in red badges, beside the open
-- conversation. Tab (Shift+Tab) or a click opens a session, typing goes to
-- the input line, Enter sends, Ctrl+P pins or unpins the open session, Esc
-- quits. The SDK runs its callbacks inside nim:poll(0), once per frame in
-- love.update. The paths come from NIM_LUA_PATH / NIM_LUA_CPATH, else from
-- this checkout (lua/ and build-luajit/). Under NIM_LOVE_TEST the end of this
-- file lets spec/love_spec.lua drive the game.
local utf8 = require "utf8"           -- LÖVE's (Lua 5.3's utf8 library)

local root = love.filesystem.getSource() .. "/../.."
package.path = (os.getenv("NIM_LUA_PATH") or (root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua"))
  .. ";" .. package.path
package.cpath = (os.getenv("NIM_LUA_CPATH") or (root .. "/build-luajit/?.so")) .. ";" .. package.cpath

local W, H = 800, 600
local LIST = { x = 10, y = 40, w = 250, row = 56 }        -- the session list
local CHAT = { x = 272, y = 250, w = 518, h = 316 }       -- the conversation and the input line
local NIM, nim, problem                                    -- problem: why there is no chat
local sessions, current, conversation = {}, nil, {}
local input, status, notice = "", "connecting", ""
local drawn = { sessions = {}, lines = {} }                -- what the last frame showed
local held = {}                                            -- keys the test driver holds down
local font, small, ship, stars, rocks

local function down(k) return held[k] or love.keyboard.isDown(k) end
local function ctrl() return down("lctrl") or down("rctrl") end

-- Pinned sessions first, then newest first (what chat apps show).
local function ordered()
  local list = {}
  for i, s in ipairs(sessions) do list[i] = s end
  table.sort(list, function(a, b)
    if (a.isTop == true) ~= (b.isTop == true) then return a.isTop == true end
    if (a.updateTime or 0) ~= (b.updateTime or 0) then return (a.updateTime or 0) > (b.updateTime or 0) end
    return a.id < b.id
  end)
  return list
end

local function line_of(m)
  if not m then return "" end
  local body = m.type == "text" and tostring(m.text or "") or ("[" .. tostring(m.type) .. "]")
  body = body:gsub("%s+", " ")
  if not utf8.len(body) then body = body:gsub("[\128-\255]", "?") end   -- LÖVE draws UTF-8 only
  local mark = m.status == "sending" and " ..." or (m.status == "fail" and " (failed)" or "")
  return (m.flow == "out" and "me" or tostring(m.from)) .. ": " .. body .. mark
end

-- text cut between two characters to fit w pixels, "..." last when cut
local function clip(f, text, w)
  if f:getWidth(text) <= w then return text end
  while #text > 0 and f:getWidth(text .. "...") > w do text = text:sub(1, utf8.offset(text, -1) - 1) end
  return text .. "..."
end

local function load_conversation()
  local id = current
  nim:getLocalMsgs{sessionId = id, limit = 20, done = function(err, obj)
    if err or id ~= current then return end
    conversation = {}
    for i = #obj.msgs, 1, -1 do conversation[#conversation + 1] = obj.msgs[i] end   -- oldest first
  end}
end

local function open(id)
  current, notice = id, ""
  nim:setCurrSession(id, function(err) if err then notice = "open: " .. tostring(err) end end)
  load_conversation()
end

local function cycle(step)
  local list = ordered()
  if #list == 0 then return end
  local at = 0
  for i, s in ipairs(list) do if s.id == current then at = i end end
  at = at + step
  if at < 1 then at = #list elseif at > #list then at = 1 end
  open(list[at].id)
end

local function send()
  local text = input:gsub("^%s+", ""):gsub("%s+$", "")
  if text == "" or not current then return end
  local scene, to = current:match("^(%w+)%-(.+)$")
  input = ""
  nim:sendText{scene = scene, to = to, text = text, done = function(err)
    if err then notice = "send: " .. tostring(err) end
  end}
end

local function pin()
  local s = current and NIM.findSession(sessions, current)
  if not s then return end
  local top = s.isTop == true
  nim[top and "deleteStickTopSession" or "addStickTopSession"](nim, {id = s.id, done = function(err)
    notice = err and ("pin: " .. tostring(err)) or ((top and "unpinned " or "pinned ") .. s.to)
  end})
end

function love.load(args)
  font, small = love.graphics.newFont(18), love.graphics.newFont(14)
  love.keyboard.setKeyRepeat(true)
  stars, rocks, ship = {}, {}, { x = 560, y = 130, vx = 0, vy = 0 }
  for i = 1, 80 do stars[i] = { x = love.math.random(0, W), y = love.math.random(0, H), v = love.math.random(20, 80) } end
  for i = 1, 5 do
    rocks[i] = { x = love.math.random(0, W), y = love.math.random(0, H), r = love.math.random(10, 26),
                 vx = love.math.random(-40, 40), vy = love.math.random(-30, 30) }
  end
  local server, account, token, dataDir = args[1], args[2], args[3], args[4]
  if not (server and account and token) then
    problem = "usage: love examples/love ws://HOST:PORT ACCOUNT TOKEN [DATADIR]"
    return
  end
  local ok, mod = pcall(require, "nim")
  if not ok then problem = "require 'nim' failed (make LUA=luajit BUILD=build-luajit):\n" .. tostring(mod) return end
  NIM = mod
  if not dataDir then
    love.filesystem.createDirectory("nim-data")
    dataDir = love.filesystem.getSaveDirectory() .. "/nim-data"
  end
  nim = NIM.getInstance{
    account = account, token = token, server = server, dataDir = dataDir, syncStickTopSessions = true,
    onconnect = function() status = "connected" end,
    ondisconnect = function() status = "disconnected" end,
    onwillreconnect = function() status = "reconnecting" end,
    onsyncdone = function() status = "connected, synced" end,
    onsessions = function(list) sessions = NIM.mergeSessions(sessions, list) end,
    onupdatesession = function(s)
      sessions = NIM.mergeSessions(sessions, s)
      if s.id == current then load_conversation() end
    end,
    onerror = function(e) notice = "error: " .. tostring(e) end,
  }
  love.window.setTitle("nim-lua in LÖVE: " .. account)
end

function love.update(dt)
  if nim then nim:poll(0) end                       -- the SDK's callbacks run here, within 0.5 ms
  local ax = (down("right") and 1 or 0) - (down("left") and 1 or 0)
  local ay = (down("down") and 1 or 0) - (down("up") and 1 or 0)
  ship.vx, ship.vy = (ship.vx + ax * 400 * dt) * 0.98, (ship.vy + ay * 400 * dt) * 0.98
  ship.x, ship.y = (ship.x + ship.vx * dt) % W, (ship.y + ship.vy * dt) % H
  for _, s in ipairs(stars) do s.x = (s.x - s.v * dt) % W end
  for _, r in ipairs(rocks) do r.x, r.y = (r.x + r.vx * dt) % W, (r.y + r.vy * dt) % H end
end

function love.textinput(t)
  if nim and not ctrl() then input = input .. t end
end

function love.keypressed(key)
  if key == "escape" then return love.event.quit() end
  if not nim then return end
  if key == "tab" then cycle((down("lshift") or down("rshift")) and -1 or 1)
  elseif key == "return" or key == "kpenter" then send()
  elseif key == "backspace" then
    local at = utf8.offset(input, -1)                 -- the last character, however many bytes
    if at then input = input:sub(1, at - 1) end
  elseif key == "p" and ctrl() then pin()
  end
end

function love.mousepressed(x, y)
  for _, r in ipairs(drawn.sessions) do
    if x >= r.x and x < r.x + r.w and y >= r.y and y < r.y + r.h then open(r.id) end
  end
end

local function panel(x, y, w, h)
  love.graphics.setColor(0.06, 0.07, 0.12, 0.85)
  love.graphics.rectangle("fill", x, y, w, h, 6)
end

local function star(x, y, r)
  local p = {}
  for i = 0, 9 do
    local a, d = -math.pi / 2 + i * math.pi / 5, i % 2 == 0 and r or r * 0.45
    p[#p + 1], p[#p + 2] = x + d * math.cos(a), y + d * math.sin(a)
  end
  for _, t in ipairs(love.math.triangulate(p)) do love.graphics.polygon("fill", t) end
end

local function draw_scene()
  love.graphics.clear(0.02, 0.03, 0.08)
  love.graphics.setColor(0.8, 0.8, 0.9)
  for _, s in ipairs(stars) do love.graphics.points(s.x, s.y) end
  love.graphics.setColor(0.45, 0.38, 0.32)
  for _, r in ipairs(rocks) do love.graphics.circle("fill", r.x, r.y, r.r) end
  love.graphics.setColor(0.3, 0.9, 0.6)
  local a = math.atan2(ship.vy, ship.vx + 1e-9)
  love.graphics.polygon("fill", ship.x + 16 * math.cos(a), ship.y + 16 * math.sin(a),
    ship.x + 10 * math.cos(a + 2.5), ship.y + 10 * math.sin(a + 2.5),
    ship.x + 10 * math.cos(a - 2.5), ship.y + 10 * math.sin(a - 2.5))
end

local function draw_sessions()
  local list, rows = ordered(), {}
  panel(LIST.x, LIST.y, LIST.w, H - LIST.y - 34)
  love.graphics.setFont(small)
  love.graphics.setColor(0.6, 0.65, 0.8)
  love.graphics.print("Chats (Tab, click)", LIST.x + 10, LIST.y + 6)
  for i, s in ipairs(list) do
    local y = LIST.y + 28 + (i - 1) * LIST.row
    if y + LIST.row > H - 34 then break end
    local r = { id = s.id, name = tostring(s.to), pinned = s.isTop == true, open = s.id == current,
                x = LIST.x + 4, y = y, w = LIST.w - 8, h = LIST.row - 4 }
    love.graphics.setColor(0.12, 0.13, 0.2, 0.9)
    love.graphics.rectangle("fill", r.x, r.y, r.w, r.h, 4)
    if r.open then                                        -- the open session: outlined
      love.graphics.setColor(0.35, 0.55, 1)
      love.graphics.rectangle("line", r.x + 1, r.y + 1, r.w - 2, r.h - 2, 4)
    end
    if r.pinned then
      r.star = { x = r.x + 6, y = r.y + 8, w = 16, h = 16 }
      love.graphics.setColor(1, 0.8, 0.2)
      star(r.x + 14, r.y + 16, 8)
    end
    local right = r.x + r.w - 8
    if (s.unread or 0) > 0 then
      r.badge = s.unread > 99 and "99+" or tostring(s.unread)
      local bw = math.max(34, font:getWidth(r.badge) + 20)
      r.badgeBox = { x = right - bw, y = r.y + 5, w = bw, h = 24 }
      love.graphics.setColor(0.85, 0.15, 0.2)
      love.graphics.rectangle("fill", r.badgeBox.x, r.badgeBox.y, bw, 24, 5)
      love.graphics.setColor(1, 1, 1)
      love.graphics.setFont(font)
      love.graphics.printf(r.badge, r.badgeBox.x, r.badgeBox.y + 2, bw, "center")
      right = r.badgeBox.x - 6
    end
    love.graphics.setFont(font)
    if r.pinned then love.graphics.setColor(1, 0.85, 0.4) else love.graphics.setColor(0.95, 0.95, 0.95) end
    r.label = clip(font, r.name, right - (r.x + 28))
    r.labelBox = { x = r.x + 28, y = r.y + 4, w = font:getWidth(r.label), h = font:getHeight() }
    love.graphics.print(r.label, r.labelBox.x, r.labelBox.y)
    love.graphics.setFont(small)
    love.graphics.setColor(0.7, 0.72, 0.8)
    r.last = clip(small, line_of(s.lastMsg), r.w - 36)
    r.lastBox = { x = r.x + 28, y = r.y + 30, w = small:getWidth(r.last), h = small:getHeight() }
    love.graphics.print(r.last, r.lastBox.x, r.lastBox.y)
    rows[#rows + 1] = r
  end
  drawn.sessions = rows
end

local function draw_chat()
  local lines, x, w = {}, CHAT.x + 12, CHAT.w - 24
  panel(CHAT.x, CHAT.y, CHAT.w, CHAT.h)
  love.graphics.setFont(font)
  love.graphics.setColor(0.6, 0.8, 1)
  drawn.title = current and ("Chat with " .. current:match("^%w+%-(.*)$")) or "No chat open: press Tab"
  love.graphics.print(drawn.title, x, CHAT.y + 8)
  local bottom, step = CHAT.y + CHAT.h - 48, font:getHeight() + 2   -- above the input line
  for i = #conversation, 1, -1 do                                 -- newest at the bottom
    local text = line_of(conversation[i])
    local _, wrapped = font:getWrap(text, w)
    local top = bottom - #wrapped * step
    if top < CHAT.y + 36 then break end
    love.graphics.setColor(conversation[i].flow == "out" and 0.55 or 0.95, 0.95, conversation[i].flow == "out" and 0.6 or 0.95)
    love.graphics.printf(text, x, top, w)
    table.insert(lines, 1, { text = text, x = x, y = top, w = w, h = #wrapped * step })
    bottom = top
  end
  drawn.lines = lines
  drawn.inputBox = { x = x - 4, y = CHAT.y + CHAT.h - 40, w = w + 8, h = 30 }
  love.graphics.setColor(0.15, 0.17, 0.27)
  love.graphics.rectangle("fill", x - 4, drawn.inputBox.y, w + 8, 30, 4)
  love.graphics.setColor(1, 1, 1)
  local shown = current and ("> " .. input .. "_") or ""
  while font:getWidth(shown) > w do shown = shown:sub(utf8.offset(shown, 2)) end   -- the end in view
  love.graphics.print(shown, x, drawn.inputBox.y + 4)
  drawn.input = shown
end

function love.draw()
  draw_scene()
  love.graphics.setFont(font)
  love.graphics.setColor(1, 1, 1)
  if problem then return love.graphics.printf(problem, 20, 20, W - 40) end
  love.graphics.print("nim-lua in LÖVE: " .. status, LIST.x, 10)
  draw_sessions()
  draw_chat()
  love.graphics.setFont(small)
  love.graphics.setColor(1, 0.85, 0.4)
  love.graphics.printf(notice, W / 2, 14, W / 2 - 10, "right")      -- the last command's result
  love.graphics.setColor(0.7, 0.72, 0.8)
  love.graphics.print("Tab: next chat    Enter: send    Ctrl+P: pin    arrows: fly    Esc: quit", LIST.x, H - 26)
end

function love.quit()                               -- close cleanly: what was sent gets its reply
  if not nim then return end
  local closed, deadline = false, love.timer.getTime() + 3
  nim:destroy(function() closed = true end)
  while not closed and love.timer.getTime() < deadline do nim:poll(10) end
end

---------------------------------------------------------------- the test driver
-- NIM_LOVE_TEST=DIR: each frame, the new lines of DIR/commands are run as
-- the player's input (text T: love.textinput per character; key K or key
-- ctrl+K: love.keypressed; click X Y: love.mousepressed; shot: the
-- screenshot to DIR/shot.png and what that frame drew to DIR/shot.json),
-- and what the frame drew goes to DIR/state.json when it changed.
local TEST = os.getenv("NIM_LOVE_TEST")
if not TEST then return end

function love.errorhandler(msg)                    -- no error screen to wait on: say it and exit
  io.stderr:write("error: ", debug.traceback(tostring(msg), 2), "\n")
end

local function json(v)
  local t = type(v)
  if t == "string" then return '"' .. v:gsub('[%c"\\]', function(c) return ("\\u%04x"):format(c:byte()) end) .. '"' end
  if t == "number" then return ("%.14g"):format(v) end
  if t ~= "table" then return tostring(v) end
  local out = {}
  if next(v) == nil or v[1] ~= nil then
    for i, x in ipairs(v) do out[i] = json(x) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  for k, x in pairs(v) do out[#out + 1] = json(tostring(k)) .. ":" .. json(x) end
  table.sort(out)
  return "{" .. table.concat(out, ",") .. "}"
end

local function write(name, data)                    -- whole or not at all: a rename
  local f = assert(io.open(TEST .. "/" .. name .. ".tmp", "wb"))
  f:write(data)
  f:close()
  assert(os.rename(TEST .. "/" .. name .. ".tmp", TEST .. "/" .. name))
end

local ran, shots, last = 0, 0, nil
local function dump()
  return json{ commands = ran, shots = shots, status = status, current = current or false, width = W, height = H,
               sessions = drawn.sessions, lines = drawn.lines, title = drawn.title, input = drawn.input,
               inputBox = drawn.inputBox, notice = notice }
end

local COMMANDS = {
  text = function(t) for ch in t:gmatch(utf8.charpattern) do love.textinput(ch) end end,
  key = function(k)
    local mod, key = k:match("^(%a+)%+(.+)$")
    if mod then held["l" .. mod] = true end
    love.keypressed(key or k)
    if mod then held["l" .. mod] = nil end
  end,
  click = function(xy)
    local x, y = xy:match("^(%S+) (%S+)$")
    love.mousepressed(tonumber(x), tonumber(y), 1)
  end,
  shot = function()
    love.graphics.captureScreenshot(function(image)   -- at the end of this frame, after love.draw
      write("shot.png", image:encode("png"):getString())
      shots = shots + 1
      write("shot.json", dump())
    end)
  end,
}

local update, draw = love.update, love.draw
function love.update(dt)
  update(dt)
  local f = io.open(TEST .. "/commands", "rb")
  local text = f and f:read("*a") or ""
  if f then f:close() end
  local n = 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    if n > ran then
      ran = n
      local verb, rest = line:match("^(%a+) ?(.*)$")
      assert(COMMANDS[verb], "unknown test command: " .. line)(rest)
    end
  end
end

function love.draw()
  draw()
  local state = dump()
  if state ~= last then write("state.json", state); last = state end
end
