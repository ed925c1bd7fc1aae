-- examples/embed/flood.lua: a second client that floods an account with
-- messages at a steady rate (for the embed example and its test).
--   lua5.4 examples/embed/flood.lua URL ACCOUNT TOKEN TO COUNT RATE [READYFILE]
-- Waits for READYFILE to exist (the receiver is synced), then sends COUNT
-- texts to TO at RATE messages per second, pipelined, and exits when all are
-- acknowledged.
local uv = require "luv"
local NIM = require "nim"
local url, account, token, to, count, rate, ready = (table.unpack or unpack)(arg)
count, rate = tonumber(count), tonumber(rate)

if ready then
  local deadline = uv.hrtime() + 10e9
  while not io.open(ready) do
    assert(uv.hrtime() < deadline, "flood: the receiver never became ready")
    uv.sleep(10)
  end
end

NIM.run(function()
  local nim = NIM.getInstance{account = account, token = token, server = url, db = false}
  assert(nim:waitSync() == nil, "flood: login failed")
  local sent, acked, failed = 0, 0, 0
  local t0 = uv.hrtime()
  while acked + failed < count do
    local due = math.min(count, math.floor((uv.hrtime() - t0) / 1e9 * rate) + 1)
    while sent < due do
      sent = sent + 1
      nim:sendText{scene = "p2p", to = to, text = "flood " .. sent, done = function(err)
        if err then failed = failed + 1 else acked = acked + 1 end
      end}
    end
    nim:poll(1)
  end
  local secs = (uv.hrtime() - t0) / 1e9
  print(("flood: %d sent in %.2f s (%.0f/s), %d failed"):format(acked, secs, acked / secs, failed))
  nim:destroy()
end)
