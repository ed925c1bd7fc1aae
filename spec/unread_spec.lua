-- Unread: derived from stored messages and the read pointer; current
-- session; reset functions; coalesced update callbacks.
local H = require "helpers"

describe("unread", function()
  local dir, nim, rec
  before_each(function() dir = H.tmpdir(); nim, rec = H.open(dir) end)
  after_each(function() H.close(nim); collectgarbage(); H.rmdir(dir) end)

  local function unread(id)
    local err, s = H.call(nim, "getLocalSession", { sessionId = id })
    assert.is_nil(err)
    return s and s.unread
  end

  local function save(msgs)
    local err, obj = H.call(nim, "saveMsgsToLocal", { msgs = msgs })
    assert.is_nil(err)
    return obj
  end

  local verify
  verify = function()
    local got
    nim:_request("verify", nil, function(err, r) got = { err, r } end)
    H.wait_until(nim, function() return got ~= nil end)
    assert.is_nil(got[1])
    assert.same({}, got[2].mismatches)
    return got[2]
  end

  it("counts incoming messages only, not notifications or unreadable ones", function()
    save {
      H.msg("bob", "alice", 1, "1"),
      H.msg("alice", "bob", 2, "2"),                                -- mine: out
      H.msg("bob", "alice", 3, "3", { type = "notification" }),
      H.msg("bob", "alice", 4, "4", { isUnreadable = false }),
      H.msg("bob", "alice", 5, "5", { type = "custom", content = '{"a":1}' }),
      H.msg("bob", "alice", 6, "6", { type = "tip" }),
    }
    assert.equals(3, unread("p2p-bob"))
    verify()
  end)

  it("never counts a message twice", function()
    save { H.msg("bob", "alice", 1, "1"), H.msg("bob", "alice", 2, "2"), H.msg("bob", "alice", 2, "2") }
    save { H.msg("bob", "alice", 1, "1"), H.msg("bob", "alice", 3, "3") }
    local obj = save { H.msg("bob", "alice", 1, "1") }
    assert.equals(1, #obj.msgs)
    assert.equals(3, unread("p2p-bob"))
    -- idClient is the key when there is no idServer
    save { { scene = "p2p", from = "bob", to = "alice", time = 4, idClient = "c1" },
           { scene = "p2p", from = "bob", to = "alice", time = 4, idClient = "c1" } }
    assert.equals(4, unread("p2p-bob"))
    local _, m = H.call(nim, "getLocalMsgs", { sessionId = "p2p-bob" })
    assert.equals(4, #m.msgs)
    verify()
  end)

  it("team messages count for the team session", function()
    save {
      { scene = "team", from = "bob", to = "42", time = 1, idServer = "t1" },
      { scene = "team", from = "alice", to = "42", time = 2, idServer = "t2" },
      { scene = "team", from = "carol", to = "42", time = 3, idServer = "t3" },
    }
    assert.equals(2, unread("team-42"))
  end)

  describe("resetSessionUnread", function()
    it("moves the pointer to the latest message, persisted, with an update", function()
      save { H.msg("bob", "alice", 10, "1"), H.msg("bob", "alice", 20, "2") }
      H.wait_until(nim, function() return #rec.updates == 1 end)
      local err = H.callp(nim, "resetSessionUnread", "p2p-bob")
      assert.is_nil(err)
      H.wait_until(nim, function() return #rec.updates == 2 end)
      assert.equals(0, rec.updates[2].unread)
      -- older than the pointer: does not count; newer: counts
      save { H.msg("bob", "alice", 15, "3"), H.msg("bob", "alice", 30, "4") }
      assert.equals(1, unread("p2p-bob"))
      verify()
    end)

    it("does nothing (and no update) when already read; unknown ids are fine", function()
      save { H.msg("bob", "alice", 10, "1") }
      H.callp(nim, "resetSessionUnread", "p2p-bob")
      local n = #rec.updates
      H.callp(nim, "resetSessionUnread", "p2p-bob")
      local err = H.callp(nim, "resetSessionUnread", "p2p-nobody")
      assert.is_nil(err)
      H.call(nim, "getLocalSessions")
      assert.equals(n, #rec.updates)
    end)

    it("raises for bad ids", function()
      assert.error_matches(function() nim:resetSessionUnread() end, "resetSessionUnread: bad argument 'id'")
      assert.error_matches(function() nim:resetSessionUnread("bob") end, "resetSessionUnread: bad argument 'id'")
      assert.error_matches(function() nim:resetSessionUnread("p2p-bob", 1) end, "bad argument 'done'")
      assert.error_matches(function() nim:resetSessionsUnread("p2p-bob") end, "resetSessionsUnread: bad argument 'ids'")
    end)
  end)

  it("resetSessionsUnread and resetAllSessionUnread reset many at once", function()
    save { H.msg("a", "alice", 1, "1"), H.msg("b", "alice", 2, "2"), H.msg("c", "alice", 3, "3") }
    H.callp(nim, "resetSessionsUnread", { "p2p-a", "p2p-b" })
    assert.equals(0, unread("p2p-a"))
    assert.equals(0, unread("p2p-b"))
    assert.equals(1, unread("p2p-c"))
    save { H.msg("a", "alice", 4, "4") }
    H.callp(nim, "resetAllSessionUnread")
    local _, obj = H.call(nim, "getLocalSessions")
    for _, s in ipairs(obj.sessions) do assert.equals(0, s.unread) end
    verify()
  end)

  describe("setCurrSession", function()
    it("resets unread and follows the current session's new messages", function()
      save { H.msg("bob", "alice", 10, "1") }
      H.callp(nim, "setCurrSession", "p2p-bob")
      assert.equals(0, unread("p2p-bob"))
      save { H.msg("bob", "alice", 20, "2"), H.msg("carol", "alice", 20, "3") }
      assert.equals(0, unread("p2p-bob"))
      assert.equals(1, unread("p2p-carol"))
      nim:resetCurrSession()
      save { H.msg("bob", "alice", 30, "4") }
      assert.equals(1, unread("p2p-bob"))
      verify()
    end)

    it("accepts an id with no session yet", function()
      local err = H.callp(nim, "setCurrSession", "p2p-newbie")
      assert.is_nil(err)
      save { H.msg("newbie", "alice", 10, "1") }
      assert.equals(0, unread("p2p-newbie"))
    end)

    it("does not move the pointer back for an older message", function()
      save { H.msg("bob", "alice", 10, "1"), H.msg("bob", "alice", 50, "2") }
      H.callp(nim, "setCurrSession", "p2p-bob")
      nim:resetCurrSession()
      save { H.msg("bob", "alice", 40, "3") }        -- before the pointer
      assert.equals(0, unread("p2p-bob"))
      assert.error_matches(function() nim:setCurrSession(42) end, "setCurrSession: bad argument 'id'")
    end)
  end)

  describe("onupdatesession", function()
    -- __close waits for the engine thread to finish and keeps its events,
    -- so one poll afterwards sees every change at once.
    local function finish_then_poll_once()
      getmetatable(nim).__close(nim)
      return nim:poll(0, 60000)   -- a budget no slow run (valgrind) can exceed
    end

    it("delivers each changed session once per poll, in its latest state", function()
      local dones = 0
      for i = 1, 5 do
        nim:saveMsgsToLocal { msgs = { H.msg("bob", "alice", i, "b" .. i) }, done = function() dones = dones + 1 end }
      end
      local before = #rec.updates
      local ran = finish_then_poll_once()
      assert.equals(5, dones)
      assert.equals(before + 1, #rec.updates)
      assert.equals(6, ran)                       -- five dones and one update
      local s = rec.updates[#rec.updates]
      assert.equals("p2p-bob", s.id)
      assert.equals(5, s.unread)
      assert.equals("b5", s.lastMsg.idServer)
    end)

    it("gives onupdatesessions one batch per poll instead", function()
      H.close(nim)
      local batches = {}
      nim, rec = H.open(dir, { onupdatesession = false,
                               onupdatesessions = function(list) batches[#batches + 1] = list end })
      for i = 1, 4 do
        nim:saveMsgsToLocal { msgs = { H.msg("bob", "alice", i, "b" .. i), H.msg("c" .. i, "alice", i, "c" .. i) } }
      end
      finish_then_poll_once()
      assert.equals(1, #batches)
      local ids = {}
      for _, s in ipairs(batches[1]) do
        assert.is_nil(ids[s.id], "session twice in one batch")
        ids[s.id] = s
      end
      assert.equals(5, #batches[1])
      assert.equals(4, ids["p2p-bob"].unread)
      assert.is_not_nil(ids["p2p-c4"])
    end)

    it("does not fire for logically deleted sessions", function()
      save { H.msg("bob", "alice", 1, "1") }
      H.call(nim, "deleteLocalSession", { id = "p2p-bob", isLogic = true })
      local n = #rec.updates
      H.call(nim, "updateLocalSession", { id = "p2p-bob", localCustom = "x" })
      H.callp(nim, "resetSessionUnread", "p2p-bob")
      H.call(nim, "getLocalSessions")
      assert.equals(n, #rec.updates)
    end)
  end)
end)
