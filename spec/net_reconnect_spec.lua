-- Connection failures against the real nim-server: reconnect with backoff,
-- Not_Connected, Error_Timeout, a dead peer noticed by heartbeats, a wrong
-- token, and a server killed with SIGKILL mid-conversation.
local N = require "net_helpers"
local S = require "nim.server"

local function signal(srv, sig) os.execute(("kill -%s %d"):format(sig, srv.pid)) end

describe("network failures #net", function()
  local srv
  before_each(function() srv = N.start { "alice", "bob" } end)
  after_each(function()
    N.close_all()
    signal(srv, "CONT")
    srv:cleanup()
  end)

  it("reconnect attempts are never under 10 ms apart, however small reconnectDelay", function()
    -- nothing listens on port 1: every attempt is refused at once
    local _, rec = N.open({ url = "ws://127.0.0.1:1" }, "alice",
      { nowait = true, reconnectDelay = 1, maxReconnectDelay = 1 })
    N.wait(function() return #rec.reconnects >= 20 end, 5, "20 retries")
    for i, r in ipairs(rec.reconnects) do
      assert.equal(i, r.retryCount)
      assert.is_true(r.duration >= 10, "retry " .. i .. " after " .. r.duration .. " ms")
    end
  end)

  it("each reconnect delay is its step +-20 %", function()
    local _, rec = N.open({ url = "ws://127.0.0.1:1" }, "alice",
      { nowait = true, reconnectDelay = 100, maxReconnectDelay = 100 })
    N.wait(function() return #rec.reconnects >= 8 end, 5, "8 retries")
    for i, r in ipairs(rec.reconnects) do
      assert.is_true(r.duration >= 80 and r.duration <= 120, "retry " .. i .. " after " .. r.duration .. " ms")
    end
  end)

  it("a wrong token is reported once, clearly, and not retried", function()
    local nim, rec = N.open(srv, "alice", { token = "wrong", nowait = true })
    N.wait(function() return #rec.disconnects > 0 end, 5, "ondisconnect")
    local d = rec.disconnects[1]
    assert.equals(302, d.code)
    assert.matches("wrong account or token", d.reason)
    assert.is_false(d.willReconnect)
    assert.equals(302, rec.errors[1].code)
    assert.equals(0, #rec.reconnects)
    assert.equals(0, rec.syncdone)
    local err = N.call(nim, "sendText", { scene = "p2p", to = "bob", text = "x" })
    assert.equals("Not_Connected", err.code)
    assert.equals(0, #rec.reconnects)
    -- local storage still works
    local e2 = N.call(nim, "getLocalSessions", {})
    assert.is_nil(e2)
  end)

  it("an unknown account is refused the same way", function()
    local _, rec = N.open(srv, "mallory", { nowait = true })
    N.wait(function() return #rec.disconnects > 0 end, 5, "ondisconnect")
    assert.equals(302, rec.disconnects[1].code)
    assert.equals(0, #rec.reconnects)
  end)

  it("reconnects with backoff after the server goes away; requests meanwhile fail with Not_Connected", function()
    local a, ra = N.open(srv, "alice")
    local b, rb = N.open(srv, "bob")
    N.send(b, "alice", "before")
    N.wait_update(ra, "p2p-bob", function(s) return s.lastMsg.text == "before" end)
    assert.is_true(srv:stop())
    N.wait(function() return #ra.disconnects > 0 and #ra.reconnects >= 2 end, 5, "ondisconnect + retries")
    assert.equals(1006, ra.disconnects[1].code)
    assert.is_true(ra.disconnects[1].willReconnect)
    assert.equals(1, ra.reconnects[1].retryCount)
    assert.equals(2, ra.reconnects[2].retryCount)
    assert.is_true(ra.reconnects[1].duration > 0)
    local err = N.call(a, "sendText", { scene = "p2p", to = "bob", text = "x" })
    assert.equals("Not_Connected", err.code)
    err = N.call(a, "deleteSession", { scene = "p2p", to = "bob" })
    assert.equals("Not_Connected", err.code)
    -- back on the same port: both resync; the second onsessions has only what changed
    srv = S.start { db = srv.db, port = srv.port, kdfIterations = 1000, maxSendRate = 1000000 }
    N.wait(function() return ra.syncdone >= 2 and rb.syncdone >= 2 end, 10, "resync")
    assert.equals(2, #ra.connects)
    assert.equals(0, #ra.sessions)   -- nothing new at either sync: no onsessions
    N.send(b, "alice", "after")
    local s = N.wait_update(ra, "p2p-bob", function(x) return x.lastMsg.text == "after" end)
    assert.equals(2, s.unread)
    assert.same({}, N.verify(a).mismatches)
  end)

  it("messages sent while I was away come in the resync's onsessions", function()
    local a, ra = N.open(srv, "alice")
    local b = N.open(srv, "bob")
    N.callp(a, "disconnect")
    N.wait(function() return #ra.disconnects > 0 end, 5, "ondisconnect")
    assert.is_false(ra.disconnects[1].willReconnect)
    N.send(b, "alice", "while away")
    N.callp(a, "connect")
    N.wait(function() return ra.syncdone >= 2 end, 5, "resync")
    assert.equals(1, #ra.offline)
    local last = ra.sessions[#ra.sessions]
    assert.equals(1, #last)
    assert.equals("p2p-bob", last[1].id)
    assert.equals(1, last[1].unread)
    assert.equals(1, ra.syncdone - 1)
  end)

  it("a request the server does not answer times out with Error_Timeout; heartbeats notice the dead peer", function()
    local a, ra = N.open(srv, "alice", { requestTimeout = 300, heartbeatInterval = 400 })
    signal(srv, "STOP")
    local err = N.call(a, "sendText", { scene = "p2p", to = "bob", text = "into the void" })
    assert.equals("Error_Timeout", err.code)
    -- the session showed the message sending, then failed
    local s = N.wait_update(ra, "p2p-bob", function(x) return x.lastMsg.status == "fail" end)
    assert.equals("into the void", s.lastMsg.text)
    local seen_sending = false
    for _, u in ipairs(ra.updates) do
      if u.lastMsg and u.lastMsg.text == "into the void" and u.lastMsg.status == "sending" then seen_sending = true end
    end
    assert.is_true(seen_sending)
    N.wait(function() return #ra.disconnects > 0 end, 5, "heartbeat ondisconnect")
    assert.matches("heartbeat", ra.disconnects[1].reason)
    assert.is_true(ra.disconnects[1].willReconnect)
    signal(srv, "CONT")
    N.wait(function() return ra.syncdone >= 2 end, 10, "resync after the server woke up")
    local e2, m = N.call(a, "sendText", { scene = "p2p", to = "bob", text = "again" })
    assert.is_nil(e2)
    assert.equals("success", m.status)
  end)

  it("destroy with a request in flight answers it with Closed; a connected instance can be collected", function()
    local a, ra = N.open(srv, "alice")
    signal(srv, "STOP")
    local got
    a:sendText { scene = "p2p", to = "bob", text = "never", done = function(err) got = err end }
    N.wait_update(ra, "p2p-bob", function(s) return s.lastMsg.status == "sending" end)
    local closed = false
    a:destroy(function() closed = true end)
    N.wait(function() return closed end, 5, "destroy done")
    assert.equals("Closed", got.code)
    signal(srv, "CONT")
    -- an instance dropped without destroy is closed by __gc
    N.live[a] = nil
    local NIM = require "nim"
    local synced = false
    local b = NIM.getInstance { account = "bob", token = N.token("bob"), server = srv.url, db = false,
      onsyncdone = function() synced = true end }
    local deadline = os.time() + 6
    while not synced do
      assert(os.time() <= deadline, "timed out waiting for onsyncdone")
      b:poll(10)
    end
    b = nil
    collectgarbage(); collectgarbage()
    assert.is_nil(b)
  end)

  it("a server that accepts but never answers the handshake: the connect times out and is retried", function()
    signal(srv, "STOP")
    local _, ra = N.open(srv, "alice", { nowait = true, requestTimeout = 300 })
    N.wait(function() return #ra.reconnects >= 2 end, 5, "retries while the server is stopped")
    assert.equals(0, #ra.connects)
    signal(srv, "CONT")
    N.wait(function() return ra.syncdone == 1 end, 10, "sync once the server answers")
  end)

  it("a second login of the same device kicks the first, which does not reconnect", function()
    local a1, r1 = N.open(srv, "alice", { deviceId = "phone" })
    local _, r2 = N.open(srv, "alice", { deviceId = "phone" })
    N.wait(function() return #r1.disconnects > 0 end, 5, "kicked")
    assert.equals(4001, r1.disconnects[1].code)
    assert.is_false(r1.disconnects[1].willReconnect)
    assert.equals(0, #r1.reconnects)
    assert.equals(1, r2.syncdone)
    local err = N.call(a1, "sendText", { scene = "p2p", to = "bob", text = "x" })
    assert.equals("Not_Connected", err.code)
  end)

  it("SIGKILL of the server mid-conversation: clients resync, nothing counted twice, nothing lost", function()
    local a, ra = N.open(srv, "alice")
    local a2 = N.open(srv, "alice")
    local b, rb = N.open(srv, "bob")
    local sent, failed = {}, {}
    for i = 1, 10 do sent[#sent + 1] = N.send(b, "alice", "m" .. i) end
    -- fire 10 more without waiting and kill the server in the middle of them
    local pending = 0
    for i = 11, 20 do
      pending = pending + 1
      b:sendText { scene = "p2p", to = "alice", text = "m" .. i, idClient = "kill-" .. i, done = function(err, m)
        pending = pending - 1
        if err then failed[#failed + 1] = i else sent[#sent + 1] = m end
      end }
      if i == 15 then b:poll(0); srv:kill() end
    end
    N.wait(function() return pending == 0 end, 10, "every send answered")
    srv = S.start { db = srv.db, port = srv.port, kdfIterations = 1000, maxSendRate = 1000000 }
    N.wait(function() return ra.syncdone >= 2 and rb.syncdone >= 2 end, 10, "resync")
    -- the failed ones are sent again with the same idClient: stored once on the server
    for _, i in ipairs(failed) do
      local err, m = N.call(b, "sendText", { scene = "p2p", to = "alice", text = "m" .. i, idClient = "kill-" .. i })
      assert.is_nil(err)
      sent[#sent + 1] = m
    end
    assert.equals(20, #sent)
    N.wait(function()
      local s = N.last_update(ra, "p2p-bob")
      return s and s.unread == 20
    end, 10, "alice sees 20 unread")
    local texts = {}
    for _, m in ipairs(N.msgs(a, "p2p-bob")) do texts[#texts + 1] = m.text end
    assert.equals(20, #texts)
    assert.same({}, N.verify(a).mismatches)
    assert.equals(20, N.session(a, "p2p-bob").unread)
    -- alice's other device too
    N.wait(function() return #N.msgs(a2, "p2p-bob") == 20 end, 10, "second device has 20")
    assert.equals(20, N.session(a2, "p2p-bob").unread)
    -- and a fresh device gets exactly 20 (offline or roaming, none twice)
    local _, r3 = N.open(srv, "alice")
    local got = {}
    for _, g in ipairs(r3.roaming) do for _, m in ipairs(g.msgs) do got[m.idServer] = (got[m.idServer] or 0) + 1 end end
    for _, g in ipairs(r3.offline) do for _, m in ipairs(g.msgs) do got[m.idServer] = (got[m.idServer] or 0) + 1 end end
    local n = 0
    for _, c in pairs(got) do n = n + 1; assert.equals(1, c) end
    assert.equals(20, n)
    assert.equals(20, r3.sessions[1][1].unread)
  end)
end)
