-- nim.coroutine: the coroutine style. A request made without `done` from
-- inside a coroutine yields until it completes and returns `err, obj`. A
-- coroutine run by NIM.run is resumed by NIM.run's own loop, between two
-- polls, so its code never runs inside a callback and may call nim:poll
-- itself; any other coroutine is resumed from inside `nim:poll`, like any
-- callback. resetCurrSession has no `done` and never yields.
local core = require "nim.core"
local check = require "nim.check"
check.internal()

local M = {}

local type, error, tostring = type, error, tostring
local co_running, co_yield, co_resume = coroutine.running, coroutine.yield, coroutine.resume
local co_isyieldable, co_status = coroutine.isyieldable, coroutine.status
local callable, argerror = check.callable, check.argerror
local raw_request = core.Instance._request
local now = core.now

local instances = setmetatable({}, { __mode = "k" }) -- every instance made: NIM.run/wait poll them
local runs = setmetatable({}, { __mode = "k" })      -- coroutine -> NIM.run record
local syncs = setmetatable({}, { __mode = "k" })     -- instance -> waitSync state
local ready = {}                                     -- NIM.run coroutines to resume: {co, ...}
local WAIT = {}                                      -- yielded by NIM.wait: "resume me next round"
local rounds = {}                                    -- NIM.run coroutines waiting in NIM.wait
-- Error objects made in Lua share the binding's metatable (nim.Error).
local ERR_MT = debug.getregistry()["nim.Error"]

function M.in_coroutine()
  local _, main = co_running()
  return not main and co_isyieldable()
end

-- Resumes a coroutine run by NIM.run and records how it ended.
local function step(co, ...)
  local run = runs[co]
  local r = table.pack(co_resume(co, ...))
  if not r[1] then run.err = debug.traceback(co, tostring(r[2]))
  elseif co_status(co) == "dead" then run.results = r
  elseif r[2] == WAIT then rounds[#rounds + 1] = co end
end

-- Hands co the results of its request: NIM.run's coroutines are queued for
-- its loop; any other is resumed here and raises its error here, where it
-- reaches onerror like an error in any callback.
local function resume(co, ...)
  if runs[co] then
    ready[#ready + 1] = table.pack(co, ...)
    return
  end
  local r = table.pack(co_resume(co, ...))
  if not r[1] then error(debug.traceback(co, tostring(r[2])), 0) end
end

-- Queues command cmd (net/cmdtable.c) for nim; F names the API function.
-- Without done, inside a coroutine: yields until the reply, returns err, obj.
function M.request(nim, cmd, args, done, F)
  if done == nil and F ~= "resetCurrSession" and M.in_coroutine() then
    local co = co_running()
    raw_request(nim, cmd, args, function(err, obj) resume(co, err, obj) end, F)
    return co_yield()
  end
  return raw_request(nim, cmd, args, done, F)
end

-- The instances with callbacks still to come: open ones, and destroyed ones
-- whose last callbacks (destroy's done) are still being delivered.
local function live_instances()
  local live = {}
  for nim in pairs(instances) do
    if nim:_state() ~= "destroyed" or nim:poll(0) > 0 then live[#live + 1] = nim end
  end
  return live
end

-- NIM.run(fn, ...): runs fn(...) in a coroutine and drives every instance's
-- poll until it finishes; returns fn's results or raises its error (with the
-- coroutine's traceback).
function M.run(fn, ...)
  if not callable(fn) then error("run: bad argument 'fn' (callable expected, got " .. type(fn) .. ")", 2) end
  local co = coroutine.create(fn)
  local run = {}
  runs[co] = run
  step(co, ...)
  while not run.results and not run.err do
    local live = live_instances()
    if #live == 0 and #ready == 0 and #rounds == 0 then
      error("run: the coroutine is waiting for a request but no nim instance is alive", 2)
    end
    local wait = #ready > 0 and 0 or #rounds > 0 and 10 or #live == 1 and 50 or 5
    for _, nim in ipairs(live) do nim:poll(wait) end
    for _, c in ipairs(rounds) do ready[#ready + 1] = { c, n = 1 } end
    rounds = {}
    while #ready > 0 do                          -- resume outside any callback
      local batch = ready
      ready = {}
      for _, r in ipairs(batch) do step(table.unpack(r, 1, r.n)) end
    end
  end
  if run.err then error(run.err, 2) end
  return table.unpack(run.results, 2, run.results.n)
end

-- NIM.wait(cond [, timeout_ms]): waits until cond() returns true while every
-- instance's callbacks run; returns true, or false after timeout_ms (default:
-- no limit). Inside NIM.run it yields to NIM.run's loop between two looks at
-- cond; elsewhere it polls every live instance itself. Not from a callback.
function M.wait(cond, timeout)
  if not callable(cond) then argerror("wait", "cond", "callable expected, got " .. type(cond)) end
  if timeout ~= nil and (math.type(timeout) ~= "integer" or timeout < 0) then
    argerror("wait", "timeout_ms", "non-negative integer expected, got " .. tostring(timeout))
  end
  local deadline = timeout and now() + timeout
  local co = co_running()
  local in_run = runs[co] ~= nil
  while not cond() do
    if deadline and now() >= deadline then return false end
    if in_run then
      co_yield(WAIT)
    else
      local live = live_instances()
      if #live == 0 then error("wait: the condition is false and no nim instance is alive", 2) end
      for _, nim in ipairs(live) do nim:poll(#live == 1 and 10 or 2) end
    end
  end
  return true
end

-- The callbacks of a new instance, wrapped so that nim:waitSync learns of
-- the sync and of a login that gave up (the app's callbacks run first).
-- Returns the sync state to hand to M.track.
function M.watch_sync(callbacks)
  local sync = { done = false, failed = nil, waiting = {} }
  local app_syncdone, app_disconnect = callbacks.onsyncdone, callbacks.ondisconnect
  local function wake(err)
    local waiting = sync.waiting
    sync.waiting = {}
    for _, co in ipairs(waiting) do resume(co, err) end
  end
  callbacks.onsyncdone = function(...)
    sync.done = true
    if app_syncdone then app_syncdone(...) end
    wake(nil)
  end
  callbacks.ondisconnect = function(d, ...)
    if app_disconnect then app_disconnect(d, ...) end
    if type(d) == "table" and d.willReconnect == false and not sync.done then
      sync.failed = setmetatable({ code = d.code, message = d.reason, event = "login" }, ERR_MT)
      wake(sync.failed)
    end
  end
  return sync
end

-- A new instance: NIM.run and NIM.wait poll it; waitSync reads sync.
function M.track(nim, sync)
  instances[nim] = true
  syncs[nim] = sync
end

-- nim:waitSync(): inside a coroutine, waits until the login sync is done
-- (onsyncdone) and returns nil, or returns the error of a login that gave up
-- (wrong token, ...). At once when the sync is already done. Local-only
-- instances sync at once after getInstance.
function M.wait_sync(nim)
  local sync = syncs[nim]
  if sync.done then return nil end
  if sync.failed then return sync.failed end
  if not M.in_coroutine() then
    error("waitSync: call it inside a coroutine (NIM.run), or use onsyncdone", 3)
  end
  local waiting = sync.waiting
  waiting[#waiting + 1] = co_running()
  return co_yield()
end

return M
