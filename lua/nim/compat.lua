-- nim.compat: the few Lua 5.2-5.4 functions the SDK's Lua files use, for
-- Lua 5.1 and LuaJIT 2.1 (on 5.4, the standard ones). Returned as a table:
-- nothing global is touched, so a host (LÖVE, Defold) sees its own Lua.
local M = {}

local type, floor, select = type, math.floor, select

M.pack = table.pack or function(...) return { n = select("#", ...), ... } end
M.unpack = table.unpack or unpack

-- math.type / math.tointeger: on 5.1 every number is a float, and an
-- integral one in the int64 range counts as an integer.
local function integral(v)
  return type(v) == "number" and v == floor(v) and v >= -2 ^ 63 and v < 2 ^ 63
end
M.math_type = math.type or function(v)
  if type(v) ~= "number" then return nil end
  return integral(v) and "integer" or "float"
end
M.tointeger = math.tointeger or function(v)
  if integral(v) then return v end
  return nil
end

-- coroutine.running as 5.4 has it: the coroutine, and true in the main one.
local running = coroutine.running
if select("#", running()) == 2 then
  M.running = running
else
  M.running = function()
    local co = running()
    return co, co == nil
  end
end
M.isyieldable = coroutine.isyieldable or function() return running() ~= nil end

-- os.execute's success: 5.1 returns the status, 5.2+ true/nil, "exit", code.
function M.execute_ok(cmd)
  local r = os.execute(cmd)
  if type(r) == "number" then return r == 0 end
  return r == true
end

-- A finaliser for a table (5.1 and LuaJIT run __gc on userdata only): on
-- 5.4 the metatable's __gc; elsewhere a proxy kept in obj[key] runs fn(obj).
function M.setgc(obj, key, fn)
  if newproxy then
    local p = newproxy(true)
    getmetatable(p).__gc = function() fn(obj) end
    obj[key] = p
  end
  return obj
end

return M
