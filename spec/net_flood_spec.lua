-- Live messages in a burst: each poll fires onmsg for every message and
-- onupdatesession once per changed session, after its messages, in its
-- latest state (coalesced per poll, as REFERENCE.md asks).
local N = require "net_helpers"

describe("network live burst #net", function()
  local srv
  setup(function() srv = N.start { "fay", "gus" } end)
  teardown(function() N.close_all(); srv:cleanup() end)

  it("fires onmsg per message and onupdatesession once per session per poll", function()
    local poll_no, log = 0, {}
    local f = N.open(srv, "fay", { db = false,
      onmsg = function(m) log[#log + 1] = { poll = poll_no, kind = "msg", text = m.text } end,
      onupdatesession = function(s)
        log[#log + 1] = { poll = poll_no, kind = "update", id = s.id, text = s.lastMsg.text, unread = s.unread }
      end })
    local g = N.open(srv, "gus", { db = false })
    local COUNT, acked = 200, 0
    for i = 1, COUNT do
      g:sendText { scene = "p2p", to = "fay", text = "m" .. i, done = function(err) assert.is_nil(err); acked = acked + 1 end }
    end
    -- only gus is polled meanwhile (N.wait would poll fay too): fay's backlog grows
    local function until_(cond, what)
      local deadline = os.time() + 20
      while not cond() do assert(os.time() <= deadline, "timed out waiting for " .. what) end
    end
    until_(function() g:poll(5) return acked == COUNT end, "every send acknowledged")
    local msgs = 0
    until_(function()
      poll_no = poll_no + 1
      f:poll(5)
      msgs = 0
      for _, e in ipairs(log) do if e.kind == "msg" then msgs = msgs + 1 end end
      return msgs == COUNT
    end, "every message at fay")
    until_(function()                               -- the last update may come a poll later
      poll_no = poll_no + 1
      f:poll(5)
      return log[#log].kind == "update" and log[#log].text == "m" .. COUNT
    end, "the last update")
    local by_poll, last, seen = {}, nil, {}
    for _, e in ipairs(log) do
      if e.kind == "msg" then seen[e.text] = true
      else assert.is_true(seen[e.text], "the update showing " .. e.text .. " came before its onmsg") end
      local p = by_poll[e.poll] or { msgs = 0, updates = 0, last_msg = nil }
      by_poll[e.poll] = p
      if e.kind == "msg" then
        p.msgs, p.last_msg = p.msgs + 1, e.text
        assert.equals(0, p.updates, "an onmsg after the session's update in one poll")
      else
        p.updates = p.updates + 1
        -- each update newer than the one before (at most one onmsg ahead of
        -- it: the engine queues the update just after the onmsg)
        local n = tonumber(e.text:sub(2))
        assert.is_true(not last or n > tonumber(last.text:sub(2)), "an older state after a newer one")
        last = e
      end
    end
    local coalesced = false
    for _, p in pairs(by_poll) do
      assert.is_true(p.updates <= 1, "one session delivered " .. p.updates .. " times in one poll")
      if p.msgs > 1 then coalesced = true end
    end
    assert.is_true(coalesced, "no poll took more than one message: nothing was coalesced")
    assert.equals("m" .. COUNT, last.text)
    assert.equals(COUNT, last.unread)
  end)
end)
