-- examples/cqueues.lua: nim-lua inside a cqueues application (Debian's
-- lua-cqueues, for 5.4, 5.1 and LuaJIT).
--
--   lua5.4 examples/cqueues.lua          (starts its own nim-server)
--
-- cqueues runs its own coroutines, so requests pass `done` (a call without
-- one raises there: only NIM.run's coroutines yield for the SDK) and wait in
-- cqueues' way: `await` below signals a cqueues condition from the done.
-- One more cqueues coroutine pumps the callbacks: it sleeps on each
-- instance's fd (nim:getfd(), readable while callbacks are queued) and
-- calls nim:poll(0), so the process sleeps while nothing happens; it stops
-- polling before the instance is destroyed (which closes the fd).
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local NIM = require "nim"
local server = require "nim.server"

local srv = server.start{accounts = {alice = "a-token", bob = "b-token"}}

-- Calls nim[method]{...} from a cqueues coroutine and returns err, obj.
local function await(nim, method, opts)
  local cond, result = condition.new(), nil
  opts.done = function(err, obj)
    result = {err, obj}
    cond:signal()
  end
  nim[method](nim, opts)
  while not result do cond:wait() end
  return result[1], result[2]
end

local cq = cqueues.new()
local running, stop = true, condition.new()
local arrived = condition.new()            -- signalled on each message alice gets
local synced = {}
local function open(account, token, extra)
  local cbs = {account = account, token = token, server = srv.url, db = false,
               onsyncdone = function() synced[account] = true; arrived:signal() end}
  for k, v in pairs(extra or {}) do cbs[k] = v end
  return NIM.getInstance(cbs)
end
local inbox = {}
local alice = open("alice", "a-token", {onmsg = function(m) inbox[#inbox + 1] = m; arrived:signal() end})
local bob = open("bob", "b-token")

-- The pump: one cqueues coroutine per instance, asleep on its fd.
for _, nim in ipairs {alice, bob} do
  cq:wrap(function()
    local fd = {pollfd = nim:getfd(), events = "r"}
    while running do
      cqueues.poll(fd, stop)               -- the fd readable, or told to stop
      nim:poll(0)
    end
  end)
end

-- The application: a cqueues coroutine that reads top to bottom.
cq:wrap(function()
  while not (synced.alice and synced.bob) do arrived:wait() end
  local ok, e = pcall(bob.sendText, bob, {scene = "p2p", to = "alice", text = "x"})
  print("without done: " .. (ok and "sent?" or e:match("sendText: .*")))
  for i = 1, 3 do
    local err, msg = await(bob, "sendText", {scene = "p2p", to = "alice", text = "hello " .. i})
    assert(not err, tostring(err))
    print("bob sent " .. msg.text)
  end
  while #inbox < 3 do arrived:wait() end
  local _, page = await(alice, "getLocalSessions", {limit = 10})
  local s = page.sessions[1]
  print(("alice: %s, %d unread, last %q"):format(s.id, s.unread, s.lastMsg.text))
  running = false
  stop:signal()
end)

local ok, err = cq:loop()
alice:destroy()                            -- the pumps have stopped polling the fds
bob:destroy()
srv:cleanup()
if not ok then error(err, 0) end
print("cqueues loop done")
