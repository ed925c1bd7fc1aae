-- Coroutine style: a request without done, made inside a coroutine, yields
-- until it completes and returns err, obj; NIM.run drives poll.
local NIM = require "nim"
local H = require "helpers"

describe("coroutine style #coroutine", function()
  it("reads top to bottom inside NIM.run and returns fn's results", function()
    local a, b = NIM.run(function(x)
      local nim = NIM.getInstance{account = "alice", db = false}
      local err, obj = nim:insertLocalSession{scene = "p2p", to = "bob", updateTime = 5}
      assert.is_nil(err)
      assert.equal("p2p-bob", obj.session.id)
      err, obj = nim:insertLocalSession{scene = "p2p", to = "bob"}
      assert.equal("Session_Exist", err.code)            -- runtime failures come back as err
      assert.is_nil(obj)
      err = nim:saveMsgsToLocal{msgs = {
        {scene = "p2p", from = "bob", to = "alice", time = 10, idServer = "1", type = "text", text = "hi"},
      }}
      assert.is_nil(err)
      local _, page = nim:getLocalSessions{limit = 10}
      assert.equal(1, #page.sessions)
      assert.equal(1, page.sessions[1].unread)
      assert.is_nil((nim:resetSessionUnread("p2p-bob")))
      local _, s = nim:getLocalSession{sessionId = "p2p-bob"}
      assert.equal(0, s.unread)
      local _, got = nim:getLocalMsgs{sessionId = "p2p-bob"}
      assert.equal("hi", got.msgs[1].text)
      nim:destroy()
      return x * 2, "done"
    end, 21)
    assert.equal(42, a)
    assert.equal("done", b)
  end)

  it("keeps callback style unchanged inside a coroutine", function()
    local order = {}
    NIM.run(function()
      local nim = NIM.getInstance{account = "carol", db = false}
      nim:insertLocalSession{scene = "team", to = "7", done = function(err, obj)
        order[#order + 1] = "done:" .. obj.session.id
      end}
      order[#order + 1] = "after call"                  -- done never runs inside the call
      local err = nim:getLocalSessions{}                 -- the queue is ordered: done ran first
      assert.is_nil(err)
      order[#order + 1] = "resumed"
      nim:destroy()
    end)
    assert.same({"after call", "done:team-7", "resumed"}, order)
  end)

  it("resumes NIM.run's coroutine outside callbacks, so it may drive poll itself", function()
    local seen
    NIM.run(function()
      local nim = NIM.getInstance{account = "dave", db = false}
      assert.is_nil((nim:insertLocalSession{scene = "p2p", to = "erin"}))  -- yields, then resumes
      local got
      nim:getLocalSession{sessionId = "p2p-erin", done = function(_, s) got = s end}
      local spins = 0
      while not got do                           -- a loop of its own, as a flooder or a game does
        nim:poll(5)
        spins = spins + 1
        assert(spins < 1000, "poll inside the coroutine never dispatched")
      end
      seen = got.id
      nim:destroy()
    end)
    assert.equal("p2p-erin", seen)
  end)

  it("NIM.wait waits for a callback inside NIM.run, and times out with false", function()
    local updates, timed_out = {}, nil
    NIM.run(function()
      local nim = NIM.getInstance{account = "frank", db = false,
        onupdatesession = function(s) updates[#updates + 1] = s.id end}
      nim:saveMsgsToLocal{msgs = {
        {scene = "p2p", from = "gina", to = "frank", time = 1, idServer = "g1", type = "text", text = "yo"},
      }, done = function() end}
      assert.is_true(NIM.wait(function() return #updates > 0 end, 5000))
      timed_out = NIM.wait(function() return false end, 30)
      nim:destroy()
    end)
    assert.same({"p2p-gina"}, updates)
    assert.is_false(timed_out)
  end)

  it("NIM.wait polls every live instance itself outside NIM.run", function()
    local got
    local nim = NIM.getInstance{account = "hank", db = false}
    nim:insertLocalSession{scene = "team", to = "9", done = function(_, obj) got = obj.session.id end}
    assert.is_nil(got)
    assert.is_true(NIM.wait(function() return got ~= nil end, 5000))
    assert.equal("team-9", got)
    nim:destroy()
    NIM.wait(function() return nim:poll(0) == 0 and nim:_state() == "destroyed" end, 5000)
    assert.has_error(function() NIM.wait(function() return false end) end,
      "wait: the condition is false and no nim instance is alive")
  end)

  it("NIM.wait checks its arguments", function()
    assert.has_error(function() NIM.wait(42) end, "wait: bad argument 'cond' (callable expected, got number)")
    assert.has_error(function() NIM.wait(function() return true end, -1) end,
      "wait: bad argument 'timeout_ms' (non-negative integer expected, got -1)")
  end)

  it("raises fn's error from NIM.run with the coroutine's traceback", function()
    local ok, e = pcall(NIM.run, function()
      local nim = NIM.getInstance{account = "dave", db = false}
      nim:getLocalSessions{}
      nim:destroy()
      error("boom in the script")
    end)
    assert.is_false(ok)
    assert.matches("boom in the script", e)
    assert.matches("stack traceback", e)
  end)

  it("raises when the coroutine waits on a request and no instance is alive", function()
    local ok, e = pcall(NIM.run, function() coroutine.yield() end)
    assert.is_false(ok)
    assert.matches("no nim instance is alive", e)
    assert.has_error(function() NIM.run(42) end, nil)
  end)

  it("never yields into another scheduler's coroutine: without done it raises there", function()
    local nim = NIM.getInstance{account = "erin", db = false}
    -- a coroutine resumed by hand, as cqueues or a game's scheduler would
    for _, call in ipairs {        -- (not tail calls: the caller's line stays on the stack)
      function() local r = nim:insertLocalSession{scene = "p2p", to = "zed", updateTime = 1}; return r end,
      function() local r = nim:getLocalSessions{}; return r end,
      function() local r = nim:saveMsgsToLocal{msgs = {H.msg("bob", "erin", 1, "a")}}; return r end,
      function() local r = nim:deleteLocalSession{id = "p2p-zed"}; return r end,
      function() local r = nim:resetAllSessionUnread(); return r end,
    } do
      local co = coroutine.create(call)
      local ok, e = coroutine.resume(co)
      assert.is_false(ok)
      assert.matches("coroutine_spec.lua:%d+: %a+: pass done, or call from inside NIM.run", e)
      assert.equal("dead", coroutine.status(co))
    end
    -- with done it works there, driven by the app's own poll
    local result
    local co = coroutine.create(function()
      nim:insertLocalSession{scene = "p2p", to = "zed", updateTime = 1, done = function(err, obj)
        result = {err, obj and obj.session.id}
      end}
    end)
    assert(coroutine.resume(co))
    assert.equal("dead", coroutine.status(co))
    assert.is_true(NIM.wait(function() return result ~= nil end, 5000))
    assert.same({nil, "p2p-zed"}, result)
    nim:destroy()
    while nim:poll(0) > 0 do end
  end)

  it("on the main thread: a query without done raises, a command is sent and its failure reaches onerror", function()
    local errors = {}
    local nim = NIM.getInstance{account = "frank", db = false, onerror = function(e) errors[#errors + 1] = e end}
    local ok, e = pcall(function() nim:getLocalSessions{} end)
    assert.is_false(ok)
    assert.equal("spec/coroutine_spec.lua:" .. debug.getinfo(1, "l").currentline - 2 ..
      ": getLocalSessions: pass done, or call from inside NIM.run", e)
    for _, q in ipairs { function() nim:getLocalMsgs() end, function() nim:getLocalSession{sessionId = "p2p-x"} end } do
      assert.has_error(q)
    end
    local r = H.pack(nim:insertLocalSession{scene = "p2p", to = "x"})
    assert.equal(0, r.n)                                   -- returns nothing, does not yield
    nim:insertLocalSession{scene = "p2p", to = "x"}         -- exists now: Session_Exist, to onerror
    assert.is_true(NIM.wait(function() return #errors > 0 end, 5000))
    assert.equal(1, #errors)
    assert.equal("Session_Exist", errors[1].code)
    assert.equal("insertLocalSession", errors[1].event)
    local page
    nim:getLocalSessions{done = function(_, p) page = p end}
    assert.is_true(NIM.wait(function() return page ~= nil end, 5000))
    assert.equal("p2p-x", page.sessions[1].id)              -- the first one was stored
    nim:destroy()
    while nim:poll(0) > 0 do end
  end)

  it("a command's failure without onerror goes to stderr", function()
    local code = [[
      local NIM = require "nim"
      local nim = NIM.getInstance{account = "gus", db = false}
      nim:insertLocalSession{scene = "p2p", to = "x"}
      nim:insertLocalSession{scene = "p2p", to = "x"}
      NIM.wait(function() return false end, 300)
      nim:destroy()
    ]]
    local p = assert(io.popen(H.LUA .. " -e " .. H.shell_quote(code) .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    assert.matches("nim: Session_Exist: ", out)
  end)

  it("NIM.wait returns false and an Error_Timeout error on timeout", function()
    local nim = NIM.getInstance{account = "hal", db = false}
    local ok, err = NIM.wait(function() return false end, 30)
    assert.is_false(ok)
    assert.equal("Error_Timeout", err.code)
    assert.equal("wait: the condition is still false after 30 ms", err.message)
    assert.is_true((NIM.wait(function() return true end, 30)))
    nim:destroy()
    while nim:poll(0) > 0 do end
  end)
end)

describe("coroutine style with a server #coroutine #net", function()
  local N = require "net_helpers"
  local srv
  setup(function() srv = N.start({"alice", "bob"}) end)
  teardown(function() N.close_all(); srv:cleanup() end)

  it("waitSync waits for the login sync, then scripts read top to bottom", function()
    local got = NIM.run(function()
      local bob = NIM.getInstance{account = "bob", token = N.token("bob"), server = srv.url, db = false}
      assert.is_nil(bob:waitSync())
      assert.is_nil(bob:waitSync())                      -- at once the second time
      local err, msg = bob:sendText{scene = "p2p", to = "alice", text = "top to bottom"}
      assert.is_nil(err)
      assert.equal("success", msg.status)
      local alice = NIM.getInstance{account = "alice", token = N.token("alice"), server = srv.url, db = false}
      assert.is_nil(alice:waitSync())
      local _, page = alice:getLocalSessions{}
      bob:destroy(); alice:destroy()
      return page.sessions[1]
    end)
    assert.equal("p2p-bob", got.id)
    assert.equal(1, got.unread)
    assert.equal("top to bottom", got.lastMsg.text)
  end)

  it("waitSync returns the error of a login that gave up (wrong token)", function()
    local err = NIM.run(function()
      local nim = NIM.getInstance{account = "alice", token = "wrong", server = srv.url, db = false}
      local e = nim:waitSync()
      nim:destroy()
      return e
    end)
    assert.equal(302, err.code)
    assert.equal("login", err.event)
    assert.matches("302", tostring(err))
  end)

  it("waitSync outside NIM.run polls until the sync, as NIM.wait does", function()
    local synced = false
    local nim = NIM.getInstance{account = "alice", token = N.token("alice"), server = srv.url, db = false,
      onsyncdone = function() synced = true end}
    assert.is_false(synced)
    assert.is_nil(nim:waitSync{timeout = 10000})
    assert.is_true(synced)
    local ok, e = pcall(function() nim:waitSync{timeout = -1} end)
    assert.is_false(ok)
    assert.equal("spec/coroutine_spec.lua:" .. debug.getinfo(1, "l").currentline - 2 ..
      ": waitSync: bad argument 'timeout' (non-negative integer expected, got -1)", e)
    assert.has_error(function() nim:waitSync(5) end)
    nim:destroy()
    while nim:poll(0) > 0 do end
  end)
end)

describe("a server nobody answers #coroutine #net", function()
  -- a port that refuses: bound by nobody (a server started, then stopped)
  local url
  setup(function()
    local S = require "nim.server"
    local srv = S.start{}
    url = srv.url
    srv:cleanup()
  end)

  it("reports the first failed attempt through onerror, once, and waitSync{timeout} returns Error_Timeout naming it", function()
    local errors, retries = {}, 0
    local nim = NIM.getInstance{account = "alice", token = "t", server = url, db = false,
      reconnectDelay = 50, maxReconnectDelay = 50,
      onerror = function(e) errors[#errors + 1] = e end,
      onwillreconnect = function() retries = retries + 1 end}
    local err = NIM.run(function() return nim:waitSync{timeout = 1500} end)
    assert.equal("Error_Timeout", err.code)
    assert.matches("^waitSync: no sync after 1500 ms %(last error: " .. url:gsub("%p", "%%%0") .. ": cannot connect", err.message)
    assert.is_true(retries >= 3, "retries: " .. retries)      -- it went on trying
    assert.equal(1, #errors)                                  -- but said it once
    assert.equal("Connect_Error", errors[1].code)
    assert.equal("connect", errors[1].event)
    assert.matches("retrying", errors[1].message)
    -- outside NIM.run the same, by polling
    local e2 = nim:waitSync{timeout = 100}
    assert.equal("Error_Timeout", e2.code)
    assert.equal(1, #errors)
    -- the app's own disconnect() and connect(): the next failure is news again
    local done = 0
    nim:disconnect(function() done = done + 1 end)
    nim:connect(function() done = done + 1 end)
    assert.is_true(NIM.wait(function() return done == 2 and #errors == 2 end, 5000), "errors: " .. #errors)
    assert.equal("Connect_Error", errors[2].code)
    nim:destroy()
    while nim:poll(0) > 0 do end
  end)
end)

describe("waiting where it cannot #coroutine", function()
  -- A request without done inside NIM.run used to be sent before the yield;
  -- when the yield failed (a callback of the coroutine's own nim:poll, a
  -- pcall on 5.1), its reply later woke the coroutine's next wait instead.
  it("a request without done inside a callback raises before sending, and the next one gets its own reply", function()
    local got, errs = nil, {}
    NIM.run(function()
      local nim = NIM.getInstance{account = "alice", db = false, onerror = function(e) errs[#errs + 1] = e end}
      assert.is_nil(nim:waitSync())
      local fired = false
      nim:insertLocalSession{scene = "p2p", to = "bob", updateTime = 5, done = function()
        fired = true
        nim:getLocalSessions{}                        -- without done, inside a callback
      end}
      assert.is_true(NIM.wait(function() nim:poll(10); return fired end, 5000))
      local _, obj = nim:insertLocalSession{scene = "p2p", to = "carol", updateTime = 6}
      got = obj
      nim:destroy()
    end)
    assert.equal("p2p-carol", got and got.session and got.session.id)
    assert.equal(1, #errs)
    assert.equal("Callback_Error", errs[1].code)
    assert.matches("getLocalSessions: cannot wait inside a callback %(poll is dispatching%): pass done", errs[1].message)
  end)

  it("a request inside pcall inside NIM.run waits (5.1: the VM refuses the yield) and never corrupts the next one", function()
    local got, perr, first
    NIM.run(function()
      local nim = NIM.getInstance{account = "alice", db = false}
      assert.is_nil(nim:waitSync())
      local ok, e, obj = pcall(nim.getLocalSessions, nim, {})
      if ok then first = obj else perr = e end
      local _, obj2 = nim:insertLocalSession{scene = "p2p", to = "carol", updateTime = 6}
      got = obj2
      nim:destroy()
    end)
    if _VERSION == "Lua 5.1" and not jit then
      assert.matches("attempt to yield across", perr)
    else
      assert.is_nil(perr)
      assert.same({}, first.sessions)
    end
    assert.equal("p2p-carol", got and got.session and got.session.id)
  end)

  it("NIM.wait and waitSync inside a callback raise instead of spinning", function()
    local nim = NIM.getInstance{account = "alice", db = false}
    local r = {}
    nim:insertLocalSession{scene = "p2p", to = "bob", done = function()
      r.wait = { pcall(NIM.wait, function() return false end, 1000) }
      r.sync = { pcall(nim.waitSync, nim, {timeout = 1000}) }
    end}
    local t0 = os.clock()
    assert.is_true(NIM.wait(function() return r.sync ~= nil end, 5000))
    assert.is_true(os.clock() - t0 < 0.5, "spun for " .. (os.clock() - t0) .. " s of CPU")
    assert.is_false(r.wait[1])
    assert.matches("wait: cannot wait inside a callback", r.wait[2])
    -- the sync of a local instance is over at once: nothing to wait for, no error
    assert.is_true(r.sync[1])
    nim:destroy()
    while nim:poll(0) > 0 do end
  end)

  -- syncs[nim] is weak-keyed; 5.1 and LuaJIT have no ephemerons, so a value
  -- that leads to an app callback referring to nim kept nim alive for ever.
  it("collects an instance whose onerror refers to it", function()
    local probe = setmetatable({}, { __mode = "k" })
    do
      local nim
      nim = NIM.getInstance{account = "gc", db = false, onerror = function(e) return nim, e end}
      probe[nim] = true
      nim:insertLocalSession{scene = "p2p", to = "x"}     -- a command without done: sync.report
      nim:destroy()
      while nim:poll(5) > 0 do end
    end
    for _ = 1, 6 do collectgarbage("collect") end
    assert.is_nil(next(probe))
  end)

  it("a raising onerror of a command's failure goes to stderr, not to onerror again", function()
    local code = [[
      local NIM = require "nim"
      local calls = 0
      local nim = NIM.getInstance{account = "gus", db = false, onerror = function(e) calls = calls + 1; error("boom " .. e.code) end}
      nim:insertLocalSession{scene = "p2p", to = "x"}
      nim:insertLocalSession{scene = "p2p", to = "x"}
      NIM.wait(function() return false end, 300)
      io.write("calls=", calls, "\n")
      nim:destroy()
    ]]
    local p = assert(io.popen(H.LUA .. " -e " .. H.shell_quote(code) .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    assert.matches("nim: error in onerror: [^\n]*boom Session_Exist", out)
    assert.matches("calls=1\n", out)
  end)
end)
