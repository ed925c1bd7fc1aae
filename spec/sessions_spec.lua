-- Local session storage: getLocalSessions, getLocalSession,
-- insertLocalSession, updateLocalSession, deleteLocalSession, db = false.
local H = require "helpers"

local function ids(list)
  local out = {}
  for i, s in ipairs(list) do out[i] = s.id end
  return out
end

describe("local sessions", function()
  local dir, nim, rec
  before_each(function() dir = H.tmpdir(); nim, rec = H.open(dir) end)
  after_each(function() H.close(nim); collectgarbage(); H.rmdir(dir) end)

  local function reopen()
    H.close(nim)
    nim, rec = H.open(dir)
  end

  describe("getLocalSessions", function()
    before_each(function()
      -- times: b=3000, c=2000, d=2000, e=1000
      H.call(nim, "saveMsgsToLocal", { msgs = {
        H.msg("b", "alice", 3000, "1"), H.msg("c", "alice", 2000, "2"),
        H.msg("d", "alice", 2000, "3"), H.msg("e", "alice", 1000, "4"),
      } })
    end)

    it("sorts newest first, ties by id, with the session fields", function()
      local err, obj = H.call(nim, "getLocalSessions")
      assert.is_nil(err)
      assert.same({ "p2p-b", "p2p-d", "p2p-c", "p2p-e" }, ids(obj.sessions))
      local s = obj.sessions[1]
      assert.equals("p2p", s.scene)
      assert.equals("b", s.to)
      assert.equals(3000, s.updateTime)
      assert.equals(1, s.unread)
      assert.equals("1", s.lastMsg.idServer)
      assert.equals("in", s.lastMsg.flow)
      assert.equals("b", s.lastMsg.target)
      assert.equals("p2p-b", s.lastMsg.sessionId)
      assert.is_false(s.isTop)
      assert.is_true(H.math_type(s.updateTime) == "integer")
    end)

    it("pages with an exclusive lastSessionId, and in reverse", function()
      local _, p1 = H.call(nim, "getLocalSessions", { limit = 2 })
      assert.same({ "p2p-b", "p2p-d" }, ids(p1.sessions))
      local _, p2 = H.call(nim, "getLocalSessions", { limit = 2, lastSessionId = "p2p-d" })
      assert.same({ "p2p-c", "p2p-e" }, ids(p2.sessions))
      local _, p3 = H.call(nim, "getLocalSessions", { limit = 2, lastSessionId = "p2p-e" })
      assert.same({}, p3.sessions)
      local _, r = H.call(nim, "getLocalSessions", { reverse = true })
      assert.same({ "p2p-e", "p2p-c", "p2p-d", "p2p-b" }, ids(r.sessions))
      local _, r2 = H.call(nim, "getLocalSessions", { reverse = true, limit = 1, lastSessionId = "p2p-c" })
      assert.same({ "p2p-d" }, ids(r2.sessions))
      local _, z = H.call(nim, "getLocalSessions", { limit = 0 })
      assert.same({}, z.sessions)
    end)

    it("gives Session_Not_Exist for an unknown lastSessionId", function()
      local err, obj = H.call(nim, "getLocalSessions", { lastSessionId = "p2p-nobody" })
      assert.equals("Session_Not_Exist", err.code)
      assert.is_nil(obj)
    end)

    it("leaves logically deleted sessions out", function()
      H.call(nim, "deleteLocalSession", { id = "p2p-d", isLogic = true })
      local _, obj = H.call(nim, "getLocalSessions")
      assert.same({ "p2p-b", "p2p-c", "p2p-e" }, ids(obj.sessions))
    end)

    it("raises for bad parameters", function()
      assert.error_matches(function() nim:getLocalSessions { limit = -1 } end,
        "getLocalSessions: bad argument 'limit'")
      assert.error_matches(function() nim:getLocalSessions { limit = 1.5 } end,
        "getLocalSessions: bad argument 'limit' %(integer expected, got 1.5%)")
      assert.error_matches(function() nim:getLocalSessions { limit = "10" } end, "bad argument 'limit'")
      assert.error_matches(function() nim:getLocalSessions { reverse = 1 } end, "bad argument 'reverse'")
      assert.error_matches(function() nim:getLocalSessions { lastSessionId = 5 } end, "bad argument 'lastSessionId'")
      assert.error_matches(function() nim:getLocalSessions { lastSessionId = "chat-x" } end,
        "unknown scene 'chat'")
      assert.error_matches(function() nim:getLocalSessions { done = 5 } end, "bad argument 'done'")
      assert.error_matches(function() nim:getLocalSessions(5) end, "bad argument 'options'")
      assert.error_matches(function() nim.getLocalSessions({}) end, "getLocalSessions")
    end)
  end)

  it("pages through 10,000 sessions without gaps or repeats", function()
    local msgs = {}
    for i = 1, 10000 do
      -- many equal times, so ties by id are exercised
      msgs[#msgs + 1] = H.msg("u" .. i, "alice", 1000 + (i % 37), "m" .. i)
      if #msgs == 2000 then H.call(nim, "saveMsgsToLocal", { msgs = msgs }); msgs = {} end
    end
    for _, reverse in ipairs { false, true } do
      local all = H.all_sessions(nim, 333, reverse)
      assert.equals(10000, #all)
      local seen = {}
      for i, s in ipairs(all) do
        assert.is_nil(seen[s.id], "repeated " .. s.id)
        seen[s.id] = true
        if i > 1 then
          local p = all[i - 1]
          if reverse then
            assert.is_true(p.updateTime < s.updateTime or (p.updateTime == s.updateTime and p.id < s.id))
          else
            assert.is_true(p.updateTime > s.updateTime or (p.updateTime == s.updateTime and p.id > s.id))
          end
        end
      end
    end
  end)

  describe("getLocalSession", function()
    it("gives the session or nil", function()
      H.call(nim, "insertLocalSession", { scene = "team", to = "42", updateTime = 77 })
      local err, s = H.call(nim, "getLocalSession", { sessionId = "team-42" })
      assert.is_nil(err)
      assert.equals("team-42", s.id)
      assert.equals(77, s.updateTime)
      local err2, none = H.call(nim, "getLocalSession", { sessionId = "team-43" })
      assert.is_nil(err2)
      assert.is_nil(none)
      assert.error_matches(function() nim:getLocalSession {} end, "getLocalSession: bad argument 'sessionId'")
    end)
  end)

  describe("insertLocalSession", function()
    it("creates a session, fires onupdatesession, refuses a duplicate", function()
      local err, obj = H.call(nim, "insertLocalSession", { scene = "p2p", to = "bob", updateTime = 1234 })
      assert.is_nil(err)
      assert.equals("p2p-bob", obj.session.id)
      assert.equals(1234, obj.session.updateTime)
      assert.equals(0, obj.session.unread)
      assert.is_nil(obj.session.lastMsg)
      H.wait_until(nim, function() return #rec.updates == 1 end)
      assert.equals("p2p-bob", rec.updates[1].id)
      local err2 = H.call(nim, "insertLocalSession", { scene = "p2p", to = "bob" })
      assert.equals("Session_Exist", err2.code)
    end)

    it("uses now when there is no updateTime and no message", function()
      local before = os.time() * 1000
      local _, obj = H.call(nim, "insertLocalSession", { scene = "superTeam", to = "7" })
      assert.is_true(obj.session.updateTime >= before - 1000)
      assert.is_true(obj.session.updateTime <= os.time() * 1000 + 1000)
    end)

    it("takes lastMsg and updateTime from stored messages", function()
      H.call(nim, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 500, "x"), H.msg("bob", "alice", 700, "y") } })
      H.call(nim, "deleteLocalSession", { id = "p2p-bob" })
      local _, obj = H.call(nim, "insertLocalSession", { scene = "p2p", to = "bob" })
      assert.equals("y", obj.session.lastMsg.idServer)
      assert.equals(700, obj.session.updateTime)
      assert.equals(0, obj.session.unread)     -- deleted sessions were dealt with
    end)

    it("brings back a logically deleted session with unread, pointer and localCustom", function()
      H.call(nim, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 500, "x"), H.msg("bob", "alice", 700, "y") } })
      H.call(nim, "updateLocalSession", { id = "p2p-bob", localCustom = "keep" })
      H.call(nim, "deleteLocalSession", { id = "p2p-bob", isLogic = true })
      local _, gone = H.call(nim, "getLocalSession", { sessionId = "p2p-bob" })
      assert.is_nil(gone)
      local err, obj = H.call(nim, "insertLocalSession", { scene = "p2p", to = "bob" })
      assert.is_nil(err)
      assert.equals(2, obj.session.unread)
      assert.equals("keep", obj.session.localCustom)
      assert.equals("y", obj.session.lastMsg.idServer)
    end)

    it("raises for bad parameters", function()
      assert.error_matches(function() nim:insertLocalSession { scene = "room", to = "x" } end,
        "insertLocalSession: bad argument 'scene' %(unknown scene 'room'")
      assert.error_matches(function() nim:insertLocalSession { to = "x" } end, "bad argument 'scene'")
      assert.error_matches(function() nim:insertLocalSession { scene = "p2p" } end, "bad argument 'to'")
      assert.error_matches(function() nim:insertLocalSession { scene = "p2p", to = "x", updateTime = "1" } end,
        "bad argument 'updateTime'")
    end)
  end)

  describe("updateLocalSession", function()
    it("changes localCustom only, persisted, with onupdatesession", function()
      H.call(nim, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 500, "x") } })
      H.wait_until(nim, function() return #rec.updates == 1 end)
      local opts = { id = "p2p-bob", localCustom = '{"k":"v"}' }
      local err, obj = H.call(nim, "updateLocalSession", opts)
      assert.is_nil(err)
      assert.equals(opts, obj)                      -- the options back, as the JS SDK passes them
      local s = obj.session
      opts.localCustom = '{"k":"w"}'               -- the same table again (it holds session now)
      local err2, obj2 = H.call(nim, "updateLocalSession", opts)
      assert.is_nil(err2)
      assert.equals('{"k":"w"}', obj2.session.localCustom)
      opts.localCustom = '{"k":"v"}'
      H.call(nim, "updateLocalSession", opts)
      assert.equals('{"k":"v"}', s.localCustom)
      assert.equals(500, s.updateTime)
      H.wait_until(nim, function() return #rec.updates == 4 end)
      assert.equals('{"k":"v"}', rec.updates[4].localCustom)
      reopen()
      assert.equals('{"k":"v"}', rec.sessions[1][1].localCustom)
    end)

    it("does not notify with needNotify = false", function()
      H.call(nim, "insertLocalSession", { scene = "p2p", to = "bob" })
      H.wait_until(nim, function() return #rec.updates == 1 end)
      H.call(nim, "updateLocalSession", { id = "p2p-bob", localCustom = "x", needNotify = false })
      -- a later request's done proves the earlier notification would have arrived
      H.call(nim, "getLocalSessions")
      assert.equals(1, #rec.updates)
      local _, s = H.call(nim, "getLocalSession", { sessionId = "p2p-bob" })
      assert.equals("x", s.localCustom)
    end)

    it("gives Session_Not_Exist for an unknown id", function()
      local err = H.call(nim, "updateLocalSession", { id = "p2p-ghost", localCustom = "x" })
      assert.equals("Session_Not_Exist", err.code)
      assert.error_matches(function() nim:updateLocalSession { id = "p2p-x", localCustom = 5 } end,
        "updateLocalSession: bad argument 'localCustom'")
      assert.error_matches(function() nim:updateLocalSession { id = "p2p-x", needNotify = "no" } end,
        "bad argument 'needNotify'")
    end)
  end)

  describe("deleteLocalSession", function()
    before_each(function()
      H.call(nim, "saveMsgsToLocal", { msgs = {
        H.msg("bob", "alice", 500, "x"), H.msg("carol", "alice", 600, "y"), H.msg("dave", "alice", 700, "z"),
      } })
    end)

    it("removes one id or many; unknown ids are no error; messages stay", function()
      local err = H.call(nim, "deleteLocalSession", { id = "p2p-bob" })
      assert.is_nil(err)
      err = H.call(nim, "deleteLocalSession", { id = { "p2p-carol", "p2p-ghost" } })
      assert.is_nil(err)
      local _, obj = H.call(nim, "getLocalSessions")
      assert.same({ "p2p-dave" }, ids(obj.sessions))
      local _, m = H.call(nim, "getLocalMsgs", { sessionId = "p2p-bob" })
      assert.equals(1, #m.msgs)
      reopen()
      assert.same({ "p2p-dave" }, ids(rec.sessions[1]))
    end)

    it("logical delete keeps unread and localCustom; a new message brings it back", function()
      H.call(nim, "updateLocalSession", { id = "p2p-bob", localCustom = "lc" })
      H.call(nim, "deleteLocalSession", { id = "p2p-bob", isLogic = true })
      reopen()
      assert.same({ "p2p-dave", "p2p-carol" }, ids(rec.sessions[1]))
      H.call(nim, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 800, "w") } })
      local _, s = H.call(nim, "getLocalSession", { sessionId = "p2p-bob" })
      assert.equals(2, s.unread)
      assert.equals("lc", s.localCustom)
      assert.equals(800, s.updateTime)
    end)

    it("a removed session comes back with new messages only", function()
      H.call(nim, "updateLocalSession", { id = "p2p-bob", localCustom = "lc" })
      H.call(nim, "deleteLocalSession", { id = "p2p-bob" })
      H.call(nim, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 800, "w") } })
      local _, s = H.call(nim, "getLocalSession", { sessionId = "p2p-bob" })
      assert.equals(1, s.unread)
      assert.is_nil(s.localCustom)
      assert.equals("w", s.lastMsg.idServer)
    end)

    it("raises for bad ids", function()
      assert.error_matches(function() nim:deleteLocalSession {} end, "deleteLocalSession: bad argument 'id'")
      assert.error_matches(function() nim:deleteLocalSession { id = { "p2p-a", 3 } } end, "bad argument 'id%[2%]'")
      assert.error_matches(function() nim:deleteLocalSession { id = "x" } end, "bad argument 'id'")
      assert.error_matches(function() nim:deleteLocalSession { id = "p2p-a", isLogic = "yes" } end,
        "bad argument 'isLogic'")
    end)
  end)

  describe("restarts", function()
    it("keep sessions, unread, pointers and localCustom", function()
      H.call(nim, "saveMsgsToLocal", { msgs = {
        H.msg("bob", "alice", 100, "1"), H.msg("bob", "alice", 200, "2"), H.msg("carol", "alice", 300, "3"),
      } })
      H.call(nim, "updateLocalSession", { id = "p2p-carol", localCustom = "c" })
      H.callp(nim, "resetSessionUnread", "p2p-bob")
      reopen()
      local by = {}
      for _, s in ipairs(rec.sessions[1]) do by[s.id] = s end
      assert.equals(0, by["p2p-bob"].unread)
      assert.equals(1, by["p2p-carol"].unread)
      assert.equals("c", by["p2p-carol"].localCustom)
      -- the pointer survived: an old message after restart does not count
      H.call(nim, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 150, "late"), H.msg("bob", "alice", 250, "new") } })
      local _, s = H.call(nim, "getLocalSession", { sessionId = "p2p-bob" })
      assert.equals(1, s.unread)
    end)
  end)

  describe("db = false", function()
    it("runs the same engine in memory and writes no file", function()
      local d2 = H.tmpdir()
      local mem, mrec = H.open(d2, { db = false })
      H.call(mem, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 1, "1"), H.msg("bob", "alice", 2, "2") } })
      local _, obj = H.call(mem, "getLocalSessions")
      assert.equals(2, obj.sessions[1].unread)
      assert.equals(0, #mrec.sessions)
      H.close(mem)
      assert.is_nil(io.open(d2 .. "/alice.db"))
      assert.is_nil(io.open(d2))
      -- every run starts empty
      local mem2, mrec2 = H.open(d2, { db = false })
      local _, obj2 = H.call(mem2, "getLocalSessions")
      assert.same({}, obj2.sessions)
      assert.equals(0, #mrec2.sessions)
      H.close(mem2)
    end)
  end)
end)
