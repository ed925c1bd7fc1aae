-- getInstance{server = {"ws://a", "ws://b", ...}}: the SDK tries the servers
-- in turn, moving to the next one whenever an attempt fails or the link is
-- lost, and backs off only once the whole list failed.
local N = require "net_helpers"
local S = require "nim.server"
local NIM = require "nim"

-- A URL nothing listens on: a server started and stopped (its port free).
local function dead_url()
  local srv = N.start({})
  local url, port = srv.url, srv.port
  srv:cleanup()
  return url, port
end

describe("a list of servers #net #failover", function()
  after_each(function() N.close_all() end)

  it("connects through the next server when the first cannot be reached, and says so once", function()
    local dead = dead_url()
    local srv = N.start({"alice"})
    local nim, rec = N.open(srv, "alice", {server = {dead, srv.url}})
    assert.equal(1, rec.syncdone)
    assert.equal(srv.url, rec.connects[1].server)              -- onconnect names the server
    local refused = {}
    for _, e in ipairs(rec.errors) do if e.code == "Connect_Error" then refused[#refused + 1] = e end end
    assert.equal(1, #refused)
    assert.equal(dead .. ": ", refused[1].message:sub(1, #dead + 2))
    assert.matches("on the next server", refused[1].message)
    assert.equal(srv.url, rec.reconnects[1].server)            -- onwillreconnect names the next one
    assert.is_true(rec.reconnects[1].duration < 100, "no backoff before the next server of the list")
    N.close(nim)
    srv:cleanup()
  end)

  it("moves to the next server when its server dies, and nothing acknowledged is lost", function()
    -- A, then B on the same database (never both at once: one SQLite file)
    local a = N.start({"alice", "bob"})
    local _, port_b = dead_url()
    local url_b = "ws://127.0.0.1:" .. port_b
    local alice, rec = N.open(a, "alice", {server = {a.url, url_b}})
    assert.equal(a.url, rec.connects[1].server)
    local done
    alice:sendText{scene = "p2p", to = "bob", text = "through A", done = function(err, m) done = {err, m} end}
    N.wait(function() return done ~= nil end, 10, "the send through A")
    assert.is_nil(done[1])
    a:kill()                                                   -- SIGKILL: A is gone
    local b = S.start{db = a.db, port = port_b, kdfIterations = 1000, maxSendRate = 1000000}
    N.wait(function() return #rec.connects >= 2 and rec.syncdone >= 2 end, 20, "alice on B")
    assert.equal(url_b, rec.connects[2].server)
    -- bob, on B only, gets what alice sent through A, and alice gets his reply through B
    local bob, brec = N.open(b, "bob")
    local s = N.session(bob, "p2p-alice")
    assert.equal("through A", s and s.lastMsg.text)
    N.send(bob, "alice", "through B")
    N.wait(function() return #rec.msgs >= 1 end, 10, "bob's reply on B")
    assert.equal("through B", rec.msgs[1].text)
    assert.equal(0, #brec.errors)
    N.close(alice); N.close(bob)
    b:cleanup()
    a:cleanup()
  end)

  it("backs off only after every server of the list failed", function()
    local d1, d2 = dead_url(), dead_url()
    local nim, rec = N.open({url = d1}, "alice", {server = {d1, d2}, nowait = true,
                                                 reconnectDelay = 300, maxReconnectDelay = 300})
    N.wait(function() return #rec.reconnects >= 4 end, 10, "four attempts")
    local r = rec.reconnects
    -- d1 fails -> d2 at once; d2 fails -> the list is done: d1 after the backoff; ...
    assert.same({d2, d1, d2, d1}, {r[1].server, r[2].server, r[3].server, r[4].server})
    assert.is_true(r[1].duration < 100 and r[3].duration < 100, "the next server at once")
    assert.is_true(r[2].duration >= 200 and r[4].duration >= 200, "a backoff after a round")
    N.close(nim)
  end)

  it("stays on its server across the app's disconnect() and connect()", function()
    local dead = dead_url()
    local srv = N.start({"alice"})
    local nim, rec = N.open(srv, "alice", {server = {srv.url, dead}})
    assert.equal(srv.url, rec.connects[1].server)
    local nerr = #rec.errors
    nim:disconnect(function() end)
    nim:connect(function() end)               -- before the close is over: a reconnect follows it
    N.wait(function() return #rec.connects >= 2 and rec.syncdone >= 2 end, 20, "reconnected")
    assert.equal(srv.url, rec.connects[2].server)
    assert.equal(nerr, #rec.errors)            -- the dead one was never tried
    for _, r in ipairs(rec.reconnects) do assert.equal(srv.url, r.server) end
    N.close(nim)
    srv:cleanup()
  end)

  it("a 429 from one server holds only that server: the next one is tried at once", function()
    local a = N.start({"alice"})
    local b = N.start({"alice"})
    for i = 1, 6 do   -- six wrong tokens on A: alice is closed there for a while
      local _, r = N.open(a, "alice", {db = false, token = "wrong", nowait = true})
      N.wait(function() return #r.errors > 0 end, 10, "refused " .. i)
    end
    local nim, rec = N.open(a, "alice", {db = false, server = {a.url, b.url}, nowait = true,
                                        reconnectDelay = 10, maxReconnectDelay = 20})
    N.wait(function() return rec.syncdone > 0 end, 10, "alice synced through B")
    assert.equal(429, rec.errors[1].code)                     -- A said so
    assert.equal(b.url, rec.connects[1].server)
    assert.equal(b.url, rec.reconnects[1].server)
    assert.is_true(rec.reconnects[1].duration < 100, "B not held up by A's retryAfter: " .. rec.reconnects[1].duration)
    N.close(nim)
    a:cleanup(); b:cleanup()
  end)

  it("a store belongs to one server database: another one's login is refused with Other_Server", function()
    local a = N.start({"alice", "bob"})
    local dir = require("helpers").tmpdir()
    local nim, rec = N.open(a, "alice", {dataDir = dir})
    local bob = N.open(a, "bob", {db = false})
    N.send(bob, "alice", "from the first server")
    N.wait(function() return #rec.msgs == 1 end, 10, "the message")
    N.close(bob)
    -- the same port, another database: its message ids would meet these
    local port = a.port
    a:kill()
    local other = N.start({"alice"}, {port = port})
    -- (first the lost link: 1006, and maybe a Connect_Error while the port was free)
    local function find(list, pred) for _, x in ipairs(list) do if pred(x) then return x end end end
    local e, d
    N.wait(function()
      e = find(rec.errors, function(x) return x.code == "Other_Server" end)
      d = find(rec.disconnects, function(x) return x.code == 4002 end)
      return e ~= nil and d ~= nil
    end, 20, "the refusal")
    assert.equal("login", e.event)
    assert.matches("synced with another server", e.message)
    assert.is_false(d.willReconnect)
    assert.equal(d, rec.disconnects[#rec.disconnects])       -- and nothing after it
    N.close(nim)
    other:cleanup()
    -- its own database again (a restart, another node on it): welcome
    local again = S.start{db = a.db, port = port, kdfIterations = 1000, maxSendRate = 1000000}
    local nim2, rec2 = N.open(again, "alice", {dataDir = dir})
    assert.equal(1, rec2.syncdone)
    assert.equal(0, #rec2.errors)
    assert.equal("from the first server", N.session(nim2, "p2p-bob").lastMsg.text)
    N.close(nim2)
    again:cleanup()
    a:cleanup()
    require("helpers").rmdir(dir)
  end)

  it("checks the list", function()
    local function err(server, extra)
      local o = {account = "alice", token = "t", db = false, server = server}
      for k, v in pairs(extra or {}) do o[k] = v end
      local ok, e = pcall(NIM.getInstance, o)
      assert.is_false(ok)
      return e
    end
    assert.matches("bad argument 'server' %(a URL or a non%-empty list of URLs expected, got an empty table%)", err({}))
    assert.matches("bad argument 'server%[2%]' %('ws://host:port' or 'wss://host:port' expected, got number%)",
      err({"ws://127.0.0.1:1", 5}))
    assert.matches("bad argument 'server%[1%]' .-got 'http://x'", err({"http://x"}))
    local many = {}
    for i = 1, 17 do many[i] = "ws://127.0.0.1:" .. i end
    assert.matches("at most 16 servers, got 17", err(many))
    assert.matches("a list of URLs expected, got the key x", err({"ws://127.0.0.1:1", x = 1}))
    assert.matches("bad argument 'tlsCAFile' %(only for a wss:// server%)",
      err({"ws://127.0.0.1:1", "ws://127.0.0.1:2"}, {tlsCAFile = "/etc/ssl/certs/ca-certificates.crt"}))
  end)
end)
