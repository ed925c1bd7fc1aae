-- examples/embed: the C host (a 60 Hz game loop embedding Lua 5.4) logged in
-- as one account while a second client floods it; every message arrives, the
-- game's session list counts them all as unread, and the host reports the
-- frame budget the SDK used (measured in make bench, only reported here).
local H = require "helpers"
describe("examples/embed: a game loop under a message flood #embed #net", function()
  it("receives every message at 3,000/s and reports the SDK's frame budget", function()
    local p = assert(io.popen("timeout 120 " .. H.LUA .. " examples/embed/run.lua 3000 3000 2>&1; echo \"exit=$?\""))
    local out = p:read("*a")
    p:close()
    assert.matches("exit=0", out, 1, true)
    assert.matches("flood: 3000 sent in [%d.]+ s %(%d+/s%), 0 failed", out)
    assert.matches("received 3000 messages in %d+ frames, %d+ session updates, 3000 unread", out)
    local max, p99 = out:match("sdk frame budget used: max ([%d.]+) ms, p99 ([%d.]+) ms")
    assert.is_truthy(max, out)
    assert.is_true(tonumber(p99) <= tonumber(max))
    print(("\n  embed host: frame budget max %s ms, p99 %s ms of 16.667 ms"):format(max, p99))
  end)

  it("fails loudly when the host cannot log in", function()
    local p = assert(io.popen("NIM_URL=ws://127.0.0.1:1 NIM_ACCOUNT=x NIM_EXPECT=1 timeout 30 "
      .. (os.getenv("NIM_EMBED_HOST") or "./build/embed-host") .. " examples/embed/nope.lua 5 2>&1; echo \"exit=$?\""))
    local out = p:read("*a")
    p:close()
    assert.matches("exit=1", out, 1, true)
    assert.matches("embed%-host: cannot open examples/embed/nope%.lua", out)
  end)
end)
