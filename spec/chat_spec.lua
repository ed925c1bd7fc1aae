-- examples/chat.lua driven in tmux against the real nim-server: what the
-- screen shows after each command, and a peer on the other side.
local N = require "net_helpers"
local H = require "helpers"
local uv = require "luv"

local SOCK = "nimchat" .. math.random(1, 1e9)

-- Under make asan the specs run with the sanitizers in LD_PRELOAD: tools
-- (tmux, pgrep) run without it, and the chat process gets it explicitly.
local PRELOAD = os.getenv("LD_PRELOAD")
local TOOL = PRELOAD and "env -u LD_PRELOAD " or ""

local function tmux(args)
  local p = assert(io.popen(TOOL .. "tmux -L " .. SOCK .. " " .. args .. " 2>&1"))
  local out = p:read("a")
  p:close()
  return out
end

local function screen() return tmux("capture-pane -p -t chat") end

-- Waits until the screen matches every pattern and none of the `absent`
-- ones (pumping the spec's own instances meanwhile); fails with the last
-- screen after timeout s. The chat redraws on every event, so a screen can
-- show one change before the next (a conversation before its badge goes):
-- what must be gone is waited for too, never checked once.
local function wait_screen(patterns, timeout, what, absent)
  if type(patterns) == "string" then patterns = {patterns} end
  local deadline = uv.hrtime() + (timeout or 10) * 1e9
  local s
  while true do
    s = screen()
    local all = true
    for _, p in ipairs(patterns) do if not s:find(p) then all = false break end end
    for _, p in ipairs(absent or {}) do if s:find(p) then all = false break end end
    if all then return s end
    if uv.hrtime() > deadline then error("timed out waiting for " .. (what or patterns[1]) .. "; screen:\n" .. s, 2) end
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
  local stat = f:read("a")
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
    tmux(("new-session -d -s chat -x 120 -y 30 %q"):format(
      ("%s lua5.4 examples/chat.lua %s alice %s %s; echo EXIT=$?; sleep 60"):format(
        env, srv.url, N.token("alice"), dir)))
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
    local p = io.popen(TOOL .. "pgrep -P " .. pane .. " lua5.4")
    local pid = p:read("l")
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
    wait_screen({"%] bob: great, see you", "p2p%-bob%s+bob: great, see you"})
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
    wait_screen({"bye", "EXIT=0"})
  end)
end)
