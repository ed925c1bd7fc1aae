-- nim: recent sessions (最近会话) for Lua 5.4, shaped like the NIM Web SDK.
-- The C module nim.core does the work; this file holds the JS-shaped API.
local core = require "nim.core"

local NIM = {
  version = core.version,
  -- Pure functions on session lists (also available as instance methods).
  mergeSessions = core.mergeSessions,
  cutSessions = core.cutSessions,
  cutSessionsByIds = core.cutSessionsByIds,
  findSession = core.findSession,
}

-- Instances: NIM.getInstance{account=, ...} (lua/nim/instance.lua).
NIM.getInstance = require("nim.instance").getInstance
-- Coroutine style: NIM.run(fn) runs fn in a coroutine and drives poll.
NIM.run = require("nim.instance").run
-- NIM.wait(cond[, timeout_ms]): waits for cond() while callbacks run.
NIM.wait = require("nim.instance").wait
-- Network methods (sendText, deleteSession, sticky top, ...): lua/nim/net.lua.
require "nim.net"

return NIM
