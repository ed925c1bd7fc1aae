-- mergeSessions, cutSessions, cutSessionsByIds, findSession (REFERENCE.md,
-- "mergeSessions and friends").
local NIM = require "nim"
local H = require "helpers"
local oracle = dofile("bench/lua_merge.lua")

local function ids(list)
  local t = {}
  for i, s in ipairs(list) do t[i] = s.id end
  return t
end

describe("mergeSessions #merge", function()
  describe("recorded JS SDK vectors", function()
    local data = H.read_json("spec/fixtures/merge_sessions.json")
    it("has the recorded cases", function()
      assert.is_true(#data.cases >= 300)
    end)
    for _, case in ipairs(data.cases) do
      it(case.name, function()
        local olds_before, news_before = H.deepcopy(case.olds), H.deepcopy(case.news)
        local got = NIM.mergeSessions(case.olds, case.news)
        assert.same(case.expect, got)
        assert.same(olds_before, case.olds)   -- inputs never modified
        assert.same(news_before, case.news)
        -- sessions no new one touched are the same tables as in olds
        local touched = {}
        for _, s in ipairs(case.news.id and {case.news} or case.news) do touched[s.id] = true end
        for _, s in ipairs(got) do
          if not touched[s.id] then
            local found = false
            for _, o in ipairs(case.olds or {}) do if rawequal(o, s) then found = true end end
            assert.is_true(found, s.id .. " should be the old table itself")
          end
        end
      end)
    end
  end)

  it("merges shallowly into a new table, keeping untouched sessions as they are", function()
    local a = {id = "p2p-a", updateTime = 10, unread = 3, lastMsg = {text = "x"}}
    local b = {id = "p2p-b", updateTime = 20}
    local olds = {b, a}
    local upd = {id = "p2p-a", updateTime = 30, unread = 0}
    local r = NIM.mergeSessions(olds, upd)
    assert.same({"p2p-a", "p2p-b"}, ids(r))
    assert.is_false(rawequal(r[1], a))
    assert.equal(0, r[1].unread)
    assert.equal(30, r[1].updateTime)
    assert.equal(a.lastMsg, r[1].lastMsg)          -- shallow: the same nested table
    assert.equal(b, r[2])
    assert.equal(3, a.unread)                      -- input untouched
    assert.equal(2, #olds)
  end)

  it("merges later duplicates in news into the same entry, in order", function()
    local r = NIM.mergeSessions({{id = "p2p-a", updateTime = 1, x = 1}},
      {{id = "p2p-a", updateTime = 5, y = 2}, {id = "p2p-a", y = 3, z = 4}})
    assert.same({{id = "p2p-a", updateTime = 5, x = 1, y = 3, z = 4}}, r)
  end)

  it("merges into the first of duplicated olds and keeps the others", function()
    local first, second = {id = "p2p-a", updateTime = 2, n = 1}, {id = "p2p-a", updateTime = 1, n = 2}
    local r = NIM.mergeSessions({first, second}, {id = "p2p-a", updateTime = 3, n = 9})
    assert.same({9, 2}, {r[1].n, r[2].n})
    assert.equal(second, r[2])
  end)

  it("appends unknown ids as the given tables and merges their later duplicates", function()
    local n1 = {id = "team-1", updateTime = 5}
    local r = NIM.mergeSessions({{id = "p2p-x", updateTime = 6}}, {n1, {id = "team-2", updateTime = 7}})
    assert.same({"team-2", "p2p-x", "team-1"}, ids(r))
    assert.equal(n1, r[3])
    local r2 = NIM.mergeSessions({{id = "p2p-x"}}, {n1, {id = "team-1", updateTime = 1}})
    assert.same({{id = "team-1", updateTime = 1}, {id = "p2p-x"}}, r2)
    assert.equal(5, n1.updateTime)
  end)

  it("with no olds returns news sorted as given, duplicates kept (as the JS SDK)", function()
    local n1, n2 = {id = "team-1", updateTime = 5}, {id = "team-1", updateTime = 9}
    for _, olds in ipairs({{}, false}) do
      local r = NIM.mergeSessions(olds or nil, {n1, n2})
      assert.equal(n2, r[1])
      assert.equal(n1, r[2])
    end
  end)

  it("sorts stably newest first with sessions without updateTime last (Differs from JS)", function()
    local r = NIM.mergeSessions({
      {id = "a"}, {id = "b", updateTime = 1}, {id = "c", updateTime = 2},
      {id = "d", updateTime = 1}, {id = "e"},
    }, {{id = "f", updateTime = 1}, {id = "g"}})
    assert.same({"c", "b", "d", "f", "a", "e", "g"}, ids(r))
  end)

  it("always returns a sorted new array, even when news is empty (Differs from JS)", function()
    local olds = {{id = "a", updateTime = 1}, {id = "b", updateTime = 2}}
    local r = NIM.mergeSessions(olds, {})
    assert.same({"b", "a"}, ids(r))
    assert.is_false(rawequal(r, olds))
    assert.same({}, NIM.mergeSessions(nil, {}))
  end)

  it("compares integer and float times by value", function()
    local r = NIM.mergeSessions({{id = "a", updateTime = 2}, {id = "b", updateTime = 2.5}}, {})
    assert.same({"b", "a"}, ids(r))
  end)

  it("takes large, UTF-8 and binary ids", function()
    local big = string.rep("x", 100000)
    local r = NIM.mergeSessions({{id = big, updateTime = 1}, {id = "p2p-小明", updateTime = 2}},
      {{id = "p2p-小明", unread = 1}, {id = big .. "y", updateTime = 0}, {id = "a\0b", updateTime = 3},
       {id = big, updateTime = 9}})
    assert.same({big, "a\0b", "p2p-小明", big .. "y"}, ids(r))
    assert.equal(1, r[3].unread)
  end)

  it("keeps deeply nested lastMsg tables as they are, without walking them", function()
    local deep = {}
    local cur = deep
    for _ = 1, 100000 do cur.next = {}; cur = cur.next end
    local r = NIM.mergeSessions({{id = "a", updateTime = 1, lastMsg = deep}}, {id = "a", unread = 2})
    assert.equal(deep, r[1].lastMsg)
  end)

  it("handles 100,000-session lists", function()
    local olds = {}
    for i = 1, 100000 do olds[i] = {id = "p2p-u" .. i, updateTime = 200000 - i} end
    local news = {}
    for i = 1, 1000 do news[i] = {id = "p2p-u" .. (i * 97), updateTime = 300000 + i} end
    local r = NIM.mergeSessions(olds, news)
    assert.equal(100000, #r)
    assert.equal("p2p-u" .. (1000 * 97), r[1].id)
    for i = 2, #r do assert(r[i - 1].updateTime >= r[i].updateTime) end
  end)

  it("agrees with the pure-Lua reference on random inputs (sorted and unsorted olds)", function()
    math.randomseed(42)
    for round = 1, 200 do
      local olds, news = {}, {}
      for i = 1, math.random(0, 40) do
        local t = math.random(1, 12)
        olds[i] = {id = "s" .. math.random(1, 30), updateTime = (t % 5 ~= 0) and t or nil, k = i}
      end
      if round % 2 == 0 then olds = oracle.mergeSessions(nil, olds) end  -- sorted input: fast path
      for j = 1, math.random(0, 10) do
        local t = math.random(1, 12)
        news[j] = {id = "s" .. math.random(1, 40), updateTime = (t % 4 ~= 0) and t or nil, j = j}
      end
      local want = oracle.mergeSessions(H.deepcopy(olds), H.deepcopy(news))
      local got = NIM.mergeSessions(olds, news)
      assert.same(want, got)
    end
  end)

  it("is a method of the module and of NIM", function()
    assert.is_function(NIM.mergeSessions)
  end)

  describe("raises naming the function and argument", function()
    local function err(f, ...)
      local ok, e = pcall(f, ...)
      assert.is_false(ok)
      return e
    end
    it("for a non-table olds", function()
      assert.matches("mergeSessions: bad argument 'olds' %(table or nil expected, got number%)",
        err(NIM.mergeSessions, 5, {}))
    end)
    it("for a missing news", function()
      assert.matches("mergeSessions: bad argument 'news' %(table expected, got no value%)",
        err(NIM.mergeSessions, {}))
    end)
    it("for an element without a string id", function()
      assert.matches("bad argument 'olds' %(element 2: string 'id' expected, got nil%)",
        err(NIM.mergeSessions, {{id = "a"}, {}}, {}))
      assert.matches("bad argument 'news' %(element 1: string 'id' expected, got number%)",
        err(NIM.mergeSessions, {}, {{id = 5}}))
      assert.matches("bad argument 'olds' %(element 1: session table expected, got string%)",
        err(NIM.mergeSessions, {"p2p-a"}, {}))
    end)
    it("for a non-number or NaN updateTime", function()
      assert.matches("bad argument 'news' %(element 1: number 'updateTime' expected, got string%)",
        err(NIM.mergeSessions, nil, {id = "a", updateTime = "5"}))
      assert.matches("'updateTime' is NaN", err(NIM.mergeSessions, {{id = "a", updateTime = 0/0}}, {}))
    end)
    it("at the caller's line", function()
      assert.matches("merge_spec.lua:%d+: mergeSessions", err(function() return NIM.mergeSessions(1, {}) end))
    end)
  end)
end)

describe("cutSessions, cutSessionsByIds, findSession #merge", function()
  local a, b, a2, c = {id = "a"}, {id = "b"}, {id = "a", n = 2}, {id = "c"}
  local list = {a, b, a2, c}

  it("cutSessions removes the first session of each given id", function()
    local r = NIM.cutSessions(list, {{id = "a"}, {id = "c"}, {id = "zz"}})
    assert.same({b, a2}, r)
    assert.equal(b, r[1])
    assert.equal(4, #list)
    assert.same({b, a2, c}, NIM.cutSessions(list, {id = "a"}))    -- one session
    assert.same({}, NIM.cutSessions(nil, {id = "a"}))
  end)

  it("cutSessionsByIds takes one id or an array of ids", function()
    assert.same({a, b, a2}, NIM.cutSessionsByIds(list, "c"))
    assert.same({b, a2, c}, NIM.cutSessionsByIds(list, {"a", "x", "a"}))   -- an id once, first only
    assert.same({b}, NIM.cutSessionsByIds({a, b, c}, {"a", "c"}))
    assert.same({a, b, a2, c}, NIM.cutSessionsByIds(list, {}))
  end)

  it("findSession returns the first session with the id, or nil", function()
    assert.equal(a, NIM.findSession(list, "a"))
    assert.equal(c, NIM.findSession(list, "c"))
    assert.is_nil(NIM.findSession(list, "nope"))
    assert.is_nil(NIM.findSession(nil, "a"))
  end)

  it("raise naming the function and argument", function()
    assert.matches("cutSessions: bad argument 'invalids' %(table expected, got string%)",
      select(2, pcall(NIM.cutSessions, list, "a")))
    assert.matches("cutSessionsByIds: bad argument 'ids' %(element 1: string expected, got table%)",
      select(2, pcall(NIM.cutSessionsByIds, list, {{id = "a"}})))
    assert.matches("findSession: bad argument 'id' %(string expected, got no value%)",
      select(2, pcall(NIM.findSession, list)))
    assert.matches("findSession: bad argument 'list' %(element 1: session table expected, got number%)",
      select(2, pcall(NIM.findSession, {1}, "a")))
  end)
end)
