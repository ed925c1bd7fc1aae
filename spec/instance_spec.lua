-- Instance lifecycle: getInstance, poll, getfd, destroy, __gc, __close,
-- callbacks never synchronous, errors inside callbacks.
local H = require "helpers"
local NIM = require "nim"

describe("instance", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() collectgarbage(); collectgarbage(); H.rmdir(dir) end)

  describe("getInstance", function()
    it("raises naming the parameter for bad options", function()
      assert.has_error(function() NIM.getInstance() end,
        "getInstance: bad argument 'options' (table expected, got nil)")
      assert.error_matches(function() NIM.getInstance {} end, "getInstance: bad argument 'account'")
      assert.error_matches(function() NIM.getInstance { account = 42 } end, "bad argument 'account'")
      assert.error_matches(function() NIM.getInstance { account = "a", db = 1 } end, "bad argument 'db'")
      assert.error_matches(function() NIM.getInstance { account = "a", dataDir = false } end, "bad argument 'dataDir'")
      assert.error_matches(function() NIM.getInstance { account = "a", onsessions = "x" } end,
        "bad argument 'onsessions' %(callable expected, got string%)")
      assert.error_matches(function() NIM.getInstance { account = "a", syncSessionUnread = 1 } end,
        "bad argument 'syncSessionUnread'")
    end)

    it("refuses an unknown option, suggesting the known one it resembles", function()
      assert.error_matches(function() NIM.getInstance { account = "a", onupdatesesion = print } end,
        "bad argument 'onupdatesesion' %(unknown option, did you mean 'onupdatesession'%?%)")
      assert.error_matches(function() NIM.getInstance { account = "a", DataDir = "x" } end,
        "did you mean 'dataDir'%?")
      assert.error_matches(function() NIM.getInstance { account = "a", appKy = "k" } end,
        "bad argument 'appKy' %(unknown option, did you mean 'appKey'%?%)")
      assert.error_matches(function() NIM.getInstance { account = "a", zzzzzz = 1 } end,
        "bad argument 'zzzzzz' %(unknown option%)$")
    end)

    it("takes the JS SDK's appKey, and ignores it", function()
      local nim = NIM.getInstance { appKey = "45c6af3c98409b18a84451215d0bdd6e", account = "a", db = false }
      assert.equal("open", nim:_state())
      nim:destroy()
      while nim:poll(0) > 0 do end
      assert.error_matches(function() NIM.getInstance { account = "a", appKey = 5 } end,
        "bad argument 'appKey' %(string expected, got number%)")
    end)

    it("refuses an unknown option key of every method, suggesting the known one", function()
      local nim = NIM.getInstance { account = "a", db = false }
      local cases = {
        { "getLocalSessions", { limt = 5 }, "limt", "limit" },
        { "deleteLocalSession", { id = "p2p-x", isDeleteRomaing = true }, "isDeleteRomaing", "isDeleteRoaming" },
        { "getLocalMsgs", { sessionid = "p2p-x", done = print }, "sessionid", "sessionId" },
        { "insertLocalSession", { scene = "p2p", to = "x", updatetime = 1 }, "updatetime", "updateTime" },
        { "updateLocalSession", { id = "p2p-x", localcustom = "{}" }, "localcustom", "localCustom" },
        { "saveMsgsToLocal", { msg = {} }, "msg", "msgs" },
        { "getLocalSession", { sessionID = "p2p-x" }, "sessionID", "sessionId" },
        { "sendText", { scene = "p2p", to = "b", txt = "hi" }, "txt", "text" },
        { "sendCustomMsg", { scene = "p2p", to = "b", content = "{}", idclient = "1" }, "idclient", "idClient" },
        { "getHistoryMsgs", { scene = "p2p", to = "b", limt = 5 }, "limt", "limit" },
        { "addStickTopSession", { id = "p2p-b", topcustom = "x" }, "topcustom", "topCustom" },
        { "createTeam", { name = "t", acounts = {} }, "acounts", "accounts" },
        { "leaveTeam", { teamid = "1" }, "teamid", "teamId" },
        { "deleteSession", { scene = "p2p", too = "b" }, "too", "to" },
        { "waitSync", { timout = 5 }, "timout", "timeout" },
        { "getStickTopSessions", { don = print }, "don", "done" },
      }
      for _, c in ipairs(cases) do
        local ok, e = pcall(nim[c[1]], nim, c[2])
        assert.is_false(ok, c[1])
        assert.matches(c[1] .. ": bad argument '" .. c[3] .. "' %(unknown option, did you mean '" .. c[4] .. "'%?%)", e)
      end
      -- a key that resembles nothing: no suggestion
      local ok, e = pcall(nim.getLocalSessions, nim, { pushContent = "x" })
      assert.is_false(ok)
      assert.matches("getLocalSessions: bad argument 'pushContent' %(unknown option%)$", e)
      nim:destroy()
      while nim:poll(0) > 0 do end
    end)

    it("reports the error at the caller's line", function()
      local ok, err = pcall(function() NIM.getInstance {} end)
      assert.is_false(ok)
      assert.matches("instance_spec.lua:%d+: getInstance", err)
    end)

    it("fires onsyncdone only, and inside poll, when nothing is stored", function()
      local nim, rec = H.open(dir, { nowait = true })
      assert.equals(0, rec.syncdone)          -- not inside getInstance
      H.wait_until(nim, function() return rec.syncdone == 1 end)
      assert.same({ "syncdone" }, rec.order)
      H.close(nim)
    end)

    it("fires onsessions with the stored sessions, newest first, then onsyncdone", function()
      local nim = H.open(dir)
      H.call(nim, "saveMsgsToLocal", { msgs = {
        H.msg("bob", "alice", 1000, "1"), H.msg("carol", "alice", 3000, "2"), H.msg("dave", "alice", 2000, "3"),
      } })
      H.close(nim)
      local nim2, rec = H.open(dir)
      assert.same({ "sessions", "syncdone" }, rec.order)
      local ids = {}
      for i, s in ipairs(rec.sessions[1]) do ids[i] = s.id end
      assert.same({ "p2p-carol", "p2p-dave", "p2p-bob" }, ids)
      assert.equals(1, rec.sessions[1][1].unread)
      H.close(nim2)
    end)

    it("accepts any callable as a callback", function()
      local calls = 0
      local callable = setmetatable({}, { __call = function() calls = calls + 1 end })
      local nim = NIM.getInstance { account = "alice", dataDir = dir, onsyncdone = callable }
      H.wait_until(nim, function() return calls == 1 end)
      local got
      nim:getLocalSessions { done = setmetatable({}, { __call = function(_, err, obj) got = obj end }) }
      H.wait_until(nim, function() return got ~= nil end)
      assert.same({}, got.sessions)
      H.close(nim)
    end)

    it("keeps several instances in one Lua state apart", function()
      local a = H.open(dir, { account = "alice" })
      local b = H.open(dir, { account = "bob" })
      H.call(a, "saveMsgsToLocal", { msgs = { H.msg("carol", "alice", 1, "x1") } })
      H.call(b, "saveMsgsToLocal", { msgs = { H.msg("carol", "bob", 1, "x1"), H.msg("dave", "bob", 2, "x2") } })
      local _, sa = H.call(a, "getLocalSessions")
      local _, sb = H.call(b, "getLocalSessions")
      assert.equals(1, #sa.sessions)
      assert.equals(2, #sb.sessions)
      H.close(a); H.close(b)
      local f = io.open(dir .. "/alice.db"); assert.truthy(f); f:close()
      f = io.open(dir .. "/bob.db"); assert.truthy(f); f:close()
    end)

    it("keeps account names inside dataDir", function()
      local nim = H.open(dir, { account = "../evil/x" })
      H.close(nim)
      local f = io.open(dir .. "/%2E.%2Fevil%2Fx.db")
      assert.truthy(f)
      f:close()
    end)

    it("uses the file given as db", function()
      local path = dir .. "/sub/custom.sqlite"
      local nim = H.open(dir, { db = path })
      H.call(nim, "insertLocalSession", { scene = "p2p", to = "bob" })
      H.close(nim)
      local f = io.open(path); assert.truthy(f); f:close()
      assert.is_nil(io.open(dir .. "/alice.db"))
    end)
  end)

  describe("callbacks", function()
    it("never run inside the call that caused them", function()
      local nim, rec = H.open(dir)
      local ran = false
      nim:insertLocalSession { scene = "p2p", to = "bob", done = function() ran = true end }
      assert.is_false(ran)
      assert.equals(0, #rec.updates)
      H.wait_until(nim, function() return ran end)
      assert.equals(1, #rec.updates)
      H.close(nim)
    end)

    it("runs even an immediate failure in a later poll", function()
      local nim = H.open(dir)
      local got
      nim:updateLocalSession { id = "p2p-nobody", localCustom = "x", done = function(err) got = err end }
      assert.is_nil(got)
      H.wait_until(nim, function() return got ~= nil end)
      assert.equals("Session_Not_Exist", got.code)
      assert.equals("updateLocalSession", got.event)
      assert.matches("^Session_Not_Exist", tostring(got))
      H.close(nim)
    end)

    it("poll leaves what exceeds its budget for the next poll; budget_ms widens it", function()
      -- 2,000 sessions change in one batch: how many updates does one poll deliver?
      local function run(budget)
        local sizes, done = {}, false
        local NIM = require "nim"
        local nim = NIM.getInstance { account = "budget", db = false,
          onupdatesessions = function(list) sizes[#sizes + 1] = #list end }
        local msgs = {}
        for i = 1, 2000 do msgs[i] = H.msg("peer" .. i, "budget", i, tostring(i)) end
        nim:saveMsgsToLocal { msgs = msgs, done = function() done = true end }
        while not done do nim:poll(10, budget) end
        H.close(nim)
        local total, biggest = 0, 0
        for _, n in ipairs(sizes) do total, biggest = total + n, math.max(biggest, n) end
        return total, biggest
      end
      local total, biggest = run(nil)
      assert.equals(2000, total)
      assert.is_true(biggest <= 128, "a default poll coalesced " .. biggest .. " updates")
      -- a wide budget goes on taking what the engine queues meanwhile (a
      -- few tries: the engine queues the 2,000 one by one after its commit)
      for _ = 1, 5 do
        total, biggest = run(1000)
        assert.equals(2000, total)
        if biggest > 128 then break end
      end
      -- Under the sanitizers the engine queues slower than the poll takes, so
      -- every poll may find the queue momentarily empty: only the total holds.
      if not (os.getenv("LD_PRELOAD") or ""):find("asan") then
        assert.is_true(biggest > 128, "budget_ms = 1000 still stopped at " .. biggest)
      end
      local nim = H.open(dir)
      assert.error_matches(function() nim:poll(0, 0) end, "poll: bad argument 'budget_ms'")
      assert.error_matches(function() nim:poll(0, "x") end, "poll: bad argument 'budget_ms'")
      H.close(nim)
    end)

    it("poll returns how many callbacks it ran", function()
      local nim = H.open(dir)
      local n = 0
      for _ = 1, 3 do nim:getLocalSessions { done = function() n = n + 1 end } end
      local total = 0
      H.wait_until(nim, function() return n == 3 end)
      -- the callbacks ran inside the polls above; nothing is left
      total = total + nim:poll(0)
      assert.equals(0, total)
      assert.error_matches(function() nim:poll(-1) end, "poll: bad argument 'timeout_ms'")
      assert.error_matches(function() nim:poll(1.5) end, "poll: bad argument 'timeout_ms'")
      H.close(nim)
    end)

    it("sends an error raised in a callback to onerror and goes on", function()
      local nim, rec = H.open(dir)
      local second = false
      nim:getLocalSessions { done = function() error("boom") end }
      nim:getLocalSessions { done = function() second = true end }
      H.wait_until(nim, function() return second end)
      assert.equals(1, #rec.errors)
      assert.equals("Callback_Error", rec.errors[1].code)
      assert.matches("boom", rec.errors[1].message)
      assert.matches("stack traceback", rec.errors[1].message)
      assert.equals("getLocalSessions done", rec.errors[1].event)
      H.close(nim)
    end)

    it("goes on when there is no onerror (the error is printed)", function()
      local NIMx = require "nim"
      local synced, after = false, false
      local nim = NIMx.getInstance { account = "alice", dataDir = dir,
        onsyncdone = function() synced = true; error("in onsyncdone") end }
      nim:getLocalSessions { done = function() after = true end }
      H.wait_until(nim, function() return synced and after end)
      H.close(nim)
    end)

    it("runs a done exactly once", function()
      local nim = H.open(dir)
      local n = 0
      nim:insertLocalSession { scene = "p2p", to = "bob", done = function() n = n + 1 end }
      H.wait_until(nim, function() return n > 0 end)
      for _ = 1, 5 do nim:poll(5) end
      assert.equals(1, n)
      H.close(nim)
    end)

    it("does not dispatch from a poll called inside a callback", function()
      local nim = H.open(dir)
      local inner, done2 = nil, false
      nim:getLocalSessions { done = function() inner = nim:poll(0) end }
      nim:getLocalSessions { done = function() done2 = true end }
      H.wait_until(nim, function() return done2 end)
      assert.equals(0, inner)
      H.close(nim)
    end)
  end)

  describe("getfd", function()
    it("is readable exactly when poll has work", function()
      local uv = require "luv"
      local nim = H.open(dir)
      local fd = nim:getfd()
      assert.is_true(H.math_type(fd) == "integer" and fd >= 0)
      local readable = false
      local p = uv.new_poll(fd)
      p:start("r", function() readable = true; p:stop() end)
      local got = false
      nim:getLocalSessions { done = function() got = true end }
      local timer = uv.new_timer()
      uv.update_time()           -- luv's loop clock is cached: stale after other specs ran
      timer:start(5000, 0, function() p:stop() end)
      uv.run("once")
      while not readable and timer:is_active() do uv.run("once") end
      timer:stop(); timer:close(); p:close(); uv.run("nowait")
      assert.is_true(readable)
      assert.is_false(got)
      assert.is_true(nim:poll(0) >= 1)
      assert.is_true(got)
      H.close(nim)
    end)
  end)

  describe("destroy", function()
    it("runs done in poll, then every method raises", function()
      local nim = H.open(dir)
      local closed = false
      nim:destroy(function(err) assert.is_nil(err); closed = true end)
      assert.is_false(closed)
      assert.has_error(function() nim:getLocalSessions {} end, "attempt to use a destroyed nim instance")
      assert.has_error(function() nim:setCurrSession("p2p-bob") end, "attempt to use a destroyed nim instance")
      H.wait_until(nim, function() return closed end)
      assert.has_error(function() nim:getfd() end, "attempt to use a destroyed nim instance")
      assert.equals(0, nim:poll(0))
      assert.matches("destroyed", tostring(nim))
      -- a second destroy is harmless and its done still runs
      local again = false
      nim:destroy(function() again = true end)
      assert.is_false(again)
      nim:poll(0)
      assert.is_true(again)
    end)

    it("flushes requests queued before it", function()
      local nim = H.open(dir)
      local saved = false
      nim:saveMsgsToLocal { msgs = { H.msg("bob", "alice", 5, "a") }, done = function(err) saved = err == nil end }
      local closed = false
      nim:destroy(function() closed = true end)
      H.wait_until(nim, function() return closed end)
      assert.is_true(saved)
      local nim2, rec = H.open(dir)
      assert.equals(1, #rec.sessions[1])
      H.close(nim2)
    end)

    it("happens on __close and on __gc, keeping what was queued", function()
      -- <close> is Lua 5.4 syntax: compiled from a string, so the file
      -- loads on 5.1 and LuaJIT, where __close is called as 5.4 would.
      local closes = (_VERSION == "Lua 5.4") and assert((loadstring or load)([[
        local NIM, H, dir = ...
        local nim <close> = NIM.getInstance { account = "alice", dataDir = dir }
        nim:saveMsgsToLocal { msgs = { H.msg("bob", "alice", 5, "a") } }
      ]])) or function(NIM, H, dir)
        local nim = NIM.getInstance { account = "alice", dataDir = dir }
        nim:saveMsgsToLocal { msgs = { H.msg("bob", "alice", 5, "a") } }
        getmetatable(nim).__close(nim)
      end
      closes(NIM, H, dir)
      do
        local nim = NIM.getInstance { account = "alice", dataDir = dir }
        nim:saveMsgsToLocal { msgs = { H.msg("carol", "alice", 6, "b") } }
        nim = nil
        collectgarbage(); collectgarbage()
      end
      local nim2, rec = H.open(dir)
      assert.equals(2, #rec.sessions[1])
      H.close(nim2)
    end)
  end)
end)
