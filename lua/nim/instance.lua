-- nim.instance: NIM.getInstance and the instance methods.
--
-- Every method is a row of a table (LOCAL here, nim.net's for the network
-- ones): its name, how it takes its arguments, the command it queues (a
-- name of the command table, csrc/net/cmdtable.c) and a function that
-- checks the arguments and returns the command's args. One wrapper per
-- kind does the rest: the instance check, the `done` check and the
-- request (coroutine style included, nim.coroutine). Programmer errors
-- raise at once, naming the function and the parameter; everything else
-- reaches `done(err, obj)` inside `nim:poll`. All methods are installed
-- here, once, in the binding's method table.
local core = require "nim.core"
local check = require "nim.check"
local co = require "nim.coroutine"
local options = require "nim.options"
local net_methods = require "nim.net"
check.internal()

local M = {}
local type, tostring = type, tostring
local compat = require "nim.compat"
local math_type = compat.math_type
local argerror = check.argerror
local request = co.request

---------------------------------------------------------------- the local methods

local function check_msg(F, i, m)
  local where = "msgs[" .. i .. "]"
  if type(m) ~= "table" then argerror(F, where, "message table expected, got " .. type(m)) end
  check.scene(F, where .. ".scene", m.scene)
  for _, k in ipairs { "from", "to" } do
    if type(m[k]) ~= "string" or m[k] == "" then
      argerror(F, where .. "." .. k, "non-empty string expected, got " .. type(m[k]))
    end
  end
  local t = m.time
  if math_type(t) == "float" then t = compat.tointeger(t) end
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

-- saveMsgsToLocal's done(nil, {msgs = the caller's tables}): the reply
-- carries nothing back and the tables are not touched (writing into
-- thousands of old tables makes Lua's collector re-scan them all in one
-- step). The stored form, with flow, target, sessionId and status, comes
-- from getLocalMsgs.
local function save_msgs(self, F, args, done)
  local msgs = args.msgs
  if done == nil and not co.in_run() then done = co.fire_and_forget(self, F) end
  if done == nil then                                   -- coroutine style: err, {msgs=}
    local err = request(self, "saveMsgsToLocal", args, nil, F)
    if err then return err, nil end
    return nil, { msgs = msgs }
  end
  return request(self, "saveMsgsToLocal", args, function(err)
    if not done then return end
    if err then done(err, nil) else done(nil, { msgs = msgs }) end
  end, F)
end

-- deleteLocalSession{isDeleteRoaming = true}: the local delete, then
-- deleteSessions on the server; done gets the first failure.
local function delete_local(self, F, args, done)
  if not args.isDeleteRoaming then return request(self, "deleteLocalSession", args, done, F) end
  local ids = args.ids
  if done == nil and not co.in_run() then done = co.fire_and_forget(self, F) end
  if done == nil then                                   -- coroutine style
    local err = request(self, "deleteLocalSession", args, nil, F)
    if err or #ids == 0 then return err end
    return request(self, "deleteSessions", { sessions = ids }, nil, F)
  end
  return request(self, "deleteLocalSession", args, function(err)
    if err or #ids == 0 then
      if done then done(err, nil) end
      return
    end
    request(self, "deleteSessions", { sessions = ids }, function(err2, obj)
      if done then done(err2, obj) end
    end, F)
  end, F)
end

-- Kinds: "opts" m(self, opts); "opts?" the same with opts optional;
-- "arg" m(self, a, done); "none" m(self, done); nodone: no done at all;
-- query: a getter (without done it raises outside NIM.run); keys: the
-- options an "opts" row takes besides done (any other key raises);
-- reply(obj, opts): the result in the shape the JS SDK passes to done.
local LOCAL = {
  getLocalSessions = { kind = "opts?", cmd = "getLocalSessions", query = true,
                       keys = { "lastSessionId", "limit", "reverse" }, args = function(F, opts)
    local last = opts.lastSessionId
    if last ~= nil then check.id(F, "lastSessionId", last) end
    return { lastSessionId = last, limit = check.int(F, opts, "limit", 100, 0),
             reverse = check.bool(F, opts, "reverse", false) }
  end },
  getLocalSession = { kind = "opts", cmd = "getLocalSession", query = true, keys = { "sessionId" }, args = function(F, opts)
    return { sessionId = check.id(F, "sessionId", opts.sessionId) }
  end },
  insertLocalSession = { kind = "opts", cmd = "insertLocalSession", keys = { "scene", "to", "updateTime" }, args = function(F, opts)
    return { scene = check.scene(F, "scene", opts.scene), to = check.str(F, opts, "to", true),
             updateTime = check.int(F, opts, "updateTime", nil, 0) }
  end },
  -- the JS SDK passes the options object back, its session set (so a
  -- table used again carries it: taken and ignored)
  updateLocalSession = { kind = "opts", cmd = "updateLocalSession", keys = { "id", "localCustom", "needNotify", "session" },
                         reply = function(session, opts) opts.session = session; return opts end, args = function(F, opts)
    return { id = check.id(F, "id", opts.id), localCustom = check.str(F, opts, "localCustom", false),
             needNotify = check.bool(F, opts, "needNotify", true) }
  end },
  -- the JS SDK passes the options object back
  deleteLocalSession = { kind = "opts", run = delete_local, keys = { "id", "isLogic", "isDeleteRoaming" },
                         reply = function(_, opts) return opts end, args = function(F, opts)
    if opts.isDeleteRoaming == true then
      -- the server part first: only its scenes can be deleted there
      local ids = type(opts.id) == "string" and { opts.id } or opts.id
      if type(ids) == "table" then
        for i = 1, #ids do check.wire_id(F, "id", ids[i]) end
      end
      check.done(F, opts)
    end
    return { ids = check.ids(F, "id", opts.id, true), isLogic = check.bool(F, opts, "isLogic", false),
             isDeleteRoaming = check.bool(F, opts, "isDeleteRoaming", false) }
  end },
  setCurrSession = { kind = "arg", cmd = "setCurrSession", args = function(F, id)
    return { id = check.id(F, "id", id) }
  end },
  resetCurrSession = { kind = "none", cmd = "resetCurrSession", nodone = true },
  resetSessionUnread = { kind = "arg", cmd = "resetSessionsUnread", args = function(F, id)
    return { ids = { check.id(F, "id", id) } }
  end },
  resetSessionsUnread = { kind = "arg", cmd = "resetSessionsUnread", args = function(F, ids)
    return { ids = check.ids(F, "ids", ids, false) }
  end },
  resetAllSessionUnread = { kind = "none", cmd = "resetAllSessionUnread" },
  saveMsgsToLocal = { kind = "opts", run = save_msgs, keys = { "msgs" }, args = function(F, opts)
    local msgs = opts.msgs
    if type(msgs) ~= "table" then argerror(F, "msgs", "array of messages expected, got " .. type(msgs)) end
    if msgs.scene ~= nil then msgs = { msgs } end        -- one message is accepted too
    for i = 1, #msgs do check_msg(F, i, msgs[i]) end
    return { msgs = msgs }
  end },
  getLocalMsgs = { kind = "opts?", cmd = "getLocalMsgs", query = true,
                   keys = { "sessionId", "limit", "start", "end", "desc", "keyword", "type", "types" },
                   args = function(F, opts)
    local sid = opts.sessionId
    if sid ~= nil then check.id(F, "sessionId", sid) end
    local keyword = opts.keyword
    if keyword ~= nil and type(keyword) ~= "string" then
      argerror(F, "keyword", "string expected, got " .. type(keyword))
    end
    -- type and types (a name or a list of names each, as the JS SDK takes
    -- them): messages of any of these types
    local types
    for _, key in ipairs { "type", "types" } do
      local v = opts[key]
      if v ~= nil then
        if type(v) == "string" then v = { v } end
        if type(v) ~= "table" then argerror(F, key, "type name or array of names expected, got " .. type(v)) end
        types = types or {}
        for i, t in ipairs(v) do
          if type(t) ~= "string" or t == "" then argerror(F, key .. "[" .. i .. "]", "type name expected") end
          types[#types + 1] = t
        end
      end
    end
    return { sessionId = sid, limit = check.int(F, opts, "limit", 100, 0),
             start = check.int(F, opts, "start", nil), ["end"] = check.int(F, opts, "end", nil),
             desc = check.bool(F, opts, "desc", true),
             keyword = keyword ~= "" and keyword or nil, types = types and #types > 0 and types or nil }
  end },
}

---------------------------------------------------------------- one wrapper per kind

local function no_args() return nil end

local function method(F, row)
  local args_of = row.args or no_args
  local run = row.run or function(self, _, args, done) return request(self, row.cmd, args, done, F, row.query) end
  if row.kind == "opts" or row.kind == "opts?" then
    local optional = row.kind == "opts?"
    local known = { done = true }
    for _, k in ipairs(assert(row.keys, F .. ": a row of kind opts names its keys")) do known[k] = true end
    local reply = row.reply
    return function(self, opts)
      check.self_open(self, F)
      if optional and opts == nil then opts = {} end
      check.opts(F, opts)
      check.known(F, opts, known)
      local args = args_of(F, opts)
      local done = check.done(F, opts)
      if reply and done then
        return run(self, F, args, function(err, obj)
          if err ~= nil then return done(err, nil) end
          return done(nil, reply(obj, opts))
        end)
      elseif reply and co.in_run() then          -- coroutine style: err, obj
        local err, obj = run(self, F, args, nil)
        if err ~= nil then return err, nil end
        return nil, reply(obj, opts)
      end
      return run(self, F, args, done)
    end
  elseif row.kind == "arg" then
    return function(self, a, done)
      check.self_open(self, F)
      local args = args_of(F, a)
      return run(self, F, args, check.fn(F, "done", done))
    end
  elseif row.nodone then
    return function(self)
      check.self_open(self, F)
      return run(self, F, args_of(F), nil)
    end
  end
  return function(self, done)
    check.self_open(self, F)
    return run(self, F, args_of(F), check.fn(F, "done", done))
  end
end

---------------------------------------------------------------- installed once

local methods = core.Instance        -- the __index table of nim.Instance userdata
for _, rows in ipairs { LOCAL, net_methods } do
  for name, row in pairs(rows) do methods[name] = method(name, row) end
end

local WAITSYNC_KEYS = { timeout = true }
function methods:waitSync(opts)
  check.self_open(self, "waitSync")
  if opts == nil then opts = {} end
  check.opts("waitSync", opts)
  check.known("waitSync", opts, WAITSYNC_KEYS)
  local err = co.wait_sync(self, opts.timeout)
  return err
end

-- The pure session-list functions, as methods too.
function methods:mergeSessions(olds, news) return core.mergeSessions(olds, news) end
function methods:cutSessions(olds, invalids) return core.cutSessions(olds, invalids) end
function methods:cutSessionsByIds(olds, ids) return core.cutSessionsByIds(olds, ids) end
function methods:findSession(list, id) return core.findSession(list, id) end

---------------------------------------------------------------- getInstance

function M.getInstance(opts)
  local cfg = options.parse(opts)
  local sync = co.watch_sync(cfg.callbacks)
  local nim = core.newInstance(cfg)
  co.track(nim, sync)
  return nim
end

M.run = co.run
M.wait = co.wait
return M
