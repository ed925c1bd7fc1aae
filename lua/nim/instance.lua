-- nim.instance: NIM.getInstance and the JS-shaped instance methods.
--
-- Argument checks, defaults and the option names of REFERENCE.md live here;
-- the C methods underneath (poll, getfd, destroy, _request, _state) do the
-- work. Programmer errors raise at once, naming the function and the
-- parameter; everything else reaches `done(err, obj)` inside `nim:poll`.
local core = require "nim.core"

local M = {}
local methods = core.Instance        -- the __index table of nim.Instance userdata

local SCENES = { p2p = true, team = true, superTeam = true }
local accounts = setmetatable({}, { __mode = "k" })   -- instance -> account
local CALLBACKS = {
  "onconnect", "ondisconnect", "onwillreconnect", "onerror", "onsyncdone",
  "onsessions", "onupdatesession", "onupdatesessions", "onmsg", "onroamingmsgs",
  "onofflinemsgs", "onStickTopSessions",
}

local type, tostring, error, select = type, tostring, error, select
local math_type = math.type

local check = require "nim.check"
check.internal()
local argerror, callable, check_self = check.argerror, check.callable, check.check_self
local opts_table, opt_done = check.opts_table, check.opt_done

local function opt_string(fname, opts, key, required)
  local v = opts[key]
  if v == nil then
    if required then argerror(fname, key, "string expected, got nil") end
    return nil
  end
  if type(v) ~= "string" then argerror(fname, key, "string expected, got " .. type(v)) end
  return v
end

local function opt_bool(fname, opts, key, default)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "boolean" then argerror(fname, key, "boolean expected, got " .. type(v)) end
  return v
end

local function opt_int(fname, opts, key, default, min)
  local v = opts[key]
  if v == nil then return default end
  local i = math_type(v) == "float" and math.tointeger(v) or v
  if math_type(i) ~= "integer" then
    argerror(fname, key, "integer expected, got " .. (type(v) == "number" and tostring(v) or type(v)))
  end
  if min and i < min then argerror(fname, key, "integer >= " .. min .. " expected, got " .. i) end
  return i
end

local function check_scene(fname, key, scene)
  if type(scene) ~= "string" then argerror(fname, key, "string expected, got " .. type(scene)) end
  if not SCENES[scene] then
    argerror(fname, key, "unknown scene '" .. scene .. "' (p2p, team or superTeam)")
  end
end

-- A session id "scene-to" with a known scene and a non-empty to.
local function check_id(fname, key, id)
  if type(id) ~= "string" then argerror(fname, key, "session id string expected, got " .. type(id)) end
  local scene, to = id:match("^([^-]+)%-(.+)$")
  if not scene then argerror(fname, key, "session id 'scene-to' expected, got '" .. id .. "'") end
  if not SCENES[scene] then
    argerror(fname, key, "unknown scene '" .. scene .. "' in session id '" .. id .. "'")
  end
  return id
end

-- An id or an array of ids (deleteLocalSession, resetSessionsUnread).
local function check_ids(fname, key, ids, allow_string)
  if allow_string and type(ids) == "string" then return { check_id(fname, key, ids) } end
  if type(ids) ~= "table" then
    argerror(fname, key, (allow_string and "string or " or "") .. "array of session ids expected, got " .. type(ids))
  end
  local out = {}
  for i = 1, #ids do out[i] = check_id(fname, key .. "[" .. i .. "]", ids[i]) end
  return out
end

---------------------------------------------------------------- coroutine style

-- A request made without `done` from inside a coroutine yields until it
-- completes and returns `err, obj`. A coroutine run by NIM.run is resumed by
-- NIM.run's own loop, between two polls, so its code never runs inside a
-- callback and may call nim:poll itself; any other coroutine is resumed from
-- inside `nim:poll`, like any callback. resetCurrSession has no `done` and
-- never yields.
local raw_request = methods._request
local co_running, co_yield, co_resume = coroutine.running, coroutine.yield, coroutine.resume
local co_isyieldable, co_status = coroutine.isyieldable, coroutine.status
local runs = setmetatable({}, { __mode = "k" })      -- coroutine -> NIM.run record
local syncs = setmetatable({}, { __mode = "k" })     -- instance -> waitSync state
local ready = {}                                     -- NIM.run coroutines to resume: {co, ...}
-- Error objects made in Lua share the binding's metatable (nim.Error).
local ERR_MT = debug.getregistry()["nim.Error"]

function M.in_coroutine()
  local _, main = co_running()
  return not main and co_isyieldable()
end

local WAIT = {}                                      -- yielded by NIM.wait: "resume me next round"
local rounds = {}                                    -- NIM.run coroutines waiting in NIM.wait

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

function methods:_request(name, args, done, F)
  if done == nil and F ~= "resetCurrSession" and M.in_coroutine() then
    local co = co_running()
    raw_request(self, name, args, function(err, obj) resume(co, err, obj) end, F)
    return co_yield()
  end
  return raw_request(self, name, args, done, F)
end

-- NIM.run(fn, ...): runs fn(...) in a coroutine and drives every instance's
-- poll until it finishes; returns fn's results or raises its error (with the
-- coroutine's traceback).
-- The instances with callbacks still to come: open ones, and destroyed ones
-- whose last callbacks (destroy's done) are still being delivered.
local function live_instances()
  local live = {}
  for nim in pairs(accounts) do
    if nim:_state() ~= "destroyed" or nim:poll(0) > 0 then live[#live + 1] = nim end
  end
  return live
end

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
local now = require("nim.core").now
function M.wait(cond, timeout)
  if not callable(cond) then argerror("wait", "cond", "callable expected, got " .. type(cond)) end
  if timeout ~= nil and (math_type(timeout) ~= "integer" or timeout < 0) then
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

---------------------------------------------------------------- sessions

function methods:getLocalSessions(opts)
  local F = "getLocalSessions"
  check_self(self, F)
  opts = opts_table(F, opts == nil and {} or opts)
  local last = opts.lastSessionId
  if last ~= nil then check_id(F, "lastSessionId", last) end
  local args = {
    lastSessionId = last,
    limit = opt_int(F, opts, "limit", 100, 0),
    reverse = opt_bool(F, opts, "reverse", false),
  }
  return self:_request("getLocalSessions", args, opt_done(F, opts), F)
end

function methods:getLocalSession(opts)
  local F = "getLocalSession"
  check_self(self, F)
  opts_table(F, opts)
  local id = check_id(F, "sessionId", opts.sessionId)
  return self:_request("getLocalSession", { sessionId = id }, opt_done(F, opts), F)
end

function methods:insertLocalSession(opts)
  local F = "insertLocalSession"
  check_self(self, F)
  opts_table(F, opts)
  check_scene(F, "scene", opts.scene)
  local to = opt_string(F, opts, "to", true)
  if to == "" then argerror(F, "to", "non-empty string expected") end
  local args = { scene = opts.scene, to = to, updateTime = opt_int(F, opts, "updateTime", nil, 0) }
  return self:_request("insertLocalSession", args, opt_done(F, opts), F)
end

function methods:updateLocalSession(opts)
  local F = "updateLocalSession"
  check_self(self, F)
  opts_table(F, opts)
  local args = {
    id = check_id(F, "id", opts.id),
    localCustom = opt_string(F, opts, "localCustom", false),
    needNotify = opt_bool(F, opts, "needNotify", true),
  }
  return self:_request("updateLocalSession", args, opt_done(F, opts), F)
end

function methods:deleteLocalSession(opts)
  local F = "deleteLocalSession"
  check_self(self, F)
  opts_table(F, opts)
  local args = {
    ids = check_ids(F, "id", opts.id, true),
    isLogic = opt_bool(F, opts, "isLogic", false),
  }
  -- the server part belongs to the network layer; local-only mode has none
  args.isDeleteRoaming = opt_bool(F, opts, "isDeleteRoaming", false)
  return self:_request("deleteLocalSession", args, opt_done(F, opts), F)
end

---------------------------------------------------------------- unread

function methods:setCurrSession(id, done)
  local F = "setCurrSession"
  check_self(self, F)
  check_id(F, "id", id)
  if done ~= nil and not callable(done) then argerror(F, "done", "callable expected, got " .. type(done)) end
  return self:_request("setCurrSession", { id = id }, done, F)
end

function methods:resetCurrSession()
  check_self(self, "resetCurrSession")
  return self:_request("resetCurrSession", nil, nil, "resetCurrSession")
end

function methods:resetSessionUnread(id, done)
  local F = "resetSessionUnread"
  check_self(self, F)
  check_id(F, "id", id)
  if done ~= nil and not callable(done) then argerror(F, "done", "callable expected, got " .. type(done)) end
  return self:_request("resetSessionsUnread", { ids = { id } }, done, F)
end

function methods:resetSessionsUnread(ids, done)
  local F = "resetSessionsUnread"
  check_self(self, F)
  ids = check_ids(F, "ids", ids, false)
  if done ~= nil and not callable(done) then argerror(F, "done", "callable expected, got " .. type(done)) end
  return self:_request("resetSessionsUnread", { ids = ids }, done, F)
end

function methods:resetAllSessionUnread(done)
  local F = "resetAllSessionUnread"
  check_self(self, F)
  if done ~= nil and not callable(done) then argerror(F, "done", "callable expected, got " .. type(done)) end
  return self:_request("resetAllSessionUnread", nil, done, F)
end

---------------------------------------------------------------- messages

local function check_msg(F, i, m)
  local where = "msgs[" .. i .. "]"
  if type(m) ~= "table" then argerror(F, where, "message table expected, got " .. type(m)) end
  check_scene(F, where .. ".scene", m.scene)
  for _, k in ipairs { "from", "to" } do
    if type(m[k]) ~= "string" or m[k] == "" then
      argerror(F, where .. "." .. k, "non-empty string expected, got " .. type(m[k]))
    end
  end
  local t = m.time
  if math_type(t) == "float" then t = math.tointeger(t) end
  if math_type(t) ~= "integer" then
    argerror(F, where .. ".time", "integer (ms) expected, got " .. (type(m.time) == "number" and tostring(m.time) or type(m.time)))
  end
  local ids, idc = m.idServer, m.idClient
  if ids ~= nil and (type(ids) ~= "string" or ids == "") then
    argerror(F, where .. ".idServer", "non-empty string expected, got " .. type(ids))
  end
  if idc ~= nil and (type(idc) ~= "string" or idc == "") then
    argerror(F, where .. ".idClient", "non-empty string expected, got " .. type(idc))
  end
  if ids == nil and idc == nil then argerror(F, where .. ".idServer", "idServer or idClient expected") end
end

function methods:saveMsgsToLocal(opts)
  local F = "saveMsgsToLocal"
  check_self(self, F)
  opts_table(F, opts)
  local msgs = opts.msgs
  if type(msgs) ~= "table" then argerror(F, "msgs", "array of messages expected, got " .. type(msgs)) end
  if msgs.scene ~= nil then msgs = { msgs } end           -- one message is accepted too
  for i = 1, #msgs do check_msg(F, i, msgs[i]) end
  -- done(nil, {msgs = the caller's tables}): the reply carries nothing back
  -- and the tables are not touched (writing into thousands of old tables
  -- makes Lua's collector re-scan them all in one step). The stored form,
  -- with flow, target, sessionId and status, comes from getLocalMsgs.
  local done = opt_done(F, opts)
  if done == nil and M.in_coroutine() then              -- coroutine style: err, {msgs=}
    local err = self:_request("saveMsgsToLocal", { msgs = msgs }, nil, F)
    if err then return err, nil end
    return nil, { msgs = msgs }
  end
  return self:_request("saveMsgsToLocal", { msgs = msgs }, function(err)
    if not done then return end
    if err then done(err, nil) else done(nil, { msgs = msgs }) end
  end, F)
end

function methods:getLocalMsgs(opts)
  local F = "getLocalMsgs"
  check_self(self, F)
  opts = opts_table(F, opts == nil and {} or opts)
  local sid = opts.sessionId
  if sid ~= nil then check_id(F, "sessionId", sid) end
  local args = {
    sessionId = sid,
    limit = opt_int(F, opts, "limit", 100, 0),
    start = opt_int(F, opts, "start", nil),
    ["end"] = opt_int(F, opts, "end", nil),
    desc = opt_bool(F, opts, "desc", true),
  }
  return self:_request("getLocalMsgs", args, opt_done(F, opts), F)
end

---------------------------------------------------------------- pure helpers as methods

function methods:mergeSessions(olds, news) return core.mergeSessions(olds, news) end
function methods:cutSessions(olds, invalids) return core.cutSessions(olds, invalids) end
function methods:cutSessionsByIds(olds, ids) return core.cutSessionsByIds(olds, ids) end
function methods:findSession(list, id) return core.findSession(list, id) end

---------------------------------------------------------------- getInstance

-- A file name for the account: letters, digits, '.', '_', '@' and '-' kept,
-- everything else (path separators included) as %XX, never a leading '.'.
local function account_file(account)
  local s = account:gsub("[^%w._@-]", function(c) return ("%%%02X"):format(c:byte()) end)
  if s:sub(1, 1) == "." then s = "%2E" .. s:sub(2) end
  return s .. ".db"
end

-- Every option getInstance knows (REFERENCE.md plus the network extras).
local OPTIONS = {
  account = true, token = true, server = true, db = true, dataDir = true, deviceId = true,
  syncSessionUnread = true, syncStickTopSessions = true, needReconnect = true,
  requestTimeout = true, heartbeatInterval = true, reconnectDelay = true, maxReconnectDelay = true,
}
for _, k in ipairs(CALLBACKS) do OPTIONS[k] = true end

-- The known option closest to a misspelt one (edit distance <= 2, any case).
local function suggest(name)
  local function distance(a, b)
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
      local cur = { [0] = i }
      for j = 1, #b do
        local cost = a:byte(i) == b:byte(j) and 0 or 1
        cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      end
      prev = cur
    end
    return prev[#b]
  end
  local best, bestd = nil, 3
  for k in pairs(OPTIONS) do
    local d = distance(name:lower(), k:lower())
    if d < bestd or (d == bestd and best and k < best) then best, bestd = k, d end
  end
  return best
end

function M.getInstance(opts)
  local F = "getInstance"
  if type(opts) ~= "table" then
    error(F .. ": bad argument 'options' (table expected, got " .. type(opts) .. ")", 2)
  end
  local function bad(param, why) argerror(F, param, why) end
  for k in pairs(opts) do                  -- a typo in a callback name would fail silently
    if not OPTIONS[k] then
      local hint = type(k) == "string" and suggest(k)
      bad(tostring(k), "unknown option" .. (hint and (", did you mean '" .. hint .. "'?") or ""))
    end
  end
  local account = opts.account
  if type(account) ~= "string" or account == "" then
    bad("account", "non-empty string expected, got " .. (account == "" and "''" or type(account)))
  end
  -- network mode (csrc/net/client.c): server and token, the rest optional
  local net
  if opts.server ~= nil then
    if type(opts.server) ~= "string" or not opts.server:match("^ws://[^/:]+") then
      bad("server", "'ws://host:port' expected, got " .. (type(opts.server) == "string" and ("'" .. opts.server .. "'") or type(opts.server)))
    end
    if type(opts.token) ~= "string" or opts.token == "" then
      bad("token", "non-empty string expected with server, got " .. type(opts.token))
    end
    if opts.deviceId ~= nil and (type(opts.deviceId) ~= "string" or opts.deviceId == "") then
      bad("deviceId", "non-empty string expected, got " .. type(opts.deviceId))
    end
    net = {
      server = opts.server, token = opts.token, deviceId = opts.deviceId,
      needReconnect = opts.needReconnect, syncSessionUnread = opts.syncSessionUnread,
      syncStickTopSessions = opts.syncStickTopSessions,
      requestTimeout = opts.requestTimeout, heartbeatInterval = opts.heartbeatInterval,
      reconnectDelay = opts.reconnectDelay, maxReconnectDelay = opts.maxReconnectDelay,
    }
  end
  local db = opts.db
  if db == nil then db = true end
  if type(db) ~= "boolean" and type(db) ~= "string" then
    bad("db", "boolean or file name expected, got " .. type(db))
  end
  local dataDir = opts.dataDir
  if dataDir == nil then dataDir = "./nim-data" end
  if type(dataDir) ~= "string" or dataDir == "" then
    bad("dataDir", "non-empty string expected, got " .. type(dataDir))
  end
  for _, k in ipairs { "syncSessionUnread", "syncStickTopSessions", "needReconnect" } do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      bad(k, "boolean expected, got " .. type(opts[k]))
    end
  end
  local callbacks = {}
  for _, k in ipairs(CALLBACKS) do
    local cb = opts[k]
    if cb ~= nil then
      if not callable(cb) then bad(k, "callable expected, got " .. type(cb)) end
      callbacks[k] = cb
    end
  end
  local dbPath
  if db == true then
    dbPath = dataDir:gsub("/+$", "") .. "/" .. account_file(account)
  elseif type(db) == "string" then
    dbPath = db
  end
  -- nim:waitSync() (coroutine style) learns of the sync and of a login
  -- that gave up through these two wrappers; the app's callbacks run first.
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
  local nim = core.newInstance { account = account, dbPath = dbPath, callbacks = callbacks, net = net }
  accounts[nim] = account
  syncs[nim] = sync
  return nim
end

-- nim:waitSync(): inside a coroutine, waits until the login sync is done
-- (onsyncdone) and returns nil, or returns the error of a login that gave up
-- (wrong token, ...). At once when the sync is already done. Local-only
-- instances sync at once after getInstance.
function methods:waitSync()
  check_self(self, "waitSync")
  local sync = syncs[self]
  if sync.done then return nil end
  if sync.failed then return sync.failed end
  if not M.in_coroutine() then
    error("waitSync: call it inside a coroutine (NIM.run), or use onsyncdone", 2)
  end
  local waiting = sync.waiting
  waiting[#waiting + 1] = co_running()
  return co_yield()
end

M.accountFile = account_file
return M
