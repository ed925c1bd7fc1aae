-- nim.net: the rows of the instance methods that talk to the server
-- (sendText, deleteSession, sticky top, teams, connect, ...), in the shape
-- nim.instance installs (see its LOCAL table). The requests run on the
-- engine thread's network client (csrc/net). Without a connection every
-- one of them answers done(err) with err.code == "Not_Connected" (in
-- local-only mode too).
local check = require "nim.check"
check.internal()

local type = type
local argerror = check.argerror

-- sendText, sendCustomMsg: one sendMsg, the body in field.
local function send(msgtype, field, maxlen)
  return { kind = "opts", cmd = "sendMsg", keys = { "scene", "to", field, "idClient" }, args = function(F, opts)
    local args = {
      scene = check.wire_scene(F, "scene", opts.scene),
      to = check.str(F, opts, "to", true, 64),
      type = msgtype,
      idClient = check.str(F, opts, "idClient", false, 64),
    }
    if args.idClient == "" then argerror(F, "idClient", "non-empty string expected") end
    args[field] = check.str(F, opts, field, true, maxlen)
    return args
  end }
end

-- teamId: a team id string (digits).
local function team_id(F, opts)
  local id = opts.teamId
  if type(id) ~= "string" or not id:match("^[1-9]%d*$") or #id > 19 then
    argerror(F, "teamId", "a team id string expected, got " .. (type(id) == "string" and "'" .. id .. "'" or type(id)))
  end
  return id
end

-- accounts: an array of account names (at most 199; non-empty unless may_be_empty).
local function account_list(F, opts, may_be_empty)
  local accounts = opts.accounts
  if type(accounts) ~= "table" then argerror(F, "accounts", "array of accounts expected, got " .. type(accounts)) end
  local list = {}
  for i, a in ipairs(accounts) do
    if type(a) ~= "string" or a == "" then argerror(F, "accounts[" .. i .. "]", "account string expected") end
    list[i] = a
  end
  if #list == 0 and not may_be_empty then argerror(F, "accounts", "at least one account expected") end
  if #list > 199 then argerror(F, "accounts", "at most 199 members besides me") end
  return list
end

-- add/update/deleteStickTopSession{id=, topCustom=?, done=} -> done(err, {stickTopSession=}),
-- the JS SDK's shape (the session: id, topCustom, isTop, ...)
local function top(cmd, with_custom)
  return { kind = "opts", cmd = cmd, keys = with_custom and { "id", "topCustom" } or { "id" },
           reply = function(obj) return { stickTopSession = obj.session } end, args = function(F, opts)
    local args = { sessionId = check.wire_id(F, "id", opts.id) }
    if with_custom then args.topCustom = check.str(F, opts, "topCustom", false, 1024) end
    return args
  end }
end

return {
  -- nim:sendText{scene=, to=, text=, idClient=?, done=} -> done(err, msg)
  sendText = send("text", "text", 16384),
  -- nim:sendCustomMsg{scene=, to=, content=, idClient=?, done=} -> done(err, msg)
  sendCustomMsg = send("custom", "content", 32768),

  -- nim:sendMsgReceipt{msg=, done=}: tells the sender I read up to msg (p2p).
  sendMsgReceipt = { kind = "opts", cmd = "sendMsgReceipt", keys = { "msg" }, args = function(F, opts)
    local msg = opts.msg
    if type(msg) ~= "table" then argerror(F, "msg", "message table expected, got " .. type(msg)) end
    if msg.scene ~= "p2p" then argerror(F, "msg.scene", "receipts are for p2p messages") end
    if type(msg.idServer) ~= "string" or msg.idServer == "" then
      argerror(F, "msg.idServer", "a message from the server expected (no idServer)")
    end
    return { idServer = msg.idServer }
  end },

  -- nim:deleteSession{scene=, to=, done=}
  deleteSession = { kind = "opts", cmd = "deleteSessions", keys = { "scene", "to" }, args = function(F, opts)
    return { sessions = { check.wire_scene(F, "scene", opts.scene) .. "-" .. check.str(F, opts, "to", true, 64) } }
  end },

  -- nim:deleteSessions{sessions = {{scene=, to=}, ...}, done=}
  deleteSessions = { kind = "opts", cmd = "deleteSessions", keys = { "sessions" }, args = function(F, opts)
    local list = opts.sessions
    if type(list) ~= "table" or #list == 0 then
      argerror(F, "sessions", "non-empty array of {scene=, to=} expected, got " .. type(list))
    end
    if #list > 1000 then argerror(F, "sessions", "at most 1000 sessions per call") end
    local ids = {}
    for i, s in ipairs(list) do
      local where = "sessions[" .. i .. "]"
      if type(s) ~= "table" then argerror(F, where, "table expected, got " .. type(s)) end
      ids[i] = check.wire_scene(F, where .. ".scene", s.scene) .. "-" .. check.str(F, s, "to", true, 64)
    end
    return { sessions = ids }
  end },

  addStickTopSession = top("addStickTop", true),
  updateStickTopSession = top("updateStickTop", true),
  deleteStickTopSession = top("deleteStickTop", false),
  -- nim:getStickTopSessions{done=} -> done(err, {{id=, topCustom=, createTime=, updateTime=, isTop=true}, ...}):
  -- the array, as the JS SDK passes it
  getStickTopSessions = { kind = "opts?", cmd = "getStickTop", query = true, keys = {},
                          reply = function(obj) return obj.sessions end },

  -- nim:createTeam{name=, accounts={...}, done=} -> done(err, {team={teamId=, name=, owner=, members=, createTime=}})
  createTeam = { kind = "opts", cmd = "createTeam", keys = { "name", "accounts" }, args = function(F, opts)
    return { name = check.str(F, opts, "name", true, 128), accounts = account_list(F, opts, true) }
  end },
  -- nim:addTeamMembers{teamId=, accounts={...}, done=}, nim:removeTeamMembers{...}
  -- (the owner only) -> done(err, {team=, msg=}): msg is the notification
  addTeamMembers = { kind = "opts", cmd = "addTeamMembers", keys = { "teamId", "accounts" }, args = function(F, opts)
    return { teamId = team_id(F, opts), accounts = account_list(F, opts) }
  end },
  removeTeamMembers = { kind = "opts", cmd = "removeTeamMembers", keys = { "teamId", "accounts" }, args = function(F, opts)
    return { teamId = team_id(F, opts), accounts = account_list(F, opts) }
  end },
  -- nim:leaveTeam{teamId=, done=} -> done(err, {team=, msg=})
  leaveTeam = { kind = "opts", cmd = "leaveTeam", keys = { "teamId" }, args = function(F, opts)
    return { teamId = team_id(F, opts) }
  end },

  -- nim:getHistoryMsgs{scene=, to=, beginTime=0, endTime=0 (no bound), lastMsgId=?,
  --   limit=100, reverse=false, done=} -> done(err, {msgs = {...}}): the server's
  -- messages of one session, newest first (oldest first when reverse), stored
  -- locally; they never change a session's unread.
  getHistoryMsgs = { kind = "opts", cmd = "getHistoryMsgs", query = true,
                     keys = { "scene", "to", "beginTime", "endTime", "lastMsgId", "limit", "reverse" }, args = function(F, opts)
    local args = {
      scene = check.wire_scene(F, "scene", opts.scene),
      to = check.str(F, opts, "to", true, 64),
      beginTime = check.int(F, opts, "beginTime", 0, 0),
      endTime = check.int(F, opts, "endTime", 0, 0),
      limit = check.int(F, opts, "limit", 100, 1),
      reverse = check.bool(F, opts, "reverse", false),
    }
    if args.limit > 100 then argerror(F, "limit", "at most 100 expected, got " .. args.limit) end
    if args.endTime > 0 and args.beginTime > args.endTime then
      argerror(F, "beginTime", "not after endTime expected (" .. args.beginTime .. " > " .. args.endTime .. ")")
    end
    local last = opts.lastMsgId
    if last ~= nil then
      if type(last) ~= "string" or #last > 16 or not last:match("^[1-9]%d*$") then
        argerror(F, "lastMsgId", "an idServer string expected, got " .. (type(last) == "string" and "'" .. last .. "'" or type(last)))
      end
      args.lastMsgId = last
    end
    return args
  end },

  -- nim:disconnect([done]): closes the connection and stops reconnecting.
  disconnect = { kind = "none", cmd = "disconnect" },
  -- nim:connect([done]): connects again after disconnect() or a give-up.
  connect = { kind = "none", cmd = "connect" },
}
