-- The SDK against the real nim-server: login, sync, offline and roaming
-- messages, live messages and sending (REFERENCE.md "How the session list
-- is made", "Messages").
local N = require "net_helpers"

describe("network #net", function()
  local srv
  setup(function() srv = N.start { "alice", "bob", "carol" } end)
  teardown(function() N.close_all(); srv:cleanup() end)
  after_each(function() N.close_all() end)

  describe("login", function()
    it("connects, syncs and reports in order; nothing to report gives no onsessions", function()
      local nim, rec = N.open(srv, "carol")
      assert.equals(1, #rec.connects)
      assert.equals("carol", rec.connects[1].account)
      assert.is_string(rec.connects[1].deviceId)
      assert.is_true(rec.connects[1].serverTime > 0)
      assert.same({ "connect", "syncdone" }, rec.order)
      assert.equals(0, #rec.sessions)
      N.close(nim)
    end)

    it("rejects a bad server option at once", function()
      local NIM = require "nim"
      assert.error_matches(function() NIM.getInstance { account = "a", server = "http://x", token = "t" } end,
        "getInstance: bad argument 'server'")
      assert.error_matches(function() NIM.getInstance { account = "a", server = srv.url } end,
        "getInstance: bad argument 'token'")
    end)

    it("without a server, network methods fail with Not_Connected", function()
      local NIM = require "nim"
      local nim = NIM.getInstance { account = "solo", db = false }
      N.live[nim] = {}
      local err = N.call(nim, "sendText", { scene = "p2p", to = "bob", text = "x" })
      assert.equals("Not_Connected", err.code)
      err = N.call(nim, "deleteSession", { scene = "p2p", to = "bob" })
      assert.equals("Not_Connected", err.code)
      N.close(nim)
    end)
  end)

  describe("messages", function()
    it("offline messages arrive at login, then are roaming on my other devices", function()
      local bob = N.open(srv, "bob")
      local sent = {}
      for i = 1, 3 do sent[i] = N.send(bob, "alice", "hi " .. i) end
      local a1, r1 = N.open(srv, "alice")
      -- order: connect, offline, sessions, syncdone
      assert.same({ "connect", "offline", "sessions", "syncdone" }, r1.order)
      assert.equals(1, #r1.offline)
      local g = r1.offline[1]
      assert.equals("p2p-bob", g.sessionId)
      assert.equals(3, #g.msgs)
      assert.equals("hi 1", g.msgs[1].text)
      assert.equals("in", g.msgs[1].flow)
      local s = r1.sessions[1][1]
      assert.equals("p2p-bob", s.id)
      assert.equals(3, s.unread)
      assert.equals(sent[3].idServer, s.lastMsg.idServer)
      assert.equals(sent[3].time, s.updateTime)
      -- marked received once stored: a second device gets them as roaming
      local _, r2 = N.open(srv, "alice")
      assert.equals(0, #r2.offline)
      assert.equals(1, #r2.roaming)
      assert.equals(3, #r2.roaming[1].msgs)
      assert.equals(3, r2.sessions[1][1].unread)   -- its own pointer (syncSessionUnread off)
      -- and bob's own sent messages come back to bob's fresh device, flow out
      local _, rb = N.open(srv, "bob")
      local sb = rb.sessions[1][1]
      assert.equals("p2p-alice", sb.id)
      assert.equals(0, sb.unread)
      assert.equals("out", sb.lastMsg.flow)
      N.close(a1)
    end)

    it("a restart with the same database brings nothing twice", function()
      local path = os.tmpname() .. ".db"
      local nim, rec = N.open(srv, "alice", { db = path })
      local n0 = #N.msgs(nim, "p2p-bob")
      local u0 = rec.sessions[1][1].unread
      N.close(nim)
      local again, rec2 = N.open(srv, "alice", { db = path })
      assert.equals(0, #rec2.roaming)
      assert.equals(0, #rec2.offline)
      assert.equals(n0, #N.msgs(again, "p2p-bob"))
      -- the first sync of an instance lists every stored session, unchanged
      assert.equals("p2p-bob", rec2.sessions[1][1].id)
      assert.equals(u0, rec2.sessions[1][1].unread)
      N.close(again)
      for _, f in ipairs { path, path .. "-wal", path .. "-shm" } do os.remove(f) end
    end)

    it("live: onmsg and onupdatesession for the peer, sending then success for me, flow out on my other device", function()
      local a1, ra1 = N.open(srv, "alice")
      local a2, ra2 = N.open(srv, "alice")
      local b, rb = N.open(srv, "bob")
      local before = N.session(b, "p2p-alice")
      local base = before and before.unread or 0
      local mine = N.session(a2, "p2p-bob")
      local mine_unread = mine and mine.unread or 0
      local err, msg = N.call(a1, "sendText", { scene = "p2p", to = "bob", text = "live" })
      assert.is_nil(err)
      assert.equals("success", msg.status)
      assert.equals("out", msg.flow)
      assert.equals("bob", msg.target)
      assert.equals("p2p-bob", msg.sessionId)
      assert.matches("^%d+$", msg.idServer)
      -- the sender's session showed "sending" first, then the server's message
      local statuses = {}
      for _, s in ipairs(ra1.updates) do
        if s.id == "p2p-bob" and s.lastMsg and s.lastMsg.text == "live" then statuses[#statuses + 1] = s.lastMsg.status end
      end
      -- (the two states may be coalesced into one poll: then only the last shows)
      assert.equals("success", statuses[#statuses])
      if #statuses > 1 then assert.equals("sending", statuses[1]) end
      local last = N.wait_update(ra1, "p2p-bob", function(s) return s.lastMsg.idServer == msg.idServer end)
      assert.equals("success", last.lastMsg.status)
      -- the peer
      N.wait(function() return #rb.msgs > 0 end, 5, "bob onmsg")
      assert.equals("live", rb.msgs[#rb.msgs].text)
      assert.equals("in", rb.msgs[#rb.msgs].flow)
      local sb = N.wait_update(rb, "p2p-alice", function(s) return s.lastMsg.idServer == msg.idServer end)
      assert.equals(base + 1, sb.unread)
      assert.equals(msg.time, sb.updateTime)
      -- my other device
      local s2 = N.wait_update(ra2, "p2p-bob", function(s) return s.lastMsg.idServer == msg.idServer end)
      assert.equals("out", s2.lastMsg.flow)
      assert.equals(mine_unread, s2.unread)   -- my own message never counts
      -- stored once everywhere
      local n = 0
      for _, m in ipairs(N.msgs(b, "p2p-alice")) do if m.idServer == msg.idServer then n = n + 1 end end
      assert.equals(1, n)
      assert.same({}, N.verify(b).mismatches)
    end)

    it("sendCustomMsg carries content; errors from the server reach done", function()
      local a = N.open(srv, "alice")
      local b, rb = N.open(srv, "bob")
      local err, msg = N.call(a, "sendCustomMsg", { scene = "p2p", to = "bob", content = '{"k":1}' })
      assert.is_nil(err)
      assert.equals("custom", msg.type)
      assert.equals('{"k":1}', msg.content)
      N.wait(function() return #rb.msgs > 0 and rb.msgs[#rb.msgs].type == "custom" end, 5, "custom msg")
      assert.equals('{"k":1}', rb.msgs[#rb.msgs].content)
      err = N.call(a, "sendText", { scene = "p2p", to = "nobody", text = "x" })
      assert.equals(404, err.code)
      assert.matches("no such account", tostring(err))
      N.close(b)
    end)

    it("checks arguments", function()
      local a = N.open(srv, "alice")
      assert.error_matches(function() a:sendText { scene = "superTeam", to = "1", text = "x" } end,
        "sendText: bad argument 'scene'")
      assert.error_matches(function() a:sendText { scene = "p2p", to = "bob" } end, "bad argument 'text'")
      assert.error_matches(function() a:sendMsgReceipt { msg = { scene = "p2p" } } end, "msg.idServer")
      assert.error_matches(function() a:deleteSessions { sessions = {} } end, "bad argument 'sessions'")
      -- within the length limit, but over the frame limit once escaped
      local err = N.call(a, "sendCustomMsg", { scene = "p2p", to = "bob", content = ("\1"):rep(32768) })
      assert.equals("Bad_Arguments", err.code)
      assert.matches("65536", err.message)
    end)

    it("a resend with the same idClient is stored once", function()
      local a = N.open(srv, "alice")
      local b, rb = N.open(srv, "bob")
      local e1, m1 = N.call(a, "sendText", { scene = "p2p", to = "bob", text = "once", idClient = "fixed-1" })
      local e2, m2 = N.call(a, "sendText", { scene = "p2p", to = "bob", text = "once", idClient = "fixed-1" })
      assert.is_nil(e1); assert.is_nil(e2)
      assert.equals(m1.idServer, m2.idServer)
      N.wait(function() return #rb.msgs > 0 end, 5, "bob onmsg")
      local n = 0
      for _, m in ipairs(N.msgs(b, "p2p-alice")) do if m.idClient == "fixed-1" then n = n + 1 end end
      assert.equals(1, n)
    end)
  end)
end)
