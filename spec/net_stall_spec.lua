-- A recipient whose app stalls (SIGSTOP: a suspended phone app, a stalled
-- link) while messages to it are acknowledged to the sender loses none of
-- them: the server counts a message received only once a device said it
-- stored it, so what the stalled link never delivered comes at the next
-- login, whole.
local H = require "helpers"
local N = require "net_helpers"

describe("network stalled recipient #net", function()
  local srv, dir
  setup(function() srv = N.start { "alice", "bob" }; dir = H.tmpdir() end)
  teardown(function() N.close_all(); srv:cleanup(); H.rmdir(dir) end)

  it("keeps every acknowledged message through SIGSTOP and SIGCONT", function()
    local TOTAL, SIZE = 2500, 16000          -- 40 MB: more than the server queues for a connection
    local path = dir .. "/bob.db"
    local env = ("LUA_PATH='%s' LUA_CPATH='%s' "):format(package.path, package.cpath)
    local cmd = "exec sh -c 'echo $$; exec env " .. env:gsub("'", "'\\''") ..
      ("%s spec/fixtures/stall_reader.lua %s bob %s %s %d'"):format(H.LUA, srv.url, N.token("bob"), path, TOTAL)
    local p = assert(io.popen(cmd, "r"))
    local pid = assert(tonumber(p:read("*l")), "reader pid")
    assert.equals("synced", p:read("*l"))
    os.execute("kill -STOP " .. pid)

    local a = N.open(srv, "alice", { db = false, requestTimeout = 60000 })
    local body = string.rep("x", SIZE)
    local acked, failed = 0, 0
    local function done(err) if err then failed = failed + 1 else acked = acked + 1 end end
    for i = 1, TOTAL do
      a:sendText { scene = "p2p", to = "bob", text = i .. body, done = done }
      if i % 50 == 0 then a:poll(0) end
    end
    N.wait(function() return acked + failed == TOTAL end, 120, "every send answered")
    assert.equals(0, failed)

    os.execute("kill -CONT " .. pid)
    assert.equals("have " .. TOTAL, p:read("*l"))
    p:close()

    -- what the device stored: every message, once, unread counted right
    local b = N.open(srv, "bob", { db = path })
    assert.equals(TOTAL, #N.msgs(b, "p2p-alice"))
    assert.equals(TOTAL, N.session(b, "p2p-alice").unread)
    assert.same({}, N.verify(b).mismatches)
    -- and what it told the server: a new device of bob's finds none offline
    local _, rf = N.open(srv, "bob", { db = false }, 60)
    local offline = 0
    for _, g in ipairs(rf.offline) do offline = offline + #g.msgs end
    assert.equals(0, offline)
  end)
end)
