-- nim.net: the instance methods that talk to the server (sendText,
-- deleteSession, sticky top, teams, ...). Added to the nim.Instance method
-- table; the requests run on the engine thread's network client
-- (csrc/net/client.c). Without a connection every one of them answers
-- done(err) with err.code == "Not_Connected" (in local-only mode too).
local core = require "nim.core"
local instance = require "nim.instance"

local methods = core.Instance
local type, tostring, error = type, tostring, error

local check = require "nim.check"
check.internal()
local argerror, callable, check_self = check.argerror, check.callable, check.check_self
local opts_table, opt_done = check.opts_table, check.opt_done

local function str(F, opts, key, required, maxlen)
  local v = opts[key]
  if v == nil then
    if required then argerror(F, key, "string expected, got nil") end
    return nil
  end
  if type(v) ~= "string" then argerror(F, key, "string expected, got " .. type(v)) end
  if required and v == "" then argerror(F, key, "non-empty string expected") end
  if maxlen and #v > maxlen then argerror(F, key, "at most " .. maxlen .. " bytes expected, got " .. #v) end
  return v
end

-- Only these two scenes exist on the server (docs/protocol.md).
local WIRE_SCENES = { p2p = true, team = true }

local function wire_scene(F, key, scene)
  if type(scene) ~= "string" then argerror(F, key, "string expected, got " .. type(scene)) end
  if not WIRE_SCENES[scene] then
    argerror(F, key, "scene '" .. scene .. "' cannot be sent to the server (p2p or team)")
  end
  return scene
end

local function session_id(F, key, id)
  if type(id) ~= "string" then argerror(F, key, "session id string expected, got " .. type(id)) end
  local scene, to = id:match("^([^-]+)%-(.+)$")
  if not scene then argerror(F, key, "session id 'scene-to' expected, got '" .. id .. "'") end
  wire_scene(F, key, scene)
  return id
end

---------------------------------------------------------------- messages

local function send(self, F, opts, msgtype, field, maxlen)
  check_self(self, F)
  opts_table(F, opts)
  local args = {
    scene = wire_scene(F, "scene", opts.scene),
    to = str(F, opts, "to", true, 64),
    type = msgtype,
    idClient = str(F, opts, "idClient", false, 64),
  }
  if args.idClient == "" then argerror(F, "idClient", "non-empty string expected") end
  args[field] = str(F, opts, field, true, maxlen)
  return self:_request("sendMsg", args, opt_done(F, opts), F)
end

-- nim:sendText{scene=, to=, text=, idClient=?, done=} -> done(err, msg)
function methods:sendText(opts) return send(self, "sendText", opts, "text", "text", 16384) end

-- nim:sendCustomMsg{scene=, to=, content=, idClient=?, done=} -> done(err, msg)
function methods:sendCustomMsg(opts) return send(self, "sendCustomMsg", opts, "custom", "content", 32768) end

-- nim:sendMsgReceipt{msg=, done=}: tells the sender I read up to msg (p2p).
function methods:sendMsgReceipt(opts)
  local F = "sendMsgReceipt"
  check_self(self, F)
  opts_table(F, opts)
  local msg = opts.msg
  if type(msg) ~= "table" then argerror(F, "msg", "message table expected, got " .. type(msg)) end
  if msg.scene ~= "p2p" then argerror(F, "msg.scene", "receipts are for p2p messages") end
  if type(msg.idServer) ~= "string" or msg.idServer == "" then
    argerror(F, "msg.idServer", "a message from the server expected (no idServer)")
  end
  return self:_request("sendMsgReceipt", { idServer = msg.idServer }, opt_done(F, opts), F)
end

---------------------------------------------------------------- server sessions

-- nim:deleteSession{scene=, to=, done=}
function methods:deleteSession(opts)
  local F = "deleteSession"
  check_self(self, F)
  opts_table(F, opts)
  local id = wire_scene(F, "scene", opts.scene) .. "-" .. str(F, opts, "to", true, 64)
  return self:_request("deleteSessions", { sessions = { id } }, opt_done(F, opts), F)
end

-- nim:deleteSessions{sessions = {{scene=, to=}, ...}, done=}
function methods:deleteSessions(opts)
  local F = "deleteSessions"
  check_self(self, F)
  opts_table(F, opts)
  local list = opts.sessions
  if type(list) ~= "table" or #list == 0 then
    argerror(F, "sessions", "non-empty array of {scene=, to=} expected, got " .. type(list))
  end
  if #list > 1000 then argerror(F, "sessions", "at most 1000 sessions per call") end
  local ids = {}
  for i, s in ipairs(list) do
    local where = "sessions[" .. i .. "]"
    if type(s) ~= "table" then argerror(F, where, "table expected, got " .. type(s)) end
    ids[i] = wire_scene(F, where .. ".scene", s.scene) .. "-" .. str(F, s, "to", true, 64)
  end
  return self:_request("deleteSessions", { sessions = ids }, opt_done(F, opts), F)
end

-- deleteLocalSession{isDeleteRoaming = true}: the local delete, then
-- deleteSessions on the server; done gets the first failure.
local local_delete = methods.deleteLocalSession
function methods:deleteLocalSession(opts)
  if type(opts) ~= "table" or opts.isDeleteRoaming ~= true then return local_delete(self, opts) end
  local F = "deleteLocalSession"
  check_self(self, F)
  local ids = type(opts.id) == "string" and { opts.id } or opts.id
  if type(ids) == "table" then
    for i = 1, #ids do session_id(F, "id", ids[i]) end
  end
  local done = opt_done(F, opts)
  local copy = {}
  for k, v in pairs(opts) do copy[k] = v end
  if done == nil and instance.in_coroutine() then
    copy.done = nil
    local err = local_delete(self, copy)
    if err or #ids == 0 then return err end
    return self:_request("deleteSessions", { sessions = ids }, nil, F)
  end
  copy.done = function(err)
    if err or #ids == 0 then
      if done then done(err, nil) end
      return
    end
    self:_request("deleteSessions", { sessions = ids }, function(err2, obj)
      if done then done(err2, obj) end
    end, F)
  end
  return local_delete(self, copy)
end

---------------------------------------------------------------- sticky top

local function top(self, F, cmd, opts, with_custom)
  check_self(self, F)
  opts_table(F, opts)
  local args = { sessionId = session_id(F, "id", opts.id) }
  if with_custom then args.topCustom = str(F, opts, "topCustom", false, 1024) end
  return self:_request(cmd, args, opt_done(F, opts), F)
end

-- nim:addStickTopSession{id=, topCustom=?, done=} -> done(err, {session=})
function methods:addStickTopSession(opts) return top(self, "addStickTopSession", "addStickTop", opts, true) end
function methods:updateStickTopSession(opts) return top(self, "updateStickTopSession", "updateStickTop", opts, true) end
function methods:deleteStickTopSession(opts) return top(self, "deleteStickTopSession", "deleteStickTop", opts, false) end

-- nim:getStickTopSessions{done=} -> done(err, {sessions = {{id=, topCustom=, createTime=, updateTime=, isTop=true}, ...}})
function methods:getStickTopSessions(opts)
  local F = "getStickTopSessions"
  check_self(self, F)
  opts = opts_table(F, opts == nil and {} or opts)
  return self:_request("getStickTop", nil, opt_done(F, opts), F)
end

---------------------------------------------------------------- teams

-- nim:createTeam{name=, accounts={...}, done=} -> done(err, {team={teamId=, name=, owner=, members=, createTime=}})
function methods:createTeam(opts)
  local F = "createTeam"
  check_self(self, F)
  opts_table(F, opts)
  local name = str(F, opts, "name", true, 128)
  local accounts = opts.accounts
  if type(accounts) ~= "table" then argerror(F, "accounts", "array of accounts expected, got " .. type(accounts)) end
  local list = {}
  for i, a in ipairs(accounts) do
    if type(a) ~= "string" or a == "" then argerror(F, "accounts[" .. i .. "]", "account string expected") end
    list[i] = a
  end
  if #list > 199 then argerror(F, "accounts", "at most 199 members besides me") end
  return self:_request("createTeam", { name = name, accounts = list }, opt_done(F, opts), F)
end

---------------------------------------------------------------- connection

-- nim:disconnect([done]): closes the connection and stops reconnecting.
function methods:disconnect(done)
  check_self(self, "disconnect")
  if done ~= nil and not callable(done) then argerror("disconnect", "done", "callable expected") end
  return self:_request("disconnect", nil, done, "disconnect")
end

-- nim:connect([done]): connects again after disconnect() or a give-up.
function methods:connect(done)
  check_self(self, "connect")
  if done ~= nil and not callable(done) then argerror("connect", "done", "callable expected") end
  return self:_request("connect", nil, done, "connect")
end

return {}
