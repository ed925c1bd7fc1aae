-- nim.options: getInstance's options (docs/api.md "getInstance"): every
-- name known, every value checked, the defaults filled in. parse returns
-- what core.newInstance takes.
local check = require "nim.check"
check.internal()

local M = {}

local type, error, tostring = type, error, tostring
local callable, argerror = check.callable, check.argerror

-- The callbacks an instance takes, in the order docs/api.md lists them.
M.CALLBACKS = {
  "onconnect", "ondisconnect", "onwillreconnect", "onerror", "onsyncdone",
  "onsessions", "onupdatesession", "onupdatesessions", "onmsg", "onroamingmsgs",
  "onofflinemsgs", "onStickTopSessions",
}

-- Every option getInstance knows (the JS SDK's, docs/api.md, plus the network extras).
local OPTIONS = {
  appKey = true,     -- the JS SDK's app key: taken (so JS init code ports) and unused
  account = true, token = true, server = true, db = true, dataDir = true, deviceId = true,
  syncSessionUnread = true, syncStickTopSessions = true, needReconnect = true,
  tlsCAFile = true, requestTimeout = true, syncTimeout = true, heartbeatInterval = true, reconnectDelay = true, maxReconnectDelay = true,
}
for _, k in ipairs(M.CALLBACKS) do OPTIONS[k] = true end

-- A file name for the account: letters, digits, '.', '_', '@' and '-' kept,
-- everything else (path separators included) as %XX, never a leading '.'.
function M.account_file(account)
  local s = account:gsub("[^%w._@-]", function(c) return ("%%%02X"):format(c:byte()) end)
  if s:sub(1, 1) == "." then s = "%2E" .. s:sub(2) end
  return s .. ".db"
end

local F = "getInstance"
local function bad(param, why) argerror(F, param, why) end

local MAX_SERVERS = 16     -- NIM_NET_MAX_SERVERS (net/client.h)

local function check_url(param, url)
  if type(url) ~= "string" or not (url:match("^ws://[^/:]+") or url:match("^wss://[^/:]+")) then
    bad(param, "'ws://host:port' or 'wss://host:port' expected, got " ..
      (type(url) == "string" and ("'" .. url .. "'") or type(url)))
  end
  return url
end

-- server: one URL, or a list tried in turn (the next after each failure);
-- always a list for the binding.
local function server_list(server)
  if type(server) ~= "table" then return { check_url("server", server) } end
  local n = #server
  if n == 0 then bad("server", "a URL or a non-empty list of URLs expected, got an empty table") end
  if n > MAX_SERVERS then bad("server", "at most " .. MAX_SERVERS .. " servers, got " .. n) end
  local list = {}
  for k in pairs(server) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then
      bad("server", "a list of URLs expected, got the key " .. tostring(k))
    end
  end
  for i = 1, n do list[i] = check_url("server[" .. i .. "]", server[i]) end
  return list
end

-- Network mode (csrc/net): server and token, the rest optional.
local function net_options(opts)
  if opts.server == nil then return nil end
  local servers = server_list(opts.server)
  local ca = opts.tlsCAFile
  if ca ~= nil then
    if type(ca) ~= "string" or ca == "" then bad("tlsCAFile", "file name expected, got " .. type(ca)) end
    local wss = false
    for _, url in ipairs(servers) do wss = wss or url:match("^wss://") ~= nil end
    if not wss then bad("tlsCAFile", "only for a wss:// server") end
    local f, why = io.open(ca, "r")
    if not f then bad("tlsCAFile", "cannot read " .. why) end
    local pem = f:read(1048576) or ""
    f:close()
    if not pem:find("-----BEGIN CERTIFICATE-----", 1, true) then
      bad("tlsCAFile", "no PEM certificate (-----BEGIN CERTIFICATE-----) in " .. ca)
    end
  end
  if type(opts.token) ~= "string" or opts.token == "" then
    bad("token", "non-empty string expected with server, got " .. type(opts.token))
  end
  if opts.deviceId ~= nil and (type(opts.deviceId) ~= "string" or opts.deviceId == "") then
    bad("deviceId", "non-empty string expected, got " .. type(opts.deviceId))
  end
  return {
    servers = servers, token = opts.token, deviceId = opts.deviceId, tlsCAFile = ca,
    needReconnect = opts.needReconnect, syncSessionUnread = opts.syncSessionUnread,
    syncStickTopSessions = opts.syncStickTopSessions,
    requestTimeout = opts.requestTimeout, syncTimeout = opts.syncTimeout,
    heartbeatInterval = opts.heartbeatInterval,
    reconnectDelay = opts.reconnectDelay, maxReconnectDelay = opts.maxReconnectDelay,
  }
end

-- The database file: db = true (default) is dataDir/<account>.db, a string
-- is the file, false is in memory (nil).
local function db_path(opts, account)
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
  if db == true then return dataDir:gsub("/+$", "") .. "/" .. M.account_file(account) end
  if type(db) == "string" then return db end
  return nil
end

-- getInstance's options -> {account=, dbPath=, callbacks=, net=}, or a
-- programmer error at the caller of getInstance.
function M.parse(opts)
  if type(opts) ~= "table" then
    error(F .. ": bad argument 'options' (table expected, got " .. type(opts) .. ")", 3)
  end
  check.known(F, opts, OPTIONS)            -- a typo in a callback name would fail silently
  if opts.appKey ~= nil and type(opts.appKey) ~= "string" then
    bad("appKey", "string expected, got " .. type(opts.appKey))
  end
  local account = opts.account
  if type(account) ~= "string" or account == "" then
    bad("account", "non-empty string expected, got " .. (account == "" and "''" or type(account)))
  end
  local net = net_options(opts)
  local dbPath = db_path(opts, account)
  for _, k in ipairs { "syncSessionUnread", "syncStickTopSessions", "needReconnect" } do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      bad(k, "boolean expected, got " .. type(opts[k]))
    end
  end
  local callbacks = {}
  for _, k in ipairs(M.CALLBACKS) do
    local cb = opts[k]
    if cb ~= nil then
      if not callable(cb) then bad(k, "callable expected, got " .. type(cb)) end
      callbacks[k] = cb
    end
  end
  return { account = account, dbPath = dbPath, callbacks = callbacks, net = net }
end

return M
