-- Local messages (saveMsgsToLocal, getLocalMsgs) and the storage rules:
-- schema version, WAL, unusable databases.
local H = require "helpers"

describe("local messages", function()
  local dir, nim, rec
  before_each(function() dir = H.tmpdir(); nim, rec = H.open(dir) end)
  after_each(function() H.close(nim); collectgarbage(); H.rmdir(dir) end)

  describe("saveMsgsToLocal", function()
    it("fills flow, target, sessionId, status and updates the sessions", function()
      local given = {
        H.msg("bob", "alice", 100, "1", { custom = { nested = { 1, 2, { x = true } } } }),
        H.msg("alice", "bob", 200, "2"),
      }
      local err, obj = H.call(nim, "saveMsgsToLocal", { msgs = given })
      assert.is_nil(err)
      assert.equals(given, obj.msgs)            -- the caller's tables, untouched
      assert.is_nil(given[1].flow)
      local _, stored = H.call(nim, "getLocalMsgs", { sessionId = "p2p-bob", desc = false })
      local a, b = stored.msgs[1], stored.msgs[2]
      assert.equals("in", a.flow); assert.equals("bob", a.target); assert.equals("p2p-bob", a.sessionId)
      assert.equals("success", a.status)
      assert.same({ nested = { 1, 2, { x = true } } }, a.custom)
      assert.equals("out", b.flow); assert.equals("bob", b.target); assert.equals("p2p-bob", b.sessionId)
      local _, s = H.call(nim, "getLocalSession", { sessionId = "p2p-bob" })
      assert.equals(200, s.updateTime)
      assert.equals("2", s.lastMsg.idServer)
      assert.equals(1, s.unread)
    end)

    it("keeps the newest message as lastMsg whatever the arrival order", function()
      H.call(nim, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 300, "new") } })
      H.call(nim, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 100, "old") } })
      local _, s = H.call(nim, "getLocalSession", { sessionId = "p2p-bob" })
      assert.equals("new", s.lastMsg.idServer)
      assert.equals(300, s.updateTime)
      assert.equals(2, s.unread)
    end)

    it("accepts an empty list", function()
      local err, obj = H.call(nim, "saveMsgsToLocal", { msgs = {} })
      assert.is_nil(err)
      assert.same({}, obj.msgs)
    end)

    it("raises naming the message and field", function()
      local F = "saveMsgsToLocal: bad argument "
      assert.error_matches(function() nim:saveMsgsToLocal {} end, F .. "'msgs'")
      assert.error_matches(function() nim:saveMsgsToLocal { msgs = { 5 } } end, F .. "'msgs%[1%]'")
      local m = H.msg("bob", "alice", 1, "1")
      m.scene = "room"
      assert.error_matches(function() nim:saveMsgsToLocal { msgs = { H.msg("b", "alice", 1, "0"), m } } end,
        F .. "'msgs%[2%].scene' %(unknown scene 'room'")
      for _, k in ipairs { "from", "to", "time" } do
        local x = H.msg("bob", "alice", 1, "1")
        x[k] = nil
        assert.error_matches(function() nim:saveMsgsToLocal { msgs = { x } } end, F .. "'msgs%[1%]." .. k .. "'")
      end
      local x = H.msg("bob", "alice", 1.5, "1")
      assert.error_matches(function() nim:saveMsgsToLocal { msgs = { x } } end, F .. "'msgs%[1%].time'")
      x = H.msg("bob", "alice", 1, nil)
      assert.error_matches(function() nim:saveMsgsToLocal { msgs = { x } } end, "idServer or idClient")
      x = H.msg("bob", "alice", 1, "1", { content = print })
      assert.error_matches(function() nim:saveMsgsToLocal { msgs = { x } } end,
        F .. "'msgs%[1%].content' %(unsupported value %(function%)%)")
      local cyc = {}
      cyc.self = cyc
      x = H.msg("bob", "alice", 1, "1", { custom = cyc })
      assert.error_matches(function() nim:saveMsgsToLocal { msgs = { x } } end, "too deep")
      x = H.msg("bob", "alice", 1, "1", { custom = { [true] = 1 } })
      assert.error_matches(function() nim:saveMsgsToLocal { msgs = { x } } end, "boolean key")
      -- nothing was stored by the failed calls
      local _, obj = H.call(nim, "getLocalMsgs", {})
      assert.same({}, obj.msgs)
    end)
  end)

  describe("getLocalMsgs", function()
    before_each(function()
      local msgs = {}
      for i = 1, 10 do msgs[i] = H.msg(i % 2 == 0 and "bob" or "carol", "alice", i * 10, "m" .. i) end
      H.call(nim, "saveMsgsToLocal", { msgs = msgs })
    end)

    local function idlist(obj)
      local out = {}
      for i, m in ipairs(obj.msgs) do out[i] = m.idServer end
      return out
    end

    it("gives a session's messages newest first, or oldest first", function()
      local err, obj = H.call(nim, "getLocalMsgs", { sessionId = "p2p-bob" })
      assert.is_nil(err)
      assert.same({ "m10", "m8", "m6", "m4", "m2" }, idlist(obj))
      local _, asc = H.call(nim, "getLocalMsgs", { sessionId = "p2p-bob", desc = false, limit = 2 })
      assert.same({ "m2", "m4" }, idlist(asc))
    end)

    it("filters by start and end (inclusive) and limits", function()
      local _, obj = H.call(nim, "getLocalMsgs", { start = 30, ["end"] = 60 })
      assert.same({ "m6", "m5", "m4", "m3" }, idlist(obj))
      local _, l = H.call(nim, "getLocalMsgs", { limit = 3 })
      assert.same({ "m10", "m9", "m8" }, idlist(l))
      local _, none = H.call(nim, "getLocalMsgs", { sessionId = "team-1" })
      assert.same({}, none.msgs)
    end)

    it("filters by keyword: a case-sensitive substring of the text, any script, through the FTS5 index", function()
      local more = {
        H.msg("bob", "alice", 200, "k1", { text = "Meet at the Café at noon" }),
        H.msg("bob", "alice", 210, "k2", { text = "你好，世界 😀 见面吧" }),
        H.msg("carol", "alice", 220, "k3", { text = "a * b? [c] 100% _x_" }),
        H.msg("carol", "alice", 230, "k4", { type = "custom", text = nil, content = "{\"meet\":1}" }),
        H.msg("bob", "alice", 240, "k5", { text = "meeting moved" }),
      }
      H.call(nim, "saveMsgsToLocal", { msgs = more })
      local function ids(opts) local _, o = H.call(nim, "getLocalMsgs", opts); return idlist(o) end
      assert.same({ "k1" }, ids { keyword = "Meet" })              -- case-sensitive, like the JS SDK
      assert.same({ "k5" }, ids { keyword = "meet" })
      assert.same({ "k1" }, ids { keyword = "Café" })
      assert.same({ "k2" }, ids { keyword = "世界" })               -- 2 characters: below a trigram, still found
      assert.same({ "k2" }, ids { keyword = "😀" })
      assert.same({ "k3" }, ids { keyword = "* b?" })              -- GLOB's own characters are literal
      assert.same({ "k3" }, ids { keyword = "[c]" })
      assert.same({ "k3" }, ids { keyword = "100% _x_" })
      assert.same({}, ids { keyword = "nothing like it" })
      assert.same({ "k5", "k1" }, ids { keyword = "ee" })
      assert.same({ "k1", "k5" }, ids { keyword = "ee", desc = false })
      assert.same({ "k5" }, ids { keyword = "ee", limit = 1 })
      assert.same({ "k1" }, ids { keyword = "ee", sessionId = "p2p-bob", ["end"] = 239 })
      assert.same(ids {}, ids { keyword = "" })                    -- an empty keyword filters nothing
      -- types, and type (a name or a list each, as the JS SDK takes them)
      assert.same({ "k4" }, ids { types = { "custom" } })
      assert.same({ "k4" }, ids { type = "custom" })
      assert.same({ "k5", "k4" }, ids { types = "text", type = "custom", start = 230 })
      assert.same({}, ids { types = { "image" } })
      assert.same(ids {}, ids { types = {} })
      assert.same({ "k5" }, ids { types = { "text" }, keyword = "ee", sessionId = "p2p-bob", start = 230 })
      -- what is stored after a search is found by the next one (indexed then)
      H.call(nim, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 250, "k6", { text = "Meet again" }) } })
      assert.same({ "k6", "k1" }, ids { keyword = "Meet" })
      assert.same({ "k6" }, ids { keyword = "ag" })
      assert.error_matches(function() nim:getLocalMsgs { keyword = 5, done = print } end, "bad argument 'keyword' %(string expected")
      assert.error_matches(function() nim:getLocalMsgs { types = { 5 }, done = print } end, "bad argument 'types%[1%]' %(type name expected%)")
      assert.error_matches(function() nim:getLocalMsgs { type = true, done = print } end, "bad argument 'type' %(type name or array")
    end)

    it("raises for bad parameters", function()
      assert.error_matches(function() nim:getLocalMsgs { limit = -2 } end, "getLocalMsgs: bad argument 'limit'")
      assert.error_matches(function() nim:getLocalMsgs { start = "x" } end, "getLocalMsgs: bad argument 'start'")
      assert.error_matches(function() nim:getLocalMsgs { desc = 0 } end, "getLocalMsgs: bad argument 'desc'")
      assert.error_matches(function() nim:getLocalMsgs { sessionId = "x" } end, "getLocalMsgs: bad argument 'sessionId'")
    end)
  end)
end)

describe("storage", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() collectgarbage(); H.rmdir(dir) end)

  local function sqlite(path, sql)
    -- the sqlite3 shell may be missing: read the header bytes instead where possible
    local p = io.popen("command -v sqlite3")
    local has = p:read("*a") ~= ""
    p:close()
    if not has then return nil end
    p = io.popen("sqlite3 '" .. path .. "' '" .. sql .. "'")
    local out = p:read("*a")
    p:close()
    return out
  end

  it("uses WAL and a versioned schema", function()
    local nim = H.open(dir)
    H.call(nim, "insertLocalSession", { scene = "p2p", to = "bob" })
    H.close(nim)
    local f = assert(io.open(dir .. "/alice.db", "rb"))
    local header = f:read(100)
    f:close()
    assert.equals("SQLite format 3\0", header:sub(1, 16))
    assert.equals(2, header:byte(19))           -- write version 2 = WAL
    local uv = ((header:byte(61) * 256 + header:byte(62)) * 256 + header:byte(63)) * 256 + header:byte(64)
    assert.equals(2, uv)                        -- PRAGMA user_version
    local out = sqlite(dir .. "/alice.db", "select id from sessions")
    if out then assert.equals("p2p-bob\n", out) end
  end)

  it("indexes the messages an older database already held for the keyword", function()
    local nim = H.open(dir)
    H.call(nim, "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 1, "1", { text = "an old hello" }),
                                              H.msg("bob", "alice", 2, "2", { text = "another" }) } })
    H.close(nim)
    -- back to schema 1, as a database of the previous release is
    local out = sqlite(dir .. "/alice.db", "DROP TABLE msgs_text; PRAGMA user_version = 1; PRAGMA user_version;")
    if not out then return pending("no sqlite3 shell") end
    assert.equals("1\n", out)
    local again = H.open(dir)
    local _, obj = H.call(again, "getLocalMsgs", { keyword = "old hell" })
    assert.equals(1, #obj.msgs)
    assert.equals("an old hello", obj.msgs[1].text)
    H.close(again)
    assert.equals("2\n", sqlite(dir .. "/alice.db", "PRAGMA user_version"))
  end)

  it("reports a corrupt database to onerror and DB_Error to every request", function()
    os.execute("mkdir -p '" .. dir .. "'")
    local f = assert(io.open(dir .. "/alice.db", "wb"))
    f:write(string.rep("this is not a database\n", 400))
    f:close()
    local nim, rec = H.open(dir)
    assert.equals(1, #rec.errors)
    assert.equals("DB_Error", rec.errors[1].code)
    assert.matches("database", rec.errors[1].message)
    for _, call in ipairs {
      { "getLocalSessions", {} },
      { "insertLocalSession", { scene = "p2p", to = "bob" } },
      { "saveMsgsToLocal", { msgs = { H.msg("bob", "alice", 1, "1") } } },
      { "getLocalMsgs", {} },
    } do
      local err = H.call(nim, call[1], call[2])
      assert.equals("DB_Error", err and err.code, call[1])
    end
    local err = H.callp(nim, "resetAllSessionUnread")
    assert.equals("DB_Error", err.code)
    H.close(nim)
  end)

  it("refuses a second instance on the same database file with a clear DB_Error", function()
    local first = H.open(dir)
    H.call(first, "insertLocalSession", { scene = "p2p", to = "bob" })
    local second, rec = H.open(dir)                  -- the same account, the same file
    assert.equals("DB_Error", rec.errors[1] and rec.errors[1].code)
    assert.matches("in use by another nim instance", rec.errors[1].message)
    assert.equals("DB_Error", (H.call(second, "getLocalSessions")).code)
    H.close(second)
    local _, page = H.call(first, "getLocalSessions")  -- the first one is unharmed
    assert.equals("p2p-bob", page.sessions[1].id)
    first:destroy()                                  -- no wait: a reopen waits for the close
    local again, rec2 = H.open(dir)
    assert.same({}, rec2.errors)
    local _, page2 = H.call(again, "getLocalSessions")
    assert.equals("p2p-bob", page2.sessions[1].id)
    H.close(again)
    H.wait_until(first, function() return first:poll(0) == 0 end)
  end)

  it("reports a database that cannot be opened", function()
    os.execute("mkdir -p '" .. dir .. "/alice.db'")     -- a directory where the file should be
    local nim, rec = H.open(dir)
    assert.equals("DB_Error", rec.errors[1].code)
    local err = H.call(nim, "getLocalSessions")
    assert.equals("DB_Error", err.code)
    H.close(nim)
  end)
end)
