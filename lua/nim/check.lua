-- nim.check: the argument checkers of the Lua layer. Each one raises a
-- programmer error "<fname>: bad argument '<param>' (<why>)" at the
-- caller's line (the first stack level outside the files that registered
-- themselves with M.internal()), or returns the checked value.
local M = {}

local type, error, getmetatable, tostring = type, error, getmetatable, tostring
local compat = require "nim.compat"
local math_type, tointeger = compat.math_type, compat.tointeger
local getinfo = debug.getinfo
local INTERNAL = { [getinfo(1, "S").source] = true }
-- the binding's argument errors (nim_argerror) skip these frames too
debug.getregistry()["nim.internal"] = INTERNAL

-- Registers the calling file as part of the SDK, so argerror skips it.
function M.internal()
  INTERNAL[getinfo(2, "S").source] = true
end

-- Raises msg at the caller: the first Lua frame outside the SDK's files,
-- past C frames (pcall) and what a tail call left (5.1's "(tail call)"
-- frames), as the binding's nim_argerror does.
function M.fail(msg)
  local level = 2
  while true do
    local info = getinfo(level, "Sl")
    if not info then return error(msg, 0) end
    if not INTERNAL[info.source] and info.currentline > 0 then break end
    level = level + 1
  end
  error(msg, level)
end
local fail = M.fail

function M.argerror(fname, param, why)
  fail(fname .. ": bad argument '" .. param .. "' (" .. why .. ")")
end
local argerror = M.argerror

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

-- The known name closest to a misspelt one (edit distance <= 2, any case).
local function suggest(name, known)
  local best, bestd = nil, 3
  for k in pairs(known) do
    local d = distance(name:lower(), k:lower())
    if d < bestd or (d == bestd and best and k < best) then best, bestd = k, d end
  end
  return best
end

-- Every key of opts must be in known (a set): a misspelt option would
-- otherwise do the default silently. Raises for the first unknown key in
-- sorted order, suggesting the closest known one.
function M.known(fname, opts, known)
  local bad
  for k in pairs(opts) do
    if not known[k] and (bad == nil or tostring(k) < tostring(bad)) then bad = k end
  end
  if bad == nil then return end
  local hint = type(bad) == "string" and suggest(bad, known)
  argerror(fname, tostring(bad), "unknown option" .. (hint and (", did you mean '" .. hint .. "'?") or ""))
end

function M.callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end
local callable = M.callable

-- self must be an open instance; raises at the method's caller.
function M.self_open(self, fname)
  if self == nil or type(self) ~= "userdata" or not self._state then
    error(fname .. ": call it as a method (nim:" .. fname .. "(...))", 3)
  end
  if self:_state() ~= "open" then error("attempt to use a destroyed nim instance", 3) end
  return self
end

function M.opts(fname, opts)
  if type(opts) ~= "table" then argerror(fname, "options", "table expected, got " .. type(opts)) end
  return opts
end

-- A callable or nil, under the name param.
function M.fn(fname, param, v)
  if v ~= nil and not callable(v) then argerror(fname, param, "callable expected, got " .. type(v)) end
  return v
end

-- opts.done: a callable or nil.
function M.done(fname, opts) return M.fn(fname, "done", opts.done) end

-- opts[key]: a string (non-empty when required; at most maxlen bytes).
function M.str(fname, opts, key, required, maxlen)
  local v = opts[key]
  if v == nil then
    if required then argerror(fname, key, "string expected, got nil") end
    return nil
  end
  if type(v) ~= "string" then argerror(fname, key, "string expected, got " .. type(v)) end
  if required and v == "" then argerror(fname, key, "non-empty string expected") end
  if maxlen and #v > maxlen then argerror(fname, key, "at most " .. maxlen .. " bytes expected, got " .. #v) end
  return v
end

-- opts[key]: a boolean, or default when absent.
function M.bool(fname, opts, key, default)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "boolean" then argerror(fname, key, "boolean expected, got " .. type(v)) end
  return v
end

-- opts[key]: an integer (an integral float is taken) >= min, or default.
function M.int(fname, opts, key, default, min)
  local v = opts[key]
  if v == nil then return default end
  local i = math_type(v) == "float" and tointeger(v) or v
  if math_type(i) ~= "integer" then
    argerror(fname, key, "integer expected, got " .. (type(v) == "number" and tostring(v) or type(v)))
  end
  if min and i < min then argerror(fname, key, "integer >= " .. min .. " expected, got " .. i) end
  return i
end

local SCENES = { p2p = true, team = true, superTeam = true }
-- Only these two scenes exist on the server (docs/protocol.md).
local WIRE_SCENES = { p2p = true, team = true }

function M.scene(fname, key, scene)
  if type(scene) ~= "string" then argerror(fname, key, "string expected, got " .. type(scene)) end
  if not SCENES[scene] then
    argerror(fname, key, "unknown scene '" .. scene .. "' (p2p, team or superTeam)")
  end
  return scene
end

-- A scene the server knows.
function M.wire_scene(fname, key, scene)
  if type(scene) ~= "string" then argerror(fname, key, "string expected, got " .. type(scene)) end
  if not WIRE_SCENES[scene] then
    argerror(fname, key, "scene '" .. scene .. "' cannot be sent to the server (p2p or team)")
  end
  return scene
end

-- A session id "scene-to" with a non-empty to and a known scene (one the
-- server knows when wire).
local function session_id(fname, key, id, wire)
  if type(id) ~= "string" then argerror(fname, key, "session id string expected, got " .. type(id)) end
  local scene, to = id:match("^([^-]+)%-(.+)$")
  if not scene then argerror(fname, key, "session id 'scene-to' expected, got '" .. id .. "'") end
  if wire then
    M.wire_scene(fname, key, scene)
  elseif not SCENES[scene] then
    argerror(fname, key, "unknown scene '" .. scene .. "' in session id '" .. id .. "'")
  end
  return id
end

function M.id(fname, key, id) return session_id(fname, key, id, false) end
function M.wire_id(fname, key, id) return session_id(fname, key, id, true) end

-- An array of session ids (or one id, when allow_string), as an array.
function M.ids(fname, key, ids, allow_string)
  if allow_string and type(ids) == "string" then return { M.id(fname, key, ids) } end
  if type(ids) ~= "table" then
    argerror(fname, key, (allow_string and "string or " or "") .. "array of session ids expected, got " .. type(ids))
  end
  local out = {}
  for i = 1, #ids do out[i] = M.id(fname, key .. "[" .. i .. "]", ids[i]) end
  return out
end

return M
