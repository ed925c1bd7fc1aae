-- Shared spec helpers.
local H = {}

-- The interpreter under test (make sets NIM_LUA): specs start it, never another.
H.LUA = os.getenv("NIM_LUA") or "lua5.4"
-- The SDK's own stand-ins for 5.3+ functions, on every interpreter.
local compat = require "nim.compat"
H.math_type, H.pack, H.unpack = compat.math_type, compat.pack, compat.unpack

function H.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Deep copy of plain data (tables, scalars); keeps no identity.
function H.deepcopy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[H.deepcopy(k)] = H.deepcopy(x) end
  return c
end

-- The whole file at path (raises when it cannot be read).
function H.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Decodes a JSON file with lua-cjson: JSON null becomes nil, integral
-- numbers become Lua integers (session times are integers).
function H.read_json(path)
  local cjson = require "cjson"
  local text = H.read(path)
  local function fix(v)
    if v == cjson.null then return nil end
    if type(v) == "number" then return compat.tointeger(v) or v end
    if type(v) == "table" then
      local t = {}
      for k, x in pairs(v) do t[k] = fix(x) end
      return t
    end
    return v
  end
  return fix(cjson.decode(text))
end

---------------------------------------------------------------- instances
-- (engine specs) Temporary data directories, instances that record their
-- callbacks, and waiting for callbacks by pumping nim:poll -- never by
-- sleeping: every wait ends as soon as the expected callback has run.

-- A fresh directory name under /tmp (created by the engine when used).
function H.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".d"
end

function H.rmdir(dir)
  assert(dir:match("^/tmp/"), "refusing to remove " .. dir)
  os.execute("rm -rf '" .. dir .. "'")
end

-- The one waiting loop of the specs: pumps poll on the instances that
-- instances() returns until cond() is true; fails after timeout seconds
-- (default 5) at the caller's caller, or when no instance is left.
function H.pump(instances, cond, timeout, what, single_ms)
  local wall = os.time() + (timeout or 5) + 1   -- wall clock: poll waits cost no CPU
  while not cond() do
    if os.time() > wall then error("timed out waiting for " .. (what or "a condition"), 3) end
    local list = instances()
    if #list == 0 then error("no instance to wait on for " .. (what or "a condition"), 3) end
    for _, n in ipairs(list) do n:poll(#list == 1 and single_ms or 1) end
  end
end

-- Pumps poll on every instance of nims (one or a list) until cond() is
-- true; fails after timeout seconds (default 5).
function H.wait_until(nims, cond, timeout, what)
  if type(nims) ~= "table" then nims = { nims } end
  H.pump(function() return nims end, cond, timeout, what, 20)
end

-- The one request-and-wait of the specs: start(done) makes the request,
-- wait(cond, timeout, what) pumps until done has run; returns its (err, obj).
function H.await(wait, what, timeout, start)
  local got
  start(function(err, obj) got = { err, obj } end)
  wait(function() return got ~= nil end, timeout or 10, what)
  return got[1], got[2]
end

-- nim[method](nim, opts + done) with wait; returns done's (err, obj).
function H.call_with(wait, nim, method, opts, timeout)
  opts = opts or {}
  return H.await(wait, method .. " done", timeout, function(done)
    opts.done = done
    nim[method](nim, opts)
  end)
end

-- nim[method](nim, ..., done) (positional arguments, done last) with wait.
function H.callp_with(wait, nim, method, ...)
  local args = compat.pack(...)
  return H.await(wait, method .. " done", 10, function(done)
    args[args.n + 1] = done
    nim[method](nim, compat.unpack(args, 1, args.n + 1))
  end)
end

local function wait_on(nim)
  return function(cond, timeout, what) H.wait_until(nim, cond, timeout, what) end
end

-- Calls nim[method](nim, opts with done) and pumps until done has run;
-- returns done's (err, obj).
function H.call(nim, method, opts) return H.call_with(wait_on(nim), nim, method, opts) end

-- For methods taking positional arguments and done last.
function H.callp(nim, method, ...) return H.callp_with(wait_on(nim), nim, method, ...) end

-- Opens an instance whose callbacks append to rec: rec.sessions (lists),
-- rec.syncdone (count), rec.updates (sessions, in order), rec.errors.
-- opts are merged over {account = "alice", dataDir = dir}. Waits for
-- onsyncdone unless opts.nowait.
function H.open(dir, opts)
  local NIM = require "nim"
  local rec = { sessions = {}, syncdone = 0, updates = {}, errors = {}, order = {} }
  local o = {
    account = "alice", dataDir = dir,
    onsessions = function(list) rec.sessions[#rec.sessions + 1] = list; rec.order[#rec.order + 1] = "sessions" end,
    onsyncdone = function() rec.syncdone = rec.syncdone + 1; rec.order[#rec.order + 1] = "syncdone" end,
    onupdatesession = function(s) rec.updates[#rec.updates + 1] = s end,
    onerror = function(e) rec.errors[#rec.errors + 1] = e end,
  }
  local nowait = opts and opts.nowait
  for k, v in pairs(opts or {}) do
    if k ~= "nowait" then o[k] = v end
    if v == false and k:match("^on") then o[k] = nil end   -- false: leave the callback out
  end
  local nim = NIM.getInstance(o)
  if not nowait then H.wait_until(nim, function() return rec.syncdone > 0 end, 10, "onsyncdone") end
  return nim, rec
end

-- Destroys nim and pumps until its destroy done ran.
function H.close(nim)
  if nim:_state() == "destroyed" then return end
  local closed = false
  nim:destroy(function() closed = true end)
  H.wait_until(nim, function() return closed end, 10, "destroy done")
end

-- A message from peer to me (or from me when from == me).
function H.msg(from, to, time, id, extra)
  local m = { scene = "p2p", from = from, to = to, time = time, idServer = id, type = "text", text = "m" .. tostring(id) }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

-- Every session through getLocalSessions pages of `limit`.
function H.all_sessions(nim, limit, reverse)
  local out, last = {}, nil
  repeat
    local err, obj = H.call(nim, "getLocalSessions", { lastSessionId = last, limit = limit, reverse = reverse })
    assert(err == nil, tostring(err))
    for _, s in ipairs(obj.sessions) do out[#out + 1] = s end
    last = #obj.sessions > 0 and obj.sessions[#obj.sessions].id or nil
  until #obj.sessions < limit
  return out
end

return H
