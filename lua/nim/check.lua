-- nim.check: argument checks shared by the Lua layer (nim.instance, nim.net).
-- Programmer errors raise "<fname>: bad argument '<param>' (<why>)" at the
-- caller's line: the first stack level outside the files that registered
-- themselves with M.internal().
local M = {}

local type, error, getmetatable = type, error, getmetatable
local getinfo = debug.getinfo
local INTERNAL = { [getinfo(1, "S").source] = true }

-- Registers the calling file as part of the SDK, so argerror skips it.
function M.internal()
  INTERNAL[getinfo(2, "S").source] = true
end

function M.argerror(fname, param, why)
  local level = 2
  while true do
    local info = getinfo(level, "S")
    if not info or not INTERNAL[info.source] then break end
    level = level + 1
  end
  error(fname .. ": bad argument '" .. param .. "' (" .. why .. ")", level)
end

function M.callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

-- self must be an open instance; raises at the method's caller.
function M.check_self(self, fname)
  if self == nil or type(self) ~= "userdata" or not self._state then
    error(fname .. ": call it as a method (nim:" .. fname .. "(...))", 3)
  end
  if self:_state() ~= "open" then error("attempt to use a destroyed nim instance", 3) end
end

function M.opts_table(fname, opts)
  if type(opts) ~= "table" then M.argerror(fname, "options", "table expected, got " .. type(opts)) end
  return opts
end

function M.opt_done(fname, opts)
  local done = opts.done
  if done ~= nil and not M.callable(done) then
    M.argerror(fname, "done", "callable expected, got " .. type(done))
  end
  return done
end

return M
