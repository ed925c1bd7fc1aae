-- getHistoryMsgs: the server's messages of one session, paged back (or
-- forward) with endTime + lastMsgId, stored locally so getLocalMsgs finds
-- them, and never counted as unread.
local N = require "net_helpers"

local function texts(list)
  local t = {}
  for i, m in ipairs(list) do t[i] = m.text end
  return t
end

local function range(from, to, step)
  local t = {}
  for i = from, to, step or 1 do t[#t + 1] = "m" .. i end
  return t
end

describe("network history #net", function()
  local srv, alice, bob
  local TOTAL = 250
  setup(function()
    srv = N.start { "alice", "bob", "carol", "dave" }
    alice = N.open(srv, "alice", { db = false })
    for i = 1, TOTAL do N.send(alice, "bob", "m" .. i) end
    -- bob's first device stores them all: they are delivered, so a new
    -- device gets only the latest 100 at login and the rest through history
    local b1 = N.open(srv, "bob", { db = false })
    assert.equals(TOTAL, #N.msgs(b1, "p2p-alice"))
    N.close(b1)
    bob = N.open(srv, "bob", { db = false })
  end)
  teardown(function() N.close_all(); srv:cleanup() end)

  it("pages back, newest first, to the first message, and stores every page", function()
    assert.equals(100, #N.msgs(bob, "p2p-alice"))
    local unread = N.session(bob, "p2p-alice").unread
    local got, pages, opts = {}, 0, { scene = "p2p", to = "alice", limit = 100 }
    while true do
      local err, obj = N.call(bob, "getHistoryMsgs", opts)
      assert.is_nil(err)
      pages = pages + 1
      for _, m in ipairs(obj.msgs) do got[#got + 1] = m end
      if #obj.msgs < 100 then break end
      local last = obj.msgs[#obj.msgs]
      opts = { scene = "p2p", to = "alice", limit = 100, endTime = last.time, lastMsgId = last.idServer }
    end
    assert.equals(3, pages)
    assert.same(range(TOTAL, 1, -1), texts(got))
    for _, m in ipairs(got) do
      assert.equals("p2p-alice", m.sessionId)
      assert.equals("in", m.flow)
    end
    -- stored: getLocalMsgs finds all of them, once each
    assert.same(range(1, TOTAL), texts(N.msgs(bob, "p2p-alice")))
    -- fetched history never changes unread, nor the session's last message
    local s = N.session(bob, "p2p-alice")
    assert.equals(unread, s.unread)
    assert.equals("m" .. TOTAL, s.lastMsg.text)
    assert.same({}, N.verify(bob).mismatches)
  end)

  it("reverse pages forward, oldest first, from beginTime", function()
    local err, obj = N.call(bob, "getHistoryMsgs", { scene = "p2p", to = "alice", reverse = true, limit = 30 })
    assert.is_nil(err)
    assert.same(range(1, 30), texts(obj.msgs))
    local last = obj.msgs[30]
    err, obj = N.call(bob, "getHistoryMsgs", { scene = "p2p", to = "alice", reverse = true, limit = 30,
                                               beginTime = last.time, lastMsgId = last.idServer })
    assert.is_nil(err)
    assert.same(range(31, 60), texts(obj.msgs))
  end)

  it("keeps to beginTime and endTime, both inclusive", function()
    local all = N.msgs(bob, "p2p-alice")
    local lo, hi = all[40].time, all[60].time
    local err, obj = N.call(bob, "getHistoryMsgs", { scene = "p2p", to = "alice", beginTime = lo, endTime = hi })
    assert.is_nil(err)
    assert.is_true(#obj.msgs >= 21)
    for _, m in ipairs(obj.msgs) do assert.is_true(m.time >= lo and m.time <= hi) end
    local n = 0
    for _, m in ipairs(all) do if m.time >= lo and m.time <= hi then n = n + 1 end end
    assert.equals(n, #obj.msgs)
  end)

  it("answers an empty list for a session with no messages, and for my own sent ones too", function()
    local err, obj = N.call(bob, "getHistoryMsgs", { scene = "p2p", to = "carol" })
    assert.is_nil(err)
    assert.same({}, obj.msgs)
    -- the sender's side of the same session
    err, obj = N.call(alice, "getHistoryMsgs", { scene = "p2p", to = "bob", limit = 5 })
    assert.is_nil(err)
    assert.same(range(TOTAL, TOTAL - 4, -1), texts(obj.msgs))
    assert.equals("out", obj.msgs[1].flow)
  end)

  it("fills the limit with big messages across the server's byte-bounded replies", function()
    local d = N.open(srv, "carol", { db = false })
    local big = {}
    for i = 1, 60 do big[i] = string.rep(string.char(97 + i % 26), 16000) end
    for i = 1, 60 do N.send(alice, "carol", big[i]) end
    N.wait(function() return #N.msgs(d, "p2p-alice") == 60 end, 20, "carol has the 60 big messages")
    local err, obj = N.call(d, "getHistoryMsgs", { scene = "p2p", to = "alice", limit = 60 })
    assert.is_nil(err)
    assert.equals(60, #obj.msgs)
    for i, m in ipairs(obj.msgs) do assert.equals(big[61 - i], m.text) end
  end)

  it("refuses bad arguments at once, naming them", function()
    local function bad(opts, pat)
      opts.scene = opts.scene or "p2p"
      opts.to = opts.to or "alice"
      local ok, e = pcall(bob.getHistoryMsgs, bob, opts)
      assert.is_false(ok)
      assert.matches(pat, tostring(e))
    end
    bad({ limit = 101 }, "limit")
    bad({ limit = 0 }, "limit")
    bad({ lastMsgId = 12 }, "lastMsgId")
    bad({ lastMsgId = "x1" }, "lastMsgId")
    bad({ beginTime = 5, endTime = 4 }, "beginTime")
    bad({ reverse = "yes" }, "reverse")
    bad({ scene = "superTeam" }, "scene")
    bad({ to = "" }, "to")
  end)

  it("answers the server's refusal and Not_Connected as errors", function()
    local err = N.call(bob, "getHistoryMsgs", { scene = "p2p", to = "not an account" })
    assert.equals(414, err.code)
    assert.matches("to", err.message)
    local off = require("nim").getInstance { account = "zed", db = false }   -- local only
    N.live[off] = {}
    err = N.call(off, "getHistoryMsgs", { scene = "p2p", to = "alice" })
    assert.equals("Not_Connected", err.code)
    N.close(off)
  end)

  it("asked during the login sync, waits for its end: the sync's messages still count as unread", function()
    local B, pad = 1500, string.rep("p", 4000)   -- a sync of 6 MB takes a while
    for i = 1, B do
      alice:sendText { scene = "p2p", to = "dave", text = "s" .. i .. pad }
      if i % 100 == 0 then N.wait(function() alice:poll(0); return true end, 1) end
    end
    N.call(alice, "getStickTopSessions", {})          -- a round trip: the sends are stored
    local answer
    local c, rc = N.open(srv, "dave", { db = false, nowait = true, onconnect = function()
      -- the login was answered: the sync runs now
      answer = false
    end })
    N.wait(function() return answer == false end, 20, "dave's login")
    c:getHistoryMsgs { scene = "p2p", to = "alice", limit = 100, done = function(err, obj)
      answer = { err = err, obj = obj, synced = rc.syncdone }
    end }
    N.wait(function() return answer end, 30, "the history answer")
    assert.is_nil(answer.err)
    assert.equals(1, answer.synced)                     -- answered after onsyncdone
    assert.equals("s" .. B .. pad, answer.obj.msgs[1].text)
    assert.equals(B, N.session(c, "p2p-alice").unread)
    assert.same({}, N.verify(c).mismatches)
  end)
end)
