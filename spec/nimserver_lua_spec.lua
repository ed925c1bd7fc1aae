-- nim.server: starting and stopping the reference server from Lua.
local S = require "nim.server"

describe("nim.server #server", function()
  it("starts on a free loopback port, registers accounts, stops cleanly", function()
    local srv = S.start{accounts = {alice = "secret"}}
    assert.matches("^ws://127%.0%.0%.1:%d+$", srv.url)
    assert.is_true(srv.port > 0)
    -- the port is really listening: a second server cannot take it
    local ok, e = pcall(S.start, {db = srv.db, port = srv.port})
    assert.is_false(ok)
    assert.matches("did not start", e)
    assert.is_true(srv:stop())
    -- the same database and port serve again after a stop or a crash
    local again = S.start{db = srv.db, port = srv.port}
    assert.equal(srv.url, again.url)
    again:kill()
    local third = S.start{db = srv.db, port = srv.port}
    assert.is_true(third:stop())
    srv:cleanup()
  end)

  it("reports a server that cannot start with its reason", function()
    local ok, e = pcall(S.start, {bin = "/nonexistent/nim-server"})
    assert.is_false(ok)
    assert.matches("did not start.*not found", e)
  end)

  it("registers accounts on a running server, and re-registering sets a new token", function()
    local srv = S.start{accounts = {bob = "x"}}
    srv:adduser("bob", "y")          -- nim-server's adduser replaces the token
    srv:adduser("carol", "z")
    assert.has_error(function() srv:adduser("", "z") end)
    srv:cleanup()
  end)
end)
