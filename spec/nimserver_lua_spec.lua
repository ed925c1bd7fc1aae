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

  -- stop/kill go through the server's shell, which stays our child until
  -- stop reaps it: a server that exited by itself is never signalled (its
  -- pid may belong to another process by then), and kill prints nothing.
  it("stop after the server exited by itself signals nothing and reports its status; kill is quiet", function()
    local H = require "helpers"
    local srv = S.start{}
    assert(os.execute("kill -TERM " .. srv.pid))               -- it exits cleanly, by itself
    local stopped = srv:stop()
    assert.is_true(stopped)                                    -- exit status 0, read from the shell
    srv:cleanup()
    local code = 'local S = require "nim.server"; local s = S.start{}; s:kill(); s:cleanup(); io.write("done")'
    local p = assert(io.popen(H.LUA .. " -e " .. H.shell_quote(code) .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    assert.equal("done", out)                                  -- no "Killed" from a shell
  end)

  it("refuses a token with a line break (adduser reads one line) and leaves no temporary file", function()
    local before = io.popen("ls /tmp | wc -l"):read("*a")
    local ok, e = pcall(function() S.start{accounts = {alice = "line1\nline2"}} end)
    assert.is_false(ok)
    assert.matches("nimserver_lua_spec.lua:%d+: nim.server: adduser alice: a token cannot hold a line break", e)
    assert.equal(before, io.popen("ls /tmp | wc -l"):read("*a"))
  end)

  it("finds a checkout's build/nim-server from a relative path, whatever $PWD says", function()
    local H = require "helpers"
    -- a checkout's layout (whatever BUILD this run uses): lua/nim and build/nim-server
    local dir = H.tmpdir()
    assert(os.execute(("mkdir -p %s/lua %s/build && cp -r lua/nim %s/lua/ && touch %s/build/nim-server")
      :format(dir, dir, dir, dir)))
    local cmd = ("cd / && env -C %s PWD=/ NIM_SERVER= PATH=/usr/bin:/bin LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' %s -e %s 2>&1")
      :format(H.shell_quote(dir), H.LUA, H.shell_quote("io.write(select(2, pcall(require('nim.server').find_binary)))"))
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    H.rmdir(dir)
    assert.equal("./build/nim-server", out)
  end)
end)
