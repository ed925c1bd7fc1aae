-- Helpers for the network specs (spec/net_*_spec.lua): the real nim-server
-- (NIM_SERVER, started per describe block through nim.server), instances
-- that record every callback, and waits that pump every instance's poll
-- until the expected callback arrived -- never a sleep.
local H = require "helpers"
local S = require "nim.server"

local N = {}

N.token = function(account) return account .. "-token" end

-- With NIM_TEST_PG (the socket folder of a throwaway PostgreSQL cluster,
-- spec/pg_cluster.sh), every server started here gets a database of its
-- own on it instead of a SQLite file.
N.pg = os.getenv("NIM_TEST_PG")
local pg_count = 0
function N.pg_database()
  pg_count = pg_count + 1
  local name = ("t%d_%d_%d"):format(os.time(), math.random(1, 1e9), pg_count)
  local ok = os.execute(("psql -q -X -h %s -U nim -d postgres -c 'CREATE DATABASE %s' >/dev/null"):format(
    H.shell_quote(N.pg), name))
  assert(ok == true or ok == 0, "cannot create a PostgreSQL database on " .. N.pg)
  return ("postgresql:///%s?host=%s&user=nim"):format(name, N.pg)
end

-- Starts nim-server on a free loopback port with accounts registered.
function N.start(accounts, opts)
  local reg = {}
  for _, a in ipairs(accounts) do reg[a] = N.token(a) end
  opts = opts or {}
  opts.accounts = reg
  -- the specs log in hundreds of times: 1,000 PBKDF2 iterations, not the
  -- default 600,000 (0.2 s each); spec/net_auth_spec.lua tests the default
  opts.kdfIterations = opts.kdfIterations or 1000
  -- and send bursts of thousands: no send rate to speak of
  opts.maxSendRate = opts.maxSendRate or 1000000
  if N.pg and opts.db == nil then opts.db = N.pg_database() end
  return S.start(opts)
end

-- Every live instance, so waits pump all of them (a message sent by one is
-- received by another).
N.live = setmetatable({}, { __mode = "k" })

-- Opens account on srv with a fresh database (opts.db overrides; false:
-- in memory). rec records: connects, sessions (lists), syncdone (count),
-- updates (sessions), msgs, roaming, offline (groups), disconnects,
-- reconnects, errors, tops (onStickTopSessions lists), order (names).
-- Waits for onsyncdone unless opts.nowait.
function N.open(srv, account, opts)
  local NIM = require "nim"
  opts = opts or {}
  local rec = { connects = {}, sessions = {}, syncdone = 0, updates = {}, msgs = {}, roaming = {},
                offline = {}, disconnects = {}, reconnects = {}, errors = {}, tops = {}, order = {} }
  local function note(name) rec.order[#rec.order + 1] = name end
  local dir = H.tmpdir()
  local o = {
    account = account, token = N.token(account), server = srv.url, dataDir = dir,
    requestTimeout = 3000, reconnectDelay = 50, maxReconnectDelay = 400,
    onconnect = function(x) rec.connects[#rec.connects + 1] = x; note("connect") end,
    onsessions = function(l) rec.sessions[#rec.sessions + 1] = l; note("sessions") end,
    onsyncdone = function() rec.syncdone = rec.syncdone + 1; note("syncdone") end,
    onupdatesession = function(s) rec.updates[#rec.updates + 1] = s end,
    onmsg = function(m) rec.msgs[#rec.msgs + 1] = m; note("msg") end,
    onroamingmsgs = function(g) rec.roaming[#rec.roaming + 1] = g; note("roaming") end,
    onofflinemsgs = function(g) rec.offline[#rec.offline + 1] = g; note("offline") end,
    ondisconnect = function(d) rec.disconnects[#rec.disconnects + 1] = d; note("disconnect") end,
    onwillreconnect = function(d) rec.reconnects[#rec.reconnects + 1] = d; note("willreconnect") end,
    onerror = function(e) rec.errors[#rec.errors + 1] = e; note("error") end,
    onStickTopSessions = function(l) rec.tops[#rec.tops + 1] = l; note("tops") end,
  }
  for k, v in pairs(opts) do
    if k ~= "nowait" then o[k] = v end
    if v == false and k:match("^on") then o[k] = nil end
  end
  local nim = NIM.getInstance(o)
  rec.dir = dir
  N.live[nim] = rec
  if not opts.nowait then N.wait(function() return rec.syncdone > 0 end, 10, account .. " onsyncdone") end
  return nim, rec
end

local function instances()
  local list = {}
  for nim in pairs(N.live) do
    if nim:_state() ~= "destroyed" then list[#list + 1] = nim end
  end
  return list
end

-- Pumps every live instance until cond() holds; fails after timeout s.
function N.wait(cond, timeout, what)
  H.pump(instances, cond, timeout, what, 10)
end

-- nim[method](nim, opts + done) and wait for done; returns err, obj.
function N.call(nim, method, opts, timeout) return H.call_with(N.wait, nim, method, opts, timeout) end

function N.callp(nim, method, ...) return H.callp_with(N.wait, nim, method, ...) end

-- Sends a text and waits for the server's confirmation.
function N.send(nim, to, text, scene)
  local err, msg = N.call(nim, "sendText", { scene = scene or "p2p", to = to, text = text })
  assert(err == nil, "sendText failed: " .. tostring(err))
  return msg
end

-- The latest onupdatesession of id recorded in rec (or nil).
function N.last_update(rec, id)
  for i = #rec.updates, 1, -1 do
    if rec.updates[i].id == id then return rec.updates[i] end
  end
end

-- Waits until rec saw an update of id for which pred(session) holds.
function N.wait_update(rec, id, pred, what)
  N.wait(function()
    local s = N.last_update(rec, id)
    return s ~= nil and (pred == nil or pred(s))
  end, 10, what or ("an update of " .. id))
  return N.last_update(rec, id)
end

function N.session(nim, id)
  local err, s = N.call(nim, "getLocalSession", { sessionId = id })
  assert(err == nil, tostring(err))
  return s
end

function N.close(nim)
  local rec = N.live[nim]
  if nim:_state() ~= "destroyed" then
    local closed = false
    nim:destroy(function() closed = true end)
    local deadline = os.time() + 11
    while not closed and os.time() <= deadline do nim:poll(10) end
  end
  N.live[nim] = nil
  if rec and rec.dir then H.rmdir(rec.dir) end
end

function N.close_all()
  for nim in pairs(N.live) do N.close(nim) end
  collectgarbage()
end

-- Every stored message of a session, oldest first.
function N.msgs(nim, id)
  local err, obj = N.call(nim, "getLocalMsgs", { sessionId = id, limit = 100000, desc = false })
  assert(err == nil, tostring(err))
  return obj.msgs
end

-- The engine's own recount of unread for every session (no mismatches expected).
function N.verify(nim)
  local err, obj = H.await(N.wait, "verify", 10, function(done) nim:_request("verify", nil, done, "verify") end)
  assert(err == nil, tostring(err))
  return obj
end

return N
