-- examples/luv_loop.lua: driving nim-lua from an existing event loop (luv).
--
-- nim:getfd() is readable whenever nim:poll has work, so a luv poll handle on
-- it calls nim:poll(0) only when there is something to dispatch: no busy
-- loop, no timer polling. The same works with cqueues, copas or any loop
-- that can watch a file descriptor.
local uv = require "luv"
local NIM = require "nim"

local updates, received = 0, 0
local finish   -- below: once every message is stored and its update delivered
local nim = NIM.getInstance{
  account = "alice", db = false,                       -- in memory: nothing written
  onsyncdone = function() print("sync done: the session list is ready") end,
  onupdatesession = function(s)
    updates = updates + 1
    print(("update: %-10s unread=%d  %s"):format(s.id, s.unread, s.lastMsg and s.lastMsg.text or ""))
    finish()
  end,
}

local watcher = uv.new_poll(nim:getfd())
watcher:start("r", function() nim:poll(0) end)

-- Something else the app's loop does: here a timer that imports a message
-- every 20 ms, as if they arrived.
local t0, n = 1700000000000, 0
local timer = uv.new_timer()
timer:start(0, 20, function()
  n = n + 1
  local from = n % 2 == 0 and "bob" or "carol"
  nim:saveMsgsToLocal{msgs = {{scene = "p2p", from = from, to = "alice", time = t0 + n,
    idServer = "m" .. n, type = "text", text = "message " .. n}},
    done = function(err)
      assert(not err, err)
      received = received + 1
      if received == 6 then timer:stop() end            -- enough
      finish()
    end}
end)

-- The done of a save can come before its session's update: shut down
-- cleanly once both are in.
local closing = false
function finish()
  if closing or received < 6 or updates < 6 then return end
  closing = true
  nim:destroy(function()
    watcher:stop()
    watcher:close()
    timer:close()
    print(("%d messages stored, %d session updates delivered"):format(received, updates))
  end)
end

uv.run()
