-- nim: recent sessions (最近会话) for Lua 5.4, shaped like the NIM Web SDK.
-- The C module nim.core does the work; lua/nim holds the JS-shaped API
-- (docs/architecture.md has the file map).
local core = require "nim.core"
local instance = require "nim.instance"

return {
  version = core.version,
  -- Pure functions on session lists (also available as instance methods).
  mergeSessions = core.mergeSessions,
  cutSessions = core.cutSessions,
  cutSessionsByIds = core.cutSessionsByIds,
  findSession = core.findSession,
  -- Instances: NIM.getInstance{account=, ...}; every method is installed
  -- by nim.instance (the network ones are rows of nim.net).
  getInstance = instance.getInstance,
  -- Coroutine style: NIM.run(fn) runs fn in a coroutine and drives poll;
  -- NIM.wait(cond[, timeout_ms]) waits for cond() while callbacks run.
  run = instance.run,
  wait = instance.wait,
}
