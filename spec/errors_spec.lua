-- Programmer errors read the same on Lua 5.4, LuaJIT and 5.1 (make test runs
-- this file under each): the same words, the caller's line (never one of the
-- SDK's own files, whether the check is in Lua or in C, whatever tail calls
-- the interpreter made), integral floats taken as integers by every check.
local NIM = require "nim"

describe("programmer errors on every interpreter #errors", function()
  local nim
  before_each(function() nim = NIM.getInstance{account = "alice", db = false} end)
  after_each(function()
    nim:destroy()
    while nim:poll(0) > 0 do end
  end)

  -- each case calls on the line it is defined on: that line is the position
  local cases = {
    { function() nim:getLocalSessions{limit = 1.5} end, "getLocalSessions: bad argument 'limit' (integer expected, got 1.5)" },
    { function() nim:getLocalSessions{limit = -1} end, "getLocalSessions: bad argument 'limit' (integer >= 0 expected, got -1)" },
    { function() nim:getLocalSessions{done = 5} end, "getLocalSessions: bad argument 'done' (callable expected, got number)" },
    { function() nim:getLocalSessions(5) end, "getLocalSessions: bad argument 'options' (table expected, got number)" },
    { function() nim:getLocalSessions{} end, "getLocalSessions: pass done, or call from inside NIM.run" },
    { function() nim:insertLocalSession{scene = "room", to = "x"} end, "insertLocalSession: bad argument 'scene' (unknown scene 'room' (p2p, team or superTeam))" },
    { function() nim:insertLocalSession{scene = "p2p", to = "x", updateTime = 1e300} end, "insertLocalSession: bad argument 'updateTime' (integer expected, got 1e+300)" },
    { function() nim:saveMsgsToLocal{msgs = {{scene = "p2p", from = "b", to = "a", time = 1.5, idServer = "1"}}} end, "saveMsgsToLocal: bad argument 'msgs[1].time' (integer (ms) expected, got 1.5)" },
    -- checked in C (json.c) under two Lua frames of the SDK
    { function() nim:saveMsgsToLocal{msgs = {{scene = "p2p", from = "b", to = "a", time = 1, idServer = "1", content = print}}} end, "saveMsgsToLocal: bad argument 'msgs[1].content' (unsupported value (function))" },
    { function() nim:saveMsgsToLocal{msgs = {{scene = "p2p", from = "b", to = "a", time = 1, idServer = "1", custom = {a = 0/0}}}} end, "saveMsgsToLocal: bad argument 'msgs[1].custom.a' (NaN number)" },
    { function() NIM.mergeSessions(1, {}) end, "mergeSessions: bad argument 'olds' (table or nil expected, got number)" },
    { function() NIM.mergeSessions({{id = 5}}, {}) end, "mergeSessions: bad argument 'olds' (element 1: string 'id' expected, got number)" },
    { function() nim:mergeSessions({{id = "a", updateTime = "x"}}, {}) end, "mergeSessions: bad argument 'olds' (element 1: number 'updateTime' expected, got string)" },
    { function() NIM.getInstance{account = "bob", limt = 1} end, "getInstance: bad argument 'limt' (unknown option)" },
    { function() NIM.getInstance{account = "bob", db = false, server = "ws://127.0.0.1:1", token = "t", requestTimeout = 1.5} end, "getInstance: bad argument 'requestTimeout' (milliseconds (integer >= 0) expected)" },
    { function() NIM.wait(5) end, "wait: bad argument 'cond' (callable expected, got number)" },
    { function() NIM.wait(function() return true end, -3) end, "wait: bad argument 'timeout_ms' (non-negative integer expected, got -3)" },
    { function() nim:poll(-1) end, "poll: bad argument 'timeout_ms' (non-negative integer expected, got -1)" },
    { function() nim:setCurrSession(5) end, "setCurrSession: bad argument 'id' (session id string expected, got number)" },
    { function() nim:getLocalMsgs{limit = 1e20, done = print} end, "getLocalMsgs: bad argument 'limit' (integer expected, got 1e+20)" },
  }
  for i, case in ipairs(cases) do
    it("case " .. i .. ": " .. case[2], function()
      local ok, e = pcall(case[1])
      assert.is_false(ok)
      assert.equal("spec/errors_spec.lua:" .. debug.getinfo(case[1], "S").linedefined .. ": " .. case[2], e)
    end)
  end

  -- A tail call (`return nim:f{...}`) leaves no frame of the function that
  -- made it on LuaJIT and 5.1 (5.4 keeps it for a C function): the position
  -- is then the nearest Lua caller still there, never an SDK file.
  for i, case in ipairs {
    { function() return nim:getLocalSessions{} end, "getLocalSessions: pass done, or call from inside NIM.run" },
    { function() return nim:getLocalSessions{limit = -1} end, "getLocalSessions: bad argument 'limit' (integer >= 0 expected, got -1)" },
    { function() return nim:saveMsgsToLocal{msgs = {{scene = "p2p", from = "b", to = "a", time = 1, idServer = "1", custom = {a = 0/0}}}} end, "saveMsgsToLocal: bad argument 'msgs[1].custom.a' (NaN number)" },
    { function() return NIM.mergeSessions({{id = 5}}, {}) end, "mergeSessions: bad argument 'olds' (element 1: string 'id' expected, got number)" },
  } do
    it("tail call " .. i .. ": " .. case[2], function()
      local ok, e = pcall(case[1]); local here = debug.getinfo(1, "l").currentline
      assert.is_false(ok)
      local line, msg = e:match("^spec/errors_spec%.lua:(%d+): (.*)$")
      assert.equal(case[2], msg)
      assert.is_truthy(tonumber(line) == debug.getinfo(case[1], "S").linedefined or tonumber(line) == here, e)
    end)
  end

  it("takes an integral float wherever it takes an integer", function()
    assert.is_number(nim:poll(10.0))
    local page
    nim:getLocalSessions{limit = 5.0, done = function(_, p) page = p end}
    assert.is_true(NIM.wait(function() return page ~= nil end, 5000))
    local other = NIM.getInstance{account = "bob", db = false, server = "ws://127.0.0.1:1", token = "t",
                                  requestTimeout = 3000.0, onerror = function() end}
    other:destroy()
    while other:poll(0) > 0 do end
  end)
end)
