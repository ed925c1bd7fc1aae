-- wss:// end to end, with certificates made at test time (nim.server's
-- throwaway CA): a login and a message over TLS; a certificate the client
-- cannot verify (another CA, the system CAs, another host name) refused
-- with onerror and retried; plain ws:// to the TLS port and wss:// to a
-- plain server refused.
local H = require "helpers"
local N = require "net_helpers"
local S = require "nim.server"
local NIM = require "nim"

describe("network TLS #net", function()
  local srv, dir
  setup(function()
    srv = S.start { accounts = { alice = N.token("alice"), bob = N.token("bob") }, tls = true, kdfIterations = 1000, maxSendRate = 1000000 }
    dir = H.tmpdir()
    assert(os.execute("mkdir -p " .. dir))
  end)
  teardown(function() N.close_all(); srv:cleanup(); H.rmdir(dir) end)

  it("logs in and sends over wss:// with the server's CA", function()
    assert.matches("^wss://127%.0%.0%.1:%d+$", srv.url)
    local a = N.open(srv, "alice", { db = false, tlsCAFile = srv.caFile })
    local b, rb = N.open(srv, "bob", { db = false, tlsCAFile = srv.caFile })
    local msg = N.send(a, "bob", "over TLS")
    N.wait(function() return #rb.msgs > 0 end, 10, "bob's onmsg")
    assert.equals("over TLS", rb.msgs[1].text)
    assert.equals(msg.idServer, rb.msgs[1].idServer)
    N.close(a); N.close(b)
  end)

  -- Waits until rec saw n TLS errors; none of the attempts may have logged in.
  local function refused(rec, n, pattern)
    N.wait(function() return #rec.errors >= n end, 10, "TLS errors")
    for i = 1, n do
      assert.equals("TLS_Error", rec.errors[i].code)
      assert.equals("connect", rec.errors[i].event)
      assert.matches(pattern, rec.errors[i].message)
    end
    assert.equals(0, #rec.connects)
  end

  it("refuses a certificate from another CA, and retries with backoff", function()
    local other = dir .. "/other"
    assert(os.execute("mkdir -p " .. other))
    local ca = S.make_tls(other)
    local _, rec = N.open(srv, "alice", { db = false, tlsCAFile = ca, nowait = true })
    refused(rec, 2, "TLS handshake with 127%.0%.0%.1:%d+ failed: unable to get local issuer certificate")
    assert.is_true(#rec.reconnects >= 1)
  end)

  it("refuses the throwaway certificate against the system CAs", function()
    local _, rec = N.open(srv, "alice", { db = false, nowait = true })
    refused(rec, 1, "failed: unable to get local issuer certificate")
  end)

  it("refuses a certificate for another host name", function()
    local odir = dir .. "/named"
    assert(os.execute("mkdir -p " .. odir))
    local ca, cert, key = S.make_tls(odir, { "chat.example" })
    local named = S.start { accounts = { alice = N.token("alice") }, tls = { cert = cert, key = key }, kdfIterations = 1000, maxSendRate = 1000000 }
    local _, rec = N.open(named, "alice", { db = false, tlsCAFile = ca, nowait = true })
    refused(rec, 1, "failed: .*mismatch")
    N.close_all()
    named:cleanup()
  end)

  it("refuses plain ws:// on the TLS port, and wss:// to a plain server", function()
    local _, rec = N.open(srv, "alice", { db = false, server = srv.url:gsub("^wss", "ws"), nowait = true })
    N.wait(function() return #rec.reconnects >= 2 end, 10, "reconnect attempts")
    assert.equals(0, #rec.connects)
    local plain = N.start { "alice" }
    local _, rec2 = N.open(plain, "alice", { db = false, server = plain.url:gsub("^ws", "wss"),
                                             tlsCAFile = srv.caFile, nowait = true })
    refused(rec2, 1, "failed: not a TLS server")
    N.close_all()
    plain:cleanup()
  end)

  it("nim-server refuses TLS options it cannot use, saying why", function()
    local ok, err = pcall(S.start, { args = { "--tls-cert", srv.tls.cert } })
    assert.is_false(ok)
    assert.matches("%-%-tls%-cert and %-%-tls%-key go together", err)
    ok, err = pcall(S.start, { tls = { cert = dir .. "/none.pem", key = srv.tls.key } })
    assert.is_false(ok)
    assert.matches("cannot read .*none.pem", err)
    ok, err = pcall(S.start, { tls = { cert = srv.tls.cert, key = srv.caFile } })   -- not its key
    assert.is_false(ok)
    assert.matches("TLS certificate and key", err)
  end)

  it("checks tlsCAFile at getInstance", function()
    assert.error_matches(function()
      NIM.getInstance { account = "a", token = "t", server = "ws://127.0.0.1:1", tlsCAFile = srv.caFile }
    end, "bad argument 'tlsCAFile' %(only for a wss:// server%)")
    assert.error_matches(function()
      NIM.getInstance { account = "a", token = "t", server = "wss://127.0.0.1:1", tlsCAFile = dir .. "/none.pem" }
    end, "bad argument 'tlsCAFile' %(cannot read .*none.pem")
    local junk = dir .. "/junk.pem"
    local f = assert(io.open(junk, "w")); f:write("not a certificate\n"); f:close()
    assert.error_matches(function()
      NIM.getInstance { account = "a", token = "t", server = "wss://127.0.0.1:1", tlsCAFile = junk }
    end, "bad argument 'tlsCAFile' %(no PEM certificate")
  end)
end)
