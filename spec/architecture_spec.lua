-- docs/architecture.md is the map a maintainer reads first: every source
-- file must appear in its file map, and every file it names must exist.
local H = require "helpers"
local function sources()
  local out = {}
  local p = assert(io.popen("git ls-files 'csrc/*.c' 'csrc/*.h' 'lua/nim/*.lua' 2>/dev/null"))
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

describe("docs/architecture.md", function()
  local f = assert(io.open("docs/architecture.md", "rb"))
  local doc = f:read("*a")
  f:close()

  it("names every source file in its file map", function()
    local files = sources()
    assert.is_true(#files > 20, "git ls-files found the sources")
    local missing = {}
    for _, path in ipairs(files) do
      local base = path:match("[^/]+$")
      if not doc:find("`" .. base .. "`", 1, true) then missing[#missing + 1] = path end
    end
    assert.same({}, missing)
  end)

  it("names only files that exist", function()
    local gone, dir, seen = {}, nil, 0
    for line in doc:gmatch("[^\n]+") do
      if line:match("^## ") then dir = nil end
      dir = line:match("^### `([%w/]+)`") or dir
      local cell = dir and line:match("^| (`[^|]+) |")
      for name in (cell or ""):gmatch("`([%w_]+%.%a+)`") do
        seen = seen + 1
        local f = io.open(dir .. "/" .. name)
        if f then f:close() else gone[#gone + 1] = dir .. "/" .. name end
      end
    end
    assert.is_true(seen > 20, "the file map's tables were read")
    assert.same({}, gone)
  end)
end)

describe("the Lua layer", function()
  -- The instance methods, as a fresh interpreter sees them after requiring
  -- the modules in this order.
  local function methods_after(mods)
    local code = ""
    for _, m in ipairs(mods) do code = code .. ("require %q;"):format(m) end
    code = code .. [[
      local names = {}
      for k in pairs(require("nim.core").Instance) do names[#names + 1] = k end
      table.sort(names)
      io.write(table.concat(names, " "))]]
    local p = assert(io.popen(H.LUA .. " -e '" .. code .. "'"))
    local out = p:read("*a")
    p:close()
    return out
  end

  it("has the same methods whatever is required first", function()
    local plain = methods_after { "nim" }
    assert.matches("sendText", plain)
    assert.matches("deleteLocalSession", plain)
    assert.equal(plain, methods_after { "nim.net", "nim.coroutine", "nim.options", "nim" })
    assert.equal(plain, methods_after { "nim.instance" })
  end)

  it("changes nothing by requiring a module of rows or checks alone", function()
    local bare = methods_after {}
    assert.equal(bare, methods_after { "nim.net", "nim.check", "nim.options", "nim.coroutine" })
    assert.not_matches("sendText", bare)
  end)
end)

describe("nim-server's arrows", function()
  -- transport (ws.c) -> request side -> storage; back only through srv.io
  local objdir = (os.getenv("NIM_SERVER") or "./build/nim-server"):gsub("/nim%-server$", "") .. "/obj/csrc/server"
  local function symbols(obj, flag)
    local p = assert(io.popen("nm " .. flag .. " " .. obj .. " 2>/dev/null"))
    local out = {}
    for line in p:lines() do
      local name = line:match("%s(%S+)$")
      if name then out[#out + 1] = name end
    end
    p:close()
    return out
  end
  it("only ws.c refers to lws, and nothing calls into ws.c but through srv.io", function()
    local p = assert(io.popen("ls " .. objdir .. "/*.o 2>/dev/null"))
    local objs = {}
    for f in p:lines() do objs[#objs + 1] = f end
    p:close()
    assert.is_true(#objs > 10, "the server's objects in " .. objdir)
    local ws_defined = {}
    for _, name in ipairs(symbols(objdir .. "/ws.o", "--defined-only -g")) do ws_defined[name] = true end
    assert.is_true(ws_defined.srv_ws_open and ws_defined.srv, "ws.o defines the transport")
    local wrong = {}
    for _, obj in ipairs(objs) do
      local base = obj:match("([^/]+)%.o$")
      if base ~= "ws" then
        for _, name in ipairs(symbols(obj, "-u")) do
          local into_ws = ws_defined[name] and name ~= "srv" and not (base == "main" and name:match("^srv_ws_"))
          if name:match("^lws_") or into_ws then wrong[#wrong + 1] = base .. ".o: " .. name end
        end
      end
    end
    assert.same({}, wrong)
  end)
end)
