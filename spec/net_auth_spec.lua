-- Throttling: after too many wrong tokens the server answers a login 429
-- with retryAfter; the SDK reports it and waits that long, once, before it
-- logs in again (no retry storm), and another account is not affected. A
-- sender over the send rate gets 429 for what was not stored, and every
-- message answered without an error reaches the peer.
local N = require "net_helpers"
local uv = require "luv"
local rec_errors

describe("network login throttling #net", function()
  local srv
  setup(function() srv = N.start { "alice", "bob" } end)
  teardown(function() N.close_all(); srv:cleanup() end)

  it("reports 429 and waits retryAfter before logging in again", function()
    for i = 1, 6 do   -- six wrong tokens: alice is closed for a while
      local _, rec = N.open(srv, "alice", { db = false, token = "wrong", nowait = true })
      N.wait(function() return #rec.errors > 0 end, 10, "refused " .. i)
      assert.equals(302, rec.errors[1].code)
    end
    local t_err, t_conn
    rec_errors = {}
    local _, rec = N.open(srv, "alice", { db = false, nowait = true, reconnectDelay = 10, maxReconnectDelay = 20,
      onerror = function(e) t_err = t_err or uv.hrtime() / 1e6; rec_errors[#rec_errors + 1] = e end,
      onconnect = function() t_conn = uv.hrtime() / 1e6 end })
    local b = N.open(srv, "bob", { db = false })       -- another account logs in meanwhile
    assert.is_truthy(b)
    N.wait(function() return t_conn ~= nil end, 10, "alice's login after the wait")
    assert.equals(429, rec_errors[1].code)
    assert.equals("login", rec_errors[1].event)
    assert.matches("try again in", rec_errors[1].message)
    assert.equals(1, #rec_errors)                      -- one refusal: it waited, it did not storm
    assert.is_true(t_conn - t_err >= 500, ("waited only %.0f ms"):format(t_conn - t_err))
    assert.is_true(#rec.reconnects <= 2)
  end)

  it("a sender over the rate gets 429 for the rest, and loses nothing it was told was sent", function()
    local slow = N.start({ "carol", "dave" }, { maxSendRate = 5 })   -- bursts of 10
    local c = N.open(slow, "carol", { db = false })
    local d, rd = N.open(slow, "dave", { db = false })
    local sent, limited, answered = {}, 0, 0
    for i = 1, 20 do
      c:sendText { scene = "p2p", to = "dave", text = "r" .. i, done = function(err, msg)
        answered = answered + 1
        if err then
          assert.equals(429, err.code)
          assert.matches("sending too fast", err.message)
          limited = limited + 1
        else
          sent[msg.text] = true
        end
      end }
    end
    N.wait(function() return answered == 20 end, 10, "every send answered")
    local n = 0
    for _ in pairs(sent) do n = n + 1 end
    assert.is_true(n >= 10 and limited >= 5, ("sent %d, limited %d"):format(n, limited))
    N.wait(function() return #rd.msgs >= n end, 10, "dave has every one sent")
    for _, m in ipairs(rd.msgs) do assert.is_true(sent[m.text], m.text .. " was not reported sent") end
    assert.equals(n, #rd.msgs)
    N.close(c); N.close(d)
    slow:cleanup()
  end)
end)
