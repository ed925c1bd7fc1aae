-- Durability: a writer process is killed with SIGKILL at random moments;
-- every message whose done reported success must be stored exactly once,
-- and unread must equal what is stored.
local H = require "helpers"

describe("crash safety", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir) end)

  it("keeps every acknowledged message exactly once across SIGKILLs", function()
    local acked, nacks = {}, 0
    math.randomseed(os.time())
    local env = ("LUA_PATH='%s' LUA_CPATH='%s' "):format(package.path, package.cpath)
    for round = 1, 6 do
      local cmd = "exec sh -c 'echo $$; exec env " .. env:gsub("'", "'\\''") ..
        H.LUA .. " spec/fixtures/crash_writer.lua " .. dir .. " " .. round .. "'"
      local p = assert(io.popen(cmd, "r"))
      local pid = assert(tonumber(p:read("*l")), "writer pid")
      local target, lines = math.random(2, 40), 0
      -- wait for a random number of acknowledgements (reading blocks until
      -- the writer prints: no sleeping), then kill in the middle of writes
      for line in p:lines() do
        lines = lines + 1
        for id in line:gmatch("r[%d%-]+") do acked[id] = true end
        nacks = nacks + 1
        if lines >= target then break end
      end
      os.execute("kill -9 " .. pid)
      -- what the writer printed before it died was acknowledged too
      for line in p:lines() do
        for id in line:gmatch("r[%d%-]+") do acked[id] = true end
        nacks = nacks + 1
      end
      p:close()
      assert.is_true(lines >= target, "the writer stopped early in round " .. round)
    end
    assert.is_true(nacks >= 12)

    local nim = H.open(dir, { account = "me" })
    local _, obj = H.call(nim, "getLocalMsgs", { limit = 1000000 })
    local count, expected_unread = {}, {}
    for _, m in ipairs(obj.msgs) do
      count[m.idServer] = (count[m.idServer] or 0) + 1
      if m.flow == "in" and m.type ~= "notification" then
        expected_unread[m.sessionId] = (expected_unread[m.sessionId] or 0) + 1
      end
    end
    local n = 0
    for id in pairs(acked) do
      n = n + 1
      assert.equals(1, count[id], "acknowledged message " .. id)
    end
    for id, c in pairs(count) do assert.equals(1, c, "stored twice: " .. id) end
    assert.is_true(n > 0)
    if os.getenv("NIM_CRASH_VERBOSE") then print("acked", n, "stored", #obj.msgs) end
    local _, list = H.call(nim, "getLocalSessions", { limit = 1000 })
    for _, s in ipairs(list.sessions) do
      assert.equals(expected_unread[s.id] or 0, s.unread, "unread of " .. s.id)
    end
    local got
    nim:_request("verify", nil, function(err, r) got = r end)
    H.wait_until(nim, function() return got ~= nil end)
    assert.same({}, got.mismatches)
    H.close(nim)
  end)
end)
