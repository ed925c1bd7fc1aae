-- Server-side session state through the real nim-server: read pointers
-- (syncSessionUnread, setCurrSession), deleting sessions, receipts,
-- sticky top and teams, across devices and accounts.
local N = require "net_helpers"
local H = require "helpers"

describe("network sessions #net", function()
  local srv
  before_each(function() srv = N.start { "alice", "bob", "carol" } end)
  after_each(function() N.close_all(); srv:cleanup() end)

  describe("syncSessionUnread", function()
    it("a reset on one device moves the pointer on my other devices and on a fresh one", function()
      local a1, r1 = N.open(srv, "alice", { syncSessionUnread = true })
      local a2, r2 = N.open(srv, "alice", { syncSessionUnread = true })
      local b = N.open(srv, "bob")
      local last
      for i = 1, 3 do last = N.send(b, "alice", "u" .. i) end
      N.wait_update(r1, "p2p-bob", function(s) return s.unread == 3 end)
      N.wait_update(r2, "p2p-bob", function(s) return s.unread == 3 end)
      local err = N.callp(a1, "resetSessionUnread", "p2p-bob")
      assert.is_nil(err)
      local s2 = N.wait_update(r2, "p2p-bob", function(s) return s.unread == 0 end, "pointer pushed to device 2")
      assert.equals(last.idServer, s2.lastMsg.idServer)
      -- a fresh device gets the pointer at login: nothing unread
      local _, r3 = N.open(srv, "alice", { syncSessionUnread = true })
      assert.equals(0, r3.sessions[1][1].unread)
      -- without syncSessionUnread, the device keeps its own pointer
      local _, r4 = N.open(srv, "alice")
      assert.equals(3, r4.sessions[1][1].unread)
      -- a new message counts from the pointer everywhere
      N.send(b, "alice", "u4")
      N.wait_update(r2, "p2p-bob", function(s) return s.unread == 1 and s.lastMsg.text == "u4" end)
      assert.same({}, N.verify(a2).mismatches)
    end)

    it("a reset made offline reaches my other devices at the next login, even after a restart", function()
      local path = H.tmpdir() .. "/alice-1.db"
      local a1, r1 = N.open(srv, "alice", { syncSessionUnread = true, db = path })
      local a2, r2 = N.open(srv, "alice", { syncSessionUnread = true })
      local b = N.open(srv, "bob")
      for i = 1, 2 do N.send(b, "alice", "o" .. i) end
      N.wait_update(r1, "p2p-bob", function(s) return s.unread == 2 end)
      N.wait_update(r2, "p2p-bob", function(s) return s.unread == 2 end)
      assert.is_nil(N.callp(a1, "disconnect"))
      assert.is_nil(N.callp(a1, "resetSessionUnread", "p2p-bob"))   -- offline: kept on disk only
      N.close(a1)                                                      -- the app quits before reconnecting
      local n0 = #r2.updates
      local again = N.open(srv, "alice", { syncSessionUnread = true, db = path })
      local s2 = N.wait_update(r2, "p2p-bob", function(s) return s.unread == 0 end,
        "the pointer from the restarted device")
      assert.is_true(#r2.updates > n0)
      assert.equals(0, s2.unread)
      -- and a fresh device starts from it
      local _, r3 = N.open(srv, "alice", { syncSessionUnread = true })
      assert.equals(0, r3.sessions[1][1].unread)
      assert.same({}, N.verify(again).mismatches)
      assert.same({}, N.verify(a2).mismatches)
    end)

    it("a reset made offline survives SIGKILL of the process and reaches my other devices", function()
      local path = H.tmpdir() .. "/alice-k.db"
      local a2, r2 = N.open(srv, "alice", { syncSessionUnread = true })
      local b = N.open(srv, "bob")
      for i = 1, 2 do N.send(b, "alice", "k" .. i) end
      N.wait_update(r2, "p2p-bob", function(s) return s.unread == 2 end)
      local env = ("LUA_PATH='%s' LUA_CPATH='%s' "):format(package.path, package.cpath)
      local cmd = "exec sh -c 'echo $$; exec env " .. env:gsub("'", "'\\''") ..
        ("%s spec/fixtures/ack_writer.lua %s alice %s %s'"):format(H.LUA, srv.url, N.token("alice"), path)
      local p = assert(io.popen(cmd, "r"))
      local pid = assert(tonumber(p:read("*l")), "writer pid")
      assert.equals("reset", p:read("*l"))              -- the offline reset's done reported success
      os.execute("kill -9 " .. pid)
      p:close()
      assert.equals(2, N.session(a2, "p2p-bob").unread) -- nothing reached the server yet
      N.open(srv, "alice", { syncSessionUnread = true, db = path })   -- the app starts again
      N.wait_update(r2, "p2p-bob", function(s) return s.unread == 0 end, "the pointer kept through SIGKILL")
    end)

    it("a reset of a local-only session (an id the server refuses) does not hold back the others", function()
      local a1 = N.open(srv, "alice", { syncSessionUnread = true })
      local _, r2 = N.open(srv, "alice", { syncSessionUnread = true })
      local b = N.open(srv, "bob")
      local err = N.call(a1, "saveMsgsToLocal", { msgs = { { scene = "p2p", from = "Local Only!", to = "alice",
        time = 1, idClient = "l1", text = "kept here" } } })
      assert.is_nil(err)
      N.send(b, "alice", "z1")
      N.wait_update(r2, "p2p-bob", function(s) return s.unread == 1 end)
      assert.is_nil(N.callp(a1, "resetAllSessionUnread"))   -- both sessions at once
      N.wait_update(r2, "p2p-bob", function(s) return s.unread == 0 end, "bob's pointer despite the local one")
    end)

    it("the pointer never moves back", function()
      local a1, r1 = N.open(srv, "alice", { syncSessionUnread = true })
      local b = N.open(srv, "bob")
      N.send(b, "alice", "x1")
      N.wait_update(r1, "p2p-bob", function(s) return s.unread == 1 end)
      N.callp(a1, "resetSessionUnread", "p2p-bob")
      -- an older device with a stale pointer logs in: its pointer moves forward, a1's stays
      local _, r2 = N.open(srv, "alice", { syncSessionUnread = true })
      assert.equals(0, r2.sessions[1][1].unread)
      N.send(b, "alice", "x2")
      local s = N.wait_update(r1, "p2p-bob", function(x) return x.lastMsg.text == "x2" end)
      assert.equals(1, s.unread)
    end)

    it("setCurrSession keeps the session at zero and advances the pointer on the server", function()
      local a1, r1 = N.open(srv, "alice", { syncSessionUnread = true })
      local a2, r2 = N.open(srv, "alice", { syncSessionUnread = true })
      local b = N.open(srv, "bob")
      N.send(b, "alice", "c0")
      N.wait_update(r2, "p2p-bob", function(s) return s.unread == 1 end)
      assert.is_nil(N.callp(a1, "setCurrSession", "p2p-bob"))
      N.wait_update(r2, "p2p-bob", function(s) return s.unread == 0 end, "pointer of setCurrSession")
      for i = 1, 3 do N.send(b, "alice", "c" .. i) end
      local s1 = N.wait_update(r1, "p2p-bob", function(s) return s.lastMsg.text == "c3" end)
      assert.equals(0, s1.unread)
      -- device 2 counts the message, then the pointer from device 1 brings it back to 0
      local s2 = N.wait_update(r2, "p2p-bob", function(s) return s.lastMsg.text == "c3" and s.unread == 0 end,
        "device 2 follows the current session's pointer")
      assert.equals(0, s2.unread)
      a1:resetCurrSession()
      N.send(b, "alice", "c4")
      N.wait_update(r1, "p2p-bob", function(s) return s.lastMsg.text == "c4" end)
      assert.equals(1, N.last_update(r1, "p2p-bob").unread)
      assert.same({}, N.verify(a1).mismatches)
      assert.same({}, N.verify(a2).mismatches)
    end)
  end)

  describe("deleting sessions", function()
    it("deleteSession: a fresh device does not get the session back until a new message", function()
      local a = N.open(srv, "alice")
      local b = N.open(srv, "bob")
      for i = 1, 3 do N.send(b, "alice", "d" .. i) end
      N.wait(function() return N.session(a, "p2p-bob") ~= nil end, 5, "session at alice")
      local err, obj = N.call(a, "deleteSession", { scene = "p2p", to = "bob" })
      assert.is_nil(err)
      assert.same({ "p2p-bob" }, obj.sessions)
      -- local storage is untouched
      assert.is_not_nil(N.session(a, "p2p-bob"))
      local fresh, rf = N.open(srv, "alice")
      assert.equals(0, #rf.sessions)
      assert.is_nil(N.session(fresh, "p2p-bob"))
      N.close(fresh)
      -- a new message brings it back, with only the new message
      N.send(b, "alice", "d4")
      local _, rf2 = N.open(srv, "alice")
      local s = rf2.sessions[1][1]
      assert.equals("p2p-bob", s.id)
      assert.equals("d4", s.lastMsg.text)
      assert.equals(1, s.unread)
    end)

    it("deleteSessions and deleteLocalSession{isDeleteRoaming=true}", function()
      local a = N.open(srv, "alice")
      local b = N.open(srv, "bob")
      local c = N.open(srv, "carol")
      N.send(b, "alice", "from bob")
      N.send(c, "alice", "from carol")
      N.wait(function() return N.session(a, "p2p-carol") ~= nil and N.session(a, "p2p-bob") ~= nil end, 5, "sessions")
      local err = N.call(a, "deleteLocalSession", { id = "p2p-bob", isDeleteRoaming = true })
      assert.is_nil(err)
      assert.is_nil(N.session(a, "p2p-bob"))              -- gone locally
      err = N.call(a, "deleteSessions", { sessions = { { scene = "p2p", to = "carol" } } })
      assert.is_nil(err)
      local _, rf = N.open(srv, "alice")
      assert.equals(0, #rf.sessions)                       -- and on the server
    end)

    it("deleting my session with bob never touches bob's session with me", function()
      local a = N.open(srv, "alice")
      local b = N.open(srv, "bob")
      N.send(a, "bob", "hello bob")
      assert.is_nil(N.call(a, "deleteSession", { scene = "p2p", to = "bob" }))
      -- alice cannot delete bob's view: a fresh device of bob still has it
      local _, rb = N.open(srv, "bob")
      assert.equals("p2p-alice", rb.sessions[1][1].id)
      assert.equals("hello bob", rb.sessions[1][1].lastMsg.text)
      N.close(b)
    end)
  end)

  describe("receipts", function()
    it("sendMsgReceipt sets msgReceiptTime on the sender's session, forward only", function()
      local a, ra = N.open(srv, "alice")
      local b, rb = N.open(srv, "bob")
      local m1 = N.send(a, "bob", "r1")
      local m2 = N.send(a, "bob", "r2")
      N.wait(function() return #rb.msgs >= 2 end, 5, "bob gets both")
      local err, obj = N.call(b, "sendMsgReceipt", { msg = rb.msgs[2] })
      assert.is_nil(err)
      assert.equals("p2p-alice", obj.sessionId)
      assert.equals(m2.time, obj.time)
      local s = N.wait_update(ra, "p2p-bob", function(x) return x.msgReceiptTime == m2.time end)
      assert.equals(m2.time, s.msgReceiptTime)
      -- an older receipt does not move it back
      N.call(b, "sendMsgReceipt", { msg = rb.msgs[1] })
      assert.equals(m2.time, N.session(a, "p2p-bob").msgReceiptTime)
      assert.is_true(m1.time <= m2.time)
      -- a fresh device of alice gets it at login
      local _, rf = N.open(srv, "alice")
      assert.equals(m2.time, rf.sessions[1][1].msgReceiptTime)
      -- a receipt for a message not sent to me is refused
      err = N.call(a, "sendMsgReceipt", { msg = m1 })
      assert.equals(403, err.code)
    end)
  end)

  describe("sticky top", function()
    it("add, update, delete and get, synced to every device of mine", function()
      local a1, r1 = N.open(srv, "alice", { syncStickTopSessions = true })
      local a2, r2 = N.open(srv, "alice", { syncStickTopSessions = true })
      local err, obj = N.call(a1, "addStickTopSession", { id = "p2p-bob", topCustom = "pin" })
      assert.is_nil(err)
      assert.equals("p2p-bob", obj.stickTopSession.id)          -- the JS SDK's shape
      assert.equals("pin", obj.stickTopSession.topCustom)
      local s1 = N.wait_update(r1, "p2p-bob", function(s) return s.isTop end)
      assert.equals("pin", s1.topCustom)
      local s2 = N.wait_update(r2, "p2p-bob", function(s) return s.isTop end, "top on device 2")
      assert.equals("pin", s2.topCustom)
      err = N.call(a2, "updateStickTopSession", { id = "p2p-bob", topCustom = "pin2" })
      assert.is_nil(err)
      N.wait_update(r1, "p2p-bob", function(s) return s.topCustom == "pin2" end, "update on device 1")
      local _, got = N.call(a1, "getStickTopSessions")          -- the array, as the JS SDK passes it
      assert.equals(1, #got)
      assert.equals("p2p-bob", got[1].id)
      assert.equals("pin2", got[1].topCustom)
      -- a fresh device: onStickTopSessions at login, and the session is top
      local _, r3 = N.open(srv, "alice", { syncStickTopSessions = true })
      assert.equals(1, #r3.tops)
      assert.equals("p2p-bob", r3.tops[1][1].id)
      assert.is_true(r3.sessions[1][1].isTop)
      assert.equals("pin2", r3.sessions[1][1].topCustom)
      err = N.call(a1, "deleteStickTopSession", { id = "p2p-bob" })
      assert.is_nil(err)
      N.wait_update(r2, "p2p-bob", function(s) return s.isTop == false end, "delete on device 2")
      assert.is_false(N.session(a1, "p2p-bob").isTop)
      err = N.call(a1, "deleteStickTopSession", { id = "p2p-bob" })
      assert.equals(404, err.code)
    end)

    it("a list bigger than one frame arrives whole at login; past 100 the server says 419", function()
      local a1 = N.open(srv, "alice", { db = false })
      local custom = string.rep("\1", 1024)   -- escaped to 6 KiB each: 600 KiB of list
      for i = 1, 100 do
        assert.is_nil((N.call(a1, "addStickTopSession", { id = "p2p-t" .. i, topCustom = custom })))
      end
      local err = N.call(a1, "addStickTopSession", { id = "p2p-t101" })
      assert.equals(419, err.code)
      assert.matches("at most 100 sticky%-top sessions", err.message)
      local _, r2 = N.open(srv, "alice", { db = false, syncStickTopSessions = true })
      assert.equals(1, #r2.tops)                -- one callback, with every page of it
      assert.equals(100, #r2.tops[1])
      local tops = 0
      for _, s in ipairs(r2.sessions[1]) do if s.isTop and s.topCustom == custom then tops = tops + 1 end end
      assert.equals(100, tops)
    end)
  end)

  describe("per-account caps", function()
    it("a read pointer past the server's cap stays on this device, and onerror says why", function()
      local small = N.start({ "alice", "bob", "carol" }, { args = { "--max-state", "1,10,10" } })
      local a = N.open(small, "alice", { db = false })
      local c = N.open(small, "carol", { db = false })
      local b, rb = N.open(small, "bob", { db = false, syncSessionUnread = true })
      N.send(a, "bob", "from alice")
      N.send(c, "bob", "from carol")
      N.wait(function() return N.session(b, "p2p-carol") ~= nil end, 10, "bob has both")
      assert.is_nil((N.callp(b, "resetSessionUnread", "p2p-alice")))
      assert.is_nil((N.callp(b, "resetSessionUnread", "p2p-carol")))
      N.wait(function() return #rb.errors > 0 end, 10, "the second pointer refused")
      assert.equals(419, rb.errors[1].code)
      assert.equals("updateReadPointers", rb.errors[1].event)
      assert.matches("at most 1 sessions with a read pointer", rb.errors[1].message)
      assert.equals(0, N.session(b, "p2p-carol").unread)          -- still read here
      -- one batch with a known session and the refused one: the known one moves
      N.send(a, "bob", "again from alice")
      N.send(c, "bob", "again from carol")
      N.wait(function() return N.session(b, "p2p-alice").unread == 1 and N.session(b, "p2p-carol").unread == 1 end,
             10, "new ones from alice and carol")
      assert.is_nil((N.callp(b, "resetSessionsUnread", { "p2p-alice", "p2p-carol" })))
      N.wait(function() return #rb.errors > 1 end, 10, "the batch answered 419")
      local _, r2 = N.open(small, "bob", { db = false, syncSessionUnread = true })
      local unread = {}
      for _, s in ipairs(r2.sessions[1]) do unread[s.id] = s.unread end
      assert.same({ ["p2p-alice"] = 0, ["p2p-carol"] = 2 }, unread)
      N.close_all()
      small:cleanup()
    end)
  end)

  describe("teams", function()
    it("createTeam and team messages reach every member's team session", function()
      local a, ra = N.open(srv, "alice")
      local b, rb = N.open(srv, "bob")
      local _, rc = N.open(srv, "carol")
      local err, obj = N.call(a, "createTeam", { name = "crew", accounts = { "bob", "carol" } })
      assert.is_nil(err)
      local tid = obj.team.teamId
      assert.matches("^%d+$", tid)
      assert.equals("alice", obj.team.owner)
      local m = N.send(b, tid, "all hands", "team")
      assert.equals("team-" .. tid, m.sessionId)
      local sa = N.wait_update(ra, "team-" .. tid, function(s) return s.lastMsg.text == "all hands" end)
      assert.equals(1, sa.unread)
      assert.equals("team", sa.scene)
      local sc = N.wait_update(rc, "team-" .. tid, function(s) return s.lastMsg.text == "all hands" end)
      assert.equals(1, sc.unread)
      assert.equals("bob", sc.lastMsg.from)
      local sb = N.wait_update(rb, "team-" .. tid, function(s) return s.lastMsg.text == "all hands" end)
      assert.equals(0, sb.unread)
      err = N.call(a, "createTeam", { name = "x", accounts = { "nobody" } })
      assert.equals(404, err.code)
      err = N.call(a, "sendText", { scene = "team", to = "999999", text = "x" })
      assert.equals(404, err.code)
    end)
  end)
end)
