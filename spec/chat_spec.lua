-- examples/chat.lua driven in tmux against the real nim-server: what the
-- screen shows after each command, and a peer on the other side. The pane
-- is 80x24 (a terminal's default), later 120x40: every screen waited for
-- must fit the pane as the terminal counts columns (CJK and emoji 2,
-- combining marks 0) -- no line wider than the pane, the title on the first
-- row, the column separator in one column on every row.
local N = require "net_helpers"
local H = require "helpers"
local uv = require "luv"

local SOCK = "nimchat" .. math.random(1, 1e9)

-- Under make asan the specs run with the sanitizers in LD_PRELOAD: tools
-- (tmux, pgrep) run without it, and the chat process gets it explicitly.
local PRELOAD = os.getenv("LD_PRELOAD")
local TOOL = PRELOAD and "env -u LD_PRELOAD " or ""

-- The interpreter under test runs the chat.
local LUA = H.LUA or "lua5.4"

local function tmux(args)
  local p = assert(io.popen(TOOL .. "tmux -u -L " .. SOCK .. " " .. args .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

-- The pane's lines, a line the terminal wrapped joined again (-J): a line
-- the chat wrote wider than the pane shows as one line too wide.
local function screen() return tmux("capture-pane -p -J -t chat") end

-- Display widths of strings as the C library counts them (what tmux
-- draws by): ASCII ones by their length, the others through wc -L in a
-- UTF-8 locale, all in one shell.
local function widths(list)
  local out, others = {}, {}
  for i, s in ipairs(list) do
    if s:find("[\128-\255]") then others[#others + 1] = i else out[i] = #s end
  end
  if #others == 0 then return out end
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  for _, i in ipairs(others) do f:write(list[i], "\n") end
  f:close()
  local p = assert(io.popen(TOOL .. [[LC_ALL=C.UTF-8 sh -c 'while IFS= read -r l; do printf "%s\n" "$l" | wc -L; done' < ]] .. path))
  local k = 0
  for n in p:lines() do k = k + 1; out[others[k]] = tonumber(n) end
  p:close()
  os.remove(path)
  assert(k == #others, "wc -L measured " .. k .. " of " .. #others .. " lines")
  return out
end

-- The size the pane has now; every screen waited for must fit it.
local size = { w = 80, h = 24 }

-- What is wrong with screen s as the chat's layout in a w x h pane, or nil
-- and the layout: rows (the lines), sep (the separator's display column,
-- 0-based) and table (how many rows, from the second, the separator runs
-- through: the column titles and the list beside the conversation).
local function layout_fault(s, w, h)
  local rows = {}
  for l in (s .. "\n"):gmatch("([^\n]*)\n") do rows[#rows + 1] = l end
  while #rows > 0 and rows[#rows]:find("^%s*$") do rows[#rows] = nil end
  if #rows > h then return ("%d rows in a %d-row pane"):format(#rows, h) end
  if not (rows[1] or ""):find("^== nim chat") then return "the title is not on the first row (the screen scrolled)" end
  if not rows[#rows]:find("^> ") then return "the prompt is not the last row" end
  local wide = widths(rows)
  for i, n in ipairs(wide) do
    if n > w then return ("row %d is %d columns wide in a %d-column pane"):format(i, n, w) end
  end
  local last = 1
  while rows[last + 1] and not rows[last + 1]:find("^%s*$") do last = last + 1 end
  if last < 3 then return "no column titles and rows below the title" end
  local lefts = {}
  for i = 2, last do
    local left = rows[i]:match("^(.-) | ")
    if not left then return ("row %d has no column separator"):format(i) end
    lefts[#lefts + 1] = left
  end
  local at = widths(lefts)
  for k = 2, #at do
    if at[k] ~= at[1] then
      return ("the separator is at column %d on row %d, %d on row 2"):format(at[k] + 1, k + 1, at[1] + 1)
    end
  end
  return nil, { rows = rows, sep = at[1] + 1, table = last - 1 }
end

-- Waits until the screen matches every pattern and none of the `absent`
-- ones (pumping the spec's own instances meanwhile); fails with the last
-- screen after timeout s. The chat redraws on every event, so a screen can
-- show one change before the next (a conversation before its badge goes):
-- what must be gone is waited for too, never checked once. The screen must
-- also fit the pane (layout_fault) unless fits is false; returns the screen
-- and its layout.
local function wait_screen(patterns, timeout, what, absent, fits)
  if type(patterns) == "string" then patterns = {patterns} end
  local deadline = uv.hrtime() + (timeout or 10) * 1e9
  local s, fault, lay
  while true do
    s = screen()
    local all = true
    for _, p in ipairs(patterns) do if not s:find(p) then all = false break end end
    for _, p in ipairs(absent or {}) do if s:find(p) then all = false break end end
    fault, lay = nil, nil
    if all and fits ~= false then
      fault, lay = layout_fault(s, size.w, size.h)
      all = fault == nil
    end
    if all then return s, lay end
    if uv.hrtime() > deadline then
      if fits ~= false and not fault then fault = layout_fault(s, size.w, size.h) end
      error("timed out waiting for " .. (what or patterns[1])
        .. (fault and ("; the screen does not fit " .. size.w .. "x" .. size.h .. ": " .. fault) or "")
        .. "; screen:\n" .. s, 2)
    end
    for nim in pairs(N.live) do if nim:_state() == "open" then nim:poll(0) end end
    uv.sleep(20)                               -- between two looks at the screen
  end
end

local function type_line(text)
  tmux("send-keys -t chat -l " .. ("%q"):format(text):gsub("\\\n", "\\n"))
  tmux("send-keys -t chat Enter")
end

local function cpu_ticks(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local stat = f:read("*a")
  f:close()
  local rest = stat:match("%) (.*)$")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  return tonumber(fields[12]) + tonumber(fields[13])   -- utime + stime
end

describe("examples/chat.lua in tmux #chat #net", function()
  local srv, bob, rec, dir

  setup(function()
    srv = N.start({"alice", "bob"})
    bob, rec = N.open(srv, "bob", {db = false})
    N.send(bob, "alice", "hello alice")              -- offline for alice until she logs in
    dir = H.tmpdir()
    local env = ("LUA_PATH=%q LUA_CPATH=%q"):format(os.getenv("LUA_PATH") or "", os.getenv("LUA_CPATH") or "")
    if PRELOAD then
      env = env .. (" LD_PRELOAD=%q ASAN_OPTIONS=%q"):format(PRELOAD, os.getenv("ASAN_OPTIONS") or "")
    end
    tmux(("new-session -d -s chat -x 80 -y 24 %q"):format(
      ("%s %s examples/chat.lua %s alice %s %s; echo EXIT=$?; sleep 60"):format(
        env, LUA, srv.url, N.token("alice"), dir)))
  end)

  teardown(function()
    tmux("kill-server")
    N.close_all()
    if srv then srv:cleanup() end
    if dir then H.rmdir(dir) end
  end)

  it("shows the session list from the offline message, with its unread badge", function()
    wait_screen({"status: connected, synced", "p2p%-bob%s+%(1%)%s+bob: hello alice"}, 15)
  end)

  it("uses no CPU while idle", function()
    local pane = tmux("list-panes -t chat -F '#{pane_pid}'"):match("%d+")
    local p = io.popen(TOOL .. "pgrep -P " .. pane .. " " .. LUA:match("[^/]*$"))
    local pid = p:read("*l")
    p:close()
    assert.is_truthy(pid, "chat process not found")
    local t0 = cpu_ticks(pid)
    uv.sleep(1000)                                    -- the measurement interval itself
    local used = cpu_ticks(pid) - t0
    assert.is_true(used <= 2, "chat used " .. used .. " ticks of CPU in 1 s idle")
  end)

  it("opens a session: the conversation shows and the badge goes", function()
    type_line("/open 1")
    wait_screen({"conversation: p2p%-bob", "bob: hello alice"}, 10, "the badge to go", {"%(1%)"})
  end)

  it("sends a message the peer receives, and shows the peer's reply live", function()
    type_line("hi bob, here")
    N.wait(function()
      local u = N.last_update(rec, "p2p-alice")
      return u and u.lastMsg and u.lastMsg.text == "hi bob, here"
    end, 10, "bob receives alice's message")
    wait_screen("me: hi bob, here")
    N.send(bob, "alice", "great, see you")
    wait_screen({"| [%d:]+ bob: great, see you", "p2p%-bob%s+bob: great, see you"})
  end)

  it("keeps to the pane's 24 rows when the conversation is longer, the newest last", function()
    for i = 1, 20 do N.send(bob, "alice", ("line %02d"):format(i)) end
    local _, lay = wait_screen({"| [%d:]+ bob: line 20", "p2p%-bob%s+bob: line 20"})
    local shown = {}
    for i = 2, lay.table + 1 do shown[#shown + 1] = lay.rows[i]:match(" | [%d:]+ bob: line (%d%d)$") end
    assert.is_true(#shown >= 15, "only " .. #shown .. " lines of the conversation in 24 rows")
    assert.is_true(#shown < 20, "all 20 lines shown: the conversation did not outgrow the pane")
    for k, n in ipairs(shown) do assert.equal(20 - #shown + k, tonumber(n)) end  -- the last ones, in order
  end)

  -- e + U+0301 (a combining acute accent): one column
  local SHORT, LONG = "你好😀 cafe\204\129", "长消息测试：宽字符要对齐🎉 end"

  it("measures CJK, emoji and combining marks by their columns, cuts a long text with an ellipsis", function()
    N.send(bob, "alice", LONG)
    N.send(bob, "alice", SHORT)
    local _, lay = wait_screen({"| [%d:]+ bob: " .. SHORT .. "\n", "p2p%-bob%s+bob: " .. SHORT .. "%s+| ", "| [%d:]+ bob: 长消息"})
    -- the row the list shows SHORT on has the separator in the column of
    -- every other row (wait_screen checked them all): found, not skipped
    local row, cut
    for i = 2, lay.table + 1 do
      if lay.rows[i]:find("p2p%-bob%s+bob: " .. SHORT) then row = i end
      cut = cut or lay.rows[i]:match(" | [%d:]+ (bob: 长消息.*)$")
    end
    assert.is_truthy(row, "no row of the list shows " .. SHORT)
    -- LONG does not fit 80 columns: cut between two characters, an ellipsis last
    assert.is_truthy(cut, "the conversation does not show the long message")
    local kept = cut:match("^(.-)…$")
    assert.is_truthy(kept, "the cut message does not end in an ellipsis: " .. cut)
    assert.is_true(#kept > #"bob: 长消息", "cut too short: " .. cut)
    local whole = "bob: " .. LONG
    assert.equal(whole:sub(1, #kept), kept)
    assert.is_falsy(whole:sub(#kept + 1):find("^[\128-\191]"), "cut inside a character: " .. cut)
  end)

  it("uses the room of a 120x40 pane, and fits 80x24 again when it shrinks back", function()
    local _, narrow = wait_screen("bob: " .. SHORT)
    tmux("resize-window -t chat -x 120 -y 40")
    size = { w = 120, h = 40 }
    -- wider: the long message whole; taller: the conversation from its start
    local _, wide = wait_screen({"| [%d:]+ bob: " .. LONG .. "\n", "| [%d:]+ bob: hello alice", "| [%d:]+ bob: line 01\n"},
      10, "the 120x40 layout")
    assert.is_true(wide.sep > narrow.sep, "the separator stayed at column " .. wide.sep)
    assert.is_true(wide.table > narrow.table, "no more rows at 40 than at 24")
    tmux("resize-window -t chat -x 80 -y 24")
    size = { w = 80, h = 24 }
    local _, again = wait_screen({"| [%d:]+ bob: " .. SHORT .. "\n"}, 10, "the 80x24 layout again", {"bob: line 01"})
    assert.equal(narrow.sep, again.sep)
  end)

  it("pins and unpins the open session", function()
    type_line("/pin")
    wait_screen({"pin: ok", "%*p2p%-bob"})
    type_line("/unpin")
    wait_screen("unpin: ok", 10, "the pin mark to go", {"%*p2p%-bob"})
  end)

  it("starts a new session, lists it first and deletes it", function()
    type_line("/new p2p carol")
    wait_screen({"conversation: p2p%-carol", "1 %s*p2p%-carol"})
    type_line("/delete")
    wait_screen({"delete p2p%-carol: ok", "p2p%-bob"}, 10, "p2p-carol to leave the list", {"p2p%-carol%s"})
  end)

  it("answers a bad command and quits cleanly", function()
    type_line("/frobnicate")
    wait_screen("unknown command /frobnicate")
    type_line("/quit")
    wait_screen({"bye", "EXIT=0"}, 10, nil, nil, false)
  end)
end)
