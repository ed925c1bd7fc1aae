-- nim.coroutine: the coroutine style. A request made without `done` from
-- inside a coroutine run by NIM.run yields until it completes and returns
-- `err, obj`; the coroutine is resumed by NIM.run's own loop, between two
-- polls, so its code never runs inside a callback and may call nim:poll
-- itself. In any other coroutine (another scheduler's, such as cqueues',
-- or one resumed by hand) a request without `done` raises: yielding there
-- would hand the yield to a scheduler that does not expect it. On the main
-- thread a query without `done` raises (its result could go nowhere); a
-- command without `done` is sent and its failure goes to onerror.
-- resetCurrSession has no `done` and never yields.
local core = require "nim.core"
local check = require "nim.check"
check.internal()

local M = {}

local type, error, tostring = type, error, tostring
local compat = require "nim.compat"
local co_running, co_yield, co_resume = compat.running, coroutine.yield, coroutine.resume
local co_status = coroutine.status
local pack, unpack, math_type, tointeger = compat.pack, compat.unpack, compat.math_type, compat.tointeger
local callable, argerror, fail = check.callable, check.argerror, check.fail
local raw_request = core.Instance._request
local now = core.now

local instances = setmetatable({}, { __mode = "k" }) -- every instance made: NIM.run/wait poll them
local runs = setmetatable({}, { __mode = "k" })      -- coroutine -> NIM.run record
local syncs = setmetatable({}, { __mode = "k" })     -- instance -> waitSync state
local ready = {}                                     -- NIM.run coroutines to resume: {co, token, ...}
local WAIT = {}                                      -- yielded by NIM.wait: "resume me next round"
local real_isyieldable = coroutine.isyieldable       -- 5.3+, LuaJIT (5.1: nil)
local rounds = {}                                    -- NIM.run coroutines waiting in NIM.wait
-- Error objects made in Lua share the binding's metatable (nim.Error).
local ERR_MT = debug.getregistry()["nim.Error"]

-- The NIM.run coroutine running now, or nil.
local function current_run()
  local co = co_running()
  if co ~= nil and runs[co] then return co end
  return nil
end

-- A timeout's error object (the binding's Error_Timeout code).
local function timeout_error(message)
  return setmetatable({ code = "Error_Timeout", message = message }, ERR_MT)
end

-- Resumes a coroutine run by NIM.run and records how it ended.
local function step(co, ...)
  local run = runs[co]
  local r = pack(co_resume(co, ...))
  if not r[1] then run.err = debug.traceback(co, tostring(r[2]))
  elseif co_status(co) == "dead" then run.results = r
  elseif r[2] == WAIT then rounds[#rounds + 1] = co end
end

-- Hands a NIM.run coroutine what it waits for: queued for its loop, which
-- resumes it after the poll only if it still waits for that token (a reply
-- whose yield failed must not wake a later wait with the wrong results).
local function resume(co, token, ...)
  ready[#ready + 1] = pack(co, token, ...)
end

-- The instances whose poll is dispatching now (we are inside a callback).
local function in_callback()
  for nim in pairs(instances) do
    if nim:_dispatching() then return true end
  end
  return false
end

-- Yields the NIM.run coroutine co until resume(co, token, ...); raises
-- first (nothing sent yet) where the yield could not happen.
local function check_can_wait(F)
  if in_callback() then
    fail(F .. ": cannot wait inside a callback (poll is dispatching): pass done")
  end
  if real_isyieldable and not real_isyieldable() then
    fail(F .. ": cannot wait across a C call (a metamethod, an iterator): pass done")
  end
end

local function wait_for(co, token)
  runs[co].waiting = token
  return co_yield(token)
end

-- Queues command cmd (net/cmdtable.c) for nim; F names the API function,
-- query says its result is the point (a getter). Without done: inside
-- NIM.run, yields until the reply and returns err, obj; on the main thread
-- a command is sent with its failure going to onerror; else raises at the
-- caller's line.
function M.request(nim, cmd, args, done, F, query)
  if done == nil and F ~= "resetCurrSession" then
    local co = current_run()
    if co then
      check_can_wait(F)
      local token = {}
      raw_request(nim, cmd, args, function(err, obj) resume(co, token, err, obj) end, F)
      return wait_for(co, token)
    end
    done = M.fire_and_forget(nim, F, query)
  end
  return raw_request(nim, cmd, args, done, F)
end

-- The done for a call made without one outside NIM.run: on the main thread,
-- a command's, which hands a failure to onerror; else raises.
function M.fire_and_forget(nim, F, query)
  local _, main = co_running()
  if query or not main then fail(F .. ": pass done, or call from inside NIM.run") end
  return syncs[nim].report
end

-- True inside a coroutine run by NIM.run (where a call without done yields).
function M.in_run() return current_run() ~= nil end

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
    for _, c in ipairs(rounds) do ready[#ready + 1] = { c, WAIT, n = 2 } end
    rounds = {}
    while #ready > 0 do                          -- resume outside any callback
      local batch = ready
      ready = {}
      for _, r in ipairs(batch) do
        local c = r[1]
        local rec = runs[c]
        if rec and rec.waiting == r[2] and co_status(c) == "suspended" then
          rec.waiting = nil
          step(c, unpack(r, 3, r.n))
        end
      end
    end
  end
  if run.err then error(run.err, 2) end
  return unpack(run.results, 2, run.results.n)
end

-- Waits until cond() is true while every instance's callbacks run: true,
-- or false after timeout ms (nil: no limit). Inside NIM.run it yields to
-- NIM.run's loop between two looks at cond; elsewhere it polls every live
-- instance itself (F names the caller in its error).
local function wait_until(F, cond, timeout)
  local deadline = timeout and now() + timeout
  local in_run = current_run() ~= nil
  if cond() then return true end
  -- inside a callback poll does nothing: waiting would spin to the deadline
  if in_callback() then fail(F .. ": cannot wait inside a callback (poll is dispatching)") end
  if in_run then check_can_wait(F) end
  while not cond() do
    if deadline and now() >= deadline then return false end
    if in_run then
      wait_for(current_run(), WAIT)
    else
      local live = live_instances()
      if #live == 0 then fail(F .. ": the condition is false and no nim instance is alive") end
      local left = deadline and deadline - now() or 10
      local slice = #live == 1 and 10 or 2
      if left < slice then slice = left > 0 and math.ceil(left) or 0 end
      for _, nim in ipairs(live) do nim:poll(slice) end
    end
  end
  return true
end

local function check_timeout(F, name, timeout)
  if timeout == nil then return nil end
  local t = math_type(timeout) == "float" and tointeger(timeout) or timeout   -- an integral float is taken
  if math_type(t) ~= "integer" or t < 0 then
    argerror(F, name, "non-negative integer expected, got " .. tostring(timeout))
  end
  return t
end

-- NIM.wait(cond [, timeout_ms]): waits until cond() returns true while every
-- instance's callbacks run; returns true, or false and an Error_Timeout
-- error after timeout_ms (default: no limit). Not from a callback.
function M.wait(cond, timeout)
  if not callable(cond) then argerror("wait", "cond", "callable expected, got " .. type(cond)) end
  timeout = check_timeout("wait", "timeout_ms", timeout)
  if wait_until("wait", cond, timeout) then return true end
  return false, timeout_error("wait: the condition is still false after " .. timeout .. " ms")
end

-- The callbacks of a new instance, wrapped so that nim:waitSync learns of
-- the sync and of a login that gave up (the app's callbacks run first).
-- Returns the sync state to hand to M.track.
function M.watch_sync(callbacks)
  local sync = { done = false, failed = nil, last_error = nil, report = nil }
  local app_syncdone, app_disconnect, app_error = callbacks.onsyncdone, callbacks.ondisconnect, callbacks.onerror
  callbacks.onsyncdone = function(...)
    sync.done = true
    if app_syncdone then app_syncdone(...) end
  end
  callbacks.ondisconnect = function(d, ...)
    if app_disconnect then app_disconnect(d, ...) end
    if type(d) == "table" and d.willReconnect == false and not sync.done then
      sync.failed = setmetatable({ code = d.code, message = d.reason, event = "login" }, ERR_MT)
    end
  end
  -- what a timed-out waitSync names as the last failure
  callbacks.onerror = function(e, ...)
    if type(e) == "table" and (e.event == "connect" or e.event == "login") then sync.last_error = e end
    if app_error then return app_error(e, ...) end
    -- no onerror of the app's: stderr, as the binding does without one
    if e.code == "Callback_Error" then
      io.stderr:write("nim: error in ", tostring(e.event), ": ", tostring(e.message), "\n")
    elseif type(e.code) == "string" then
      io.stderr:write("nim: ", e.code, ": ", tostring(e.message or ""), "\n")
    else
      io.stderr:write("nim: ", tostring(e.message or "network error"), "\n")
    end
  end
  -- The done of a command sent without one: a failure goes to onerror
  -- (stderr if that raises). syncs[nim] holds it, so it holds onerror only
  -- weakly: on 5.1 and LuaJIT (no ephemerons) a strong path from a weak-
  -- keyed table's value to an app callback that refers to nim would keep
  -- nim alive for ever. The callbacks table (nim's own) keeps it alive.
  local weak = setmetatable({ onerror = callbacks.onerror }, { __mode = "v" })
  sync.report = function(err)
    local f = weak.onerror
    if err == nil or not f then return end
    local ok, e = pcall(f, err)
    if not ok then io.stderr:write("nim: error in onerror: ", tostring(e), "\n") end
  end
  return sync
end

-- A new instance: NIM.run and NIM.wait poll it; waitSync reads sync.
function M.track(nim, sync)
  instances[nim] = true
  syncs[nim] = sync
end

-- nim:waitSync([{timeout = ms}]): waits until the login sync is done
-- (onsyncdone) and returns nil; returns the error of a login that gave up
-- (wrong token, ...), or an Error_Timeout error after timeout ms naming the
-- last connection or login error. At once when the sync is already done.
-- Inside NIM.run it yields to NIM.run's loop; elsewhere it polls, like
-- NIM.wait. Local-only instances sync at once after getInstance.
function M.wait_sync(nim, timeout)
  local sync = syncs[nim]
  timeout = check_timeout("waitSync", "timeout", timeout)
  local over = function() return sync.done or sync.failed ~= nil end
  if not over() and not wait_until("waitSync", over, timeout) then
    local last = sync.last_error
    return timeout_error(("waitSync: no sync after %d ms%s"):format(timeout,
      last and (" (last error: " .. tostring(last.message or last.code) .. ")") or ""))
  end
  if sync.done then return nil end
  return sync.failed
end

return M
