-- An offline backlog of any size comes in one login, in pages (each stored
-- and acknowledged before the next is asked for), so the app sees one
-- complete sync, and once it is stored nothing is offline any more.
local N = require "net_helpers"

describe("network offline backlog #net", function()
  local srv
  setup(function() srv = N.start { "dave", "erin" } end)
  teardown(function() N.close_all(); srv:cleanup() end)

  it("more than 10,000 offline messages arrive in one reported sync", function()
    local TOTAL = 10050
    local d = N.open(srv, "dave", { db = false, requestTimeout = 60000 })
    local acked, failed = 0, 0
    local function done(err) if err then failed = failed + 1 else acked = acked + 1 end end
    for i = 1, TOTAL do
      d:sendText { scene = "p2p", to = "erin", text = "b" .. i, done = done }
      if i % 200 == 0 then d:poll(0) end
    end
    N.wait(function() return acked + failed == TOTAL end, 60, "every send acknowledged")
    assert.equals(0, failed)
    N.close(d)
    local e, re = N.open(srv, "erin", { onofflinemsgs = false, onroamingmsgs = false }, 60)
    assert.equals(1, #re.connects)
    assert.equals(1, re.syncdone)
    assert.equals(1, #re.sessions)
    assert.equals(TOTAL, re.sessions[1][1].unread)
    assert.equals("b" .. TOTAL, re.sessions[1][1].lastMsg.text)
    assert.equals(TOTAL, #N.msgs(e, "p2p-dave"))
    assert.equals(0, #re.disconnects)
    assert.same({}, N.verify(e).mismatches)
    -- every page was acknowledged: a second device gets roaming only
    assert.is_nil((N.call(e, "getStickTopSessions", {})))   -- a round trip after the acks
    local _, r2 = N.open(srv, "erin", { db = false })
    local offline, roaming = 0, 0
    for _, g in ipairs(r2.offline) do offline = offline + #g.msgs end
    for _, g in ipairs(r2.roaming) do roaming = roaming + #g.msgs end
    assert.equals(0, offline)
    assert.equals(100, roaming)                               -- the latest 100 of the session
  end)
end)
