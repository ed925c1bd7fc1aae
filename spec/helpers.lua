-- Shared spec helpers.
local H = {}

-- Deep copy of plain data (tables, scalars); keeps no identity.
function H.deepcopy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[H.deepcopy(k)] = H.deepcopy(x) end
  return c
end

-- Decodes a JSON file with lua-cjson: JSON null becomes nil, integral
-- numbers become Lua integers (session times are integers).
function H.read_json(path)
  local cjson = require "cjson"
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  local function fix(v)
    if v == cjson.null then return nil end
    if type(v) == "number" then return math.tointeger(v) or v end
    if type(v) == "table" then
      local t = {}
      for k, x in pairs(v) do t[k] = fix(x) end
      return t
    end
    return v
  end
  return fix(cjson.decode(text))
end

return H
