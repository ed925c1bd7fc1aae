-- examples/embed/game.lua: the gameplay script the C host (host.c) runs at
-- 60 Hz. The SDK costs one nim:poll(0) per frame.
--   env NIM_URL, NIM_ACCOUNT, NIM_TOKEN   the server and the player's account
--   env NIM_EXPECT    stop once this many messages arrived (default: run all frames)
--   env NIM_READY     a file to create once the session list is synced
--   env NIM_BUDGET    poll's dispatch budget per frame in ms (default: the SDK's 0.5)
local NIM = require "nim"

local expect = tonumber(os.getenv("NIM_EXPECT") or "")
local budget = tonumber(os.getenv("NIM_BUDGET") or "")
local received, updates, unread = 0, 0, 0
local sessions = {}

nim = NIM.getInstance{
  account = assert(os.getenv("NIM_ACCOUNT"), "NIM_ACCOUNT"),
  token = os.getenv("NIM_TOKEN"),
  server = assert(os.getenv("NIM_URL"), "NIM_URL"),
  db = false,
  onsyncdone = function()
    local ready = os.getenv("NIM_READY")
    if ready then assert(io.open(ready, "w")):close() end
  end,
  onmsg = function() received = received + 1 end,
  -- what a game's UI does: keep the list and the total badge
  onupdatesession = function(s)
    updates = updates + 1
    sessions = nim:mergeSessions(sessions, s)
    unread = 0
    for _, x in ipairs(sessions) do unread = unread + (x.unread or 0) end
  end,
}

function update(frame)
  nim:poll(0, budget)
  if expect and received >= expect then return false end
end

function finish(frames)
  print(("received %d messages in %d frames, %d session updates, %d unread"):format(
    received, frames, updates, unread))
  nim:destroy()
end
