-- Every example in the docs runs as a test, so the docs cannot rot.
--
-- Each ```lua block of docs/api.md (and of README.md) runs as its own Lua
-- process, in a fresh temporary directory (so the default dataDir
-- ./nim-data is new each time), under `timeout`, with:
--   NIM     = require "nim"
--   server  = the url of a fresh nim-server with accounts alice (token "a"),
--             bob ("b") and carol ("c"), for blocks marked <!-- net -->
-- A block fails when it raises (its asserts), exits non-zero, or hangs. A
-- line `print(...)  --> expected` must print `expected` (whitespace
-- collapsed), in order. Line numbers in errors are the doc's own.
--
-- Markers, an HTML comment on the line before the fence:
--   <!-- net -->              needs the server (tagged #net)
--   <!-- not run: reason -->  a signature or a fragment, not a program
local S = require "nim.server"

local LUA = os.getenv("NIM_DOCS_LUA") or "lua5.4"
local TIMEOUT = tonumber(os.getenv("NIM_DOCS_TIMEOUT") or "") or 30

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local CWD = os.getenv("PWD") or io.popen("pwd"):read("l")

-- "./x;y" with every relative entry made absolute (the child runs elsewhere).
local function absolute_paths(p)
  local out = {}
  for entry in (p .. ";"):gmatch("([^;]*);") do
    if entry:sub(1, 2) == "./" then entry = CWD .. entry:sub(2)
    elseif entry ~= "" and entry:sub(1, 1) ~= "/" then entry = CWD .. "/" .. entry end
    out[#out + 1] = entry
  end
  return table.concat(out, ";")
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return CWD .. "/" .. path:gsub("^%./", "")
end

-- The blocks of a markdown file: {line = first code line, code, marker, heading}.
local function blocks(path)
  local list, cur, marker, heading, n = {}, nil, nil, "", 0
  local prev = ""
  for line in (read(path) .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then
        list[#list + 1] = cur
        cur = nil
      else
        cur.code[#cur.code + 1] = line
      end
    elseif line:match("^```lua%s*$") then
      cur = { line = n + 1, code = {}, marker = prev:match("^<!%-%-%s*(.-)%s*%-%->%s*$"), heading = heading }
    else
      if line:match("^#+%s") then heading = line:gsub("^#+%s*", "") end
      if line:match("%S") then prev = line end
    end
  end
  assert(cur == nil, path .. ": an unclosed ```lua block")
  for _, b in ipairs(list) do b.code = table.concat(b.code, "\n") .. "\n" end
  return list
end

-- What `print(...) --> expected` lines promise, in order.
local function expectations(code)
  local out = {}
  for line in code:gmatch("[^\n]+") do
    local want = line:match("^%s*print%(.*%)%s*%-%->%s*(.-)%s*$")
    if want then out[#out + 1] = want end
  end
  return out
end

local function squash(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

local PRELUDE = [[
package.path = os.getenv("NIM_DOCS_PATH")
package.cpath = os.getenv("NIM_DOCS_CPATH")
NIM = require "nim"
server = os.getenv("NIM_DOCS_SERVER")
local f = assert(io.open(os.getenv("NIM_DOCS_BLOCK"), "rb"))
local src = f:read("a")
f:close()
local line = tonumber(os.getenv("NIM_DOCS_LINE"))
local chunk = assert(load(string.rep("\n", line - 1) .. src, "@" .. os.getenv("NIM_DOCS_NAME"), "t"))
chunk()
io.stdout:flush()
os.exit(0, true)
]]

-- Runs one block; returns ok, output.
local function run_block(name, b, server_url)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. shell_quote(dir)))
  write(dir .. "/prelude.lua", PRELUDE)
  write(dir .. "/block.lua", b.code)
  local env = {
    NIM_DOCS_PATH = absolute_paths(package.path),
    NIM_DOCS_CPATH = absolute_paths(package.cpath),
    NIM_DOCS_BLOCK = dir .. "/block.lua",
    NIM_DOCS_LINE = b.line,
    NIM_DOCS_NAME = name,
    NIM_DOCS_SERVER = server_url or "",
    NIM_SERVER = absolute(S.find_binary()),
  }
  local assigns = {}
  for k, v in pairs(env) do assigns[#assigns + 1] = k .. "=" .. shell_quote(v) end
  table.sort(assigns)
  local cmd = ("cd %s && mkdir work && cd work && env %s timeout -k 5 %d %s ../prelude.lua 2>&1; echo \"exit=$?\""):format(
    shell_quote(dir), table.concat(assigns, " "), TIMEOUT, shell_quote(LUA))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  os.execute("rm -rf " .. shell_quote(dir))
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  out = out:gsub("exit=%d+%s*$", "")
  if code == 124 or code == 137 then return false, out .. "\n(timed out after " .. TIMEOUT .. " s)" end
  if code ~= 0 then return false, out .. "\n(exit status " .. tostring(code) .. ")" end
  -- print(...) --> expected: each one, in order, among the printed lines
  local printed = {}
  for l in out:gmatch("[^\n]+") do printed[#printed + 1] = squash(l) end
  local i = 1
  for _, want in ipairs(expectations(b.code)) do
    want = squash(want)
    while i <= #printed and printed[i] ~= want do i = i + 1 end
    if i > #printed then return false, out .. "\n(expected a printed line '" .. want .. "')" end
    i = i + 1
  end
  return true, out
end

local function title(file, b)
  local first = b.code:match("^%s*%-%-%s*([^\n]+)") or b.heading
  return ("%s:%d %s"):format(file, b.line, first)
end

local function run_file(file, opts)
  local list = blocks(file)
  local net, plain, skipped = {}, {}, {}
  for _, b in ipairs(list) do
    local m = b.marker or ""
    if m:match("^not run") then skipped[#skipped + 1] = b
    elseif m == "net" or (opts.net_if and opts.net_if(b)) then net[#net + 1] = b
    else plain[#plain + 1] = b end
  end

  describe(file .. " examples #docs", function()
    it("has examples", function() assert.is_true(#list > 0) end)
    for _, b in ipairs(plain) do
      local skip = opts.skip and opts.skip(b)
      if skip then
        pending(title(file, b) .. " (" .. skip .. ")")
      else
        it(title(file, b), function()
          local ok, out = run_block(file, b, nil)
          assert(ok, "\n" .. out)
        end)
      end
    end
    for _, b in ipairs(skipped) do
      pending(title(file, b) .. " (" .. b.marker .. ")")
    end
  end)

  if #net > 0 then
    describe(file .. " network examples #docs #net", function()
      for _, b in ipairs(net) do
        it(title(file, b), function()
          local srv = S.start { accounts = { alice = "a", bob = "b", carol = "c" }, kdfIterations = 1000, maxSendRate = 1000000 }
          local ok, out = run_block(file, b, srv.url)
          srv:cleanup()
          assert(ok, "\n" .. out)
        end)
      end
    end)
  end
  return #list, #skipped
end

run_file("docs/api.md", {})

-- Nothing the code offers is left out of docs/api.md.
describe("docs/api.md completeness #docs", function()
  local api = read("docs/api.md")
  local function documented(name) return api:find(name, 1, true) ~= nil end
  local function missing(names)
    local out = {}
    for _, n in ipairs(names) do if not documented(n) then out[#out + 1] = n end end
    table.sort(out)
    return out
  end

  it("documents every NIM field and every public instance method", function()
    local NIM = require "nim"
    local names = {}
    for k in pairs(NIM) do names[#names + 1] = "NIM." .. k end
    for k in pairs(require("nim.core").Instance) do
      if not k:match("^_") then names[#names + 1] = "nim:" .. k end
    end
    assert.same({}, missing(names))
  end)

  it("documents every getInstance option and callback, and every method option", function()
    local src = read("lua/nim/instance.lua") .. read("lua/nim/net.lua") .. read("lua/nim/options.lua")
    local names = {}
    for k in src:gmatch("opts%.([%a_]+)") do names[#names + 1] = "`" .. k end
    for k in src:gmatch('check%.%a+%(F, opts, "([%a_]+)"') do names[#names + 1] = k end
    for k in read("lua/nim/options.lua"):match("CALLBACKS = (%b{})"):gmatch('"([%a_]+)"') do
      names[#names + 1] = "`" .. k
    end
    assert.is_true(#names > 30)
    assert.same({}, missing(names))
  end)

  it("documents nim.server", function()
    local names = {}
    for k in pairs(S) do names[#names + 1] = "S." .. k end
    local srv = S.start {}
    for k, v in pairs(getmetatable(srv).__index) do
      if type(v) == "function" and not k:match("^_") then names[#names + 1] = "server:" .. k end
    end
    for k in pairs(srv) do if not k:match("^_") then names[#names + 1] = "`" .. k .. "`" end end
    srv:cleanup()
    for k in read("lua/nim/server.lua"):gmatch("opts%.([%a_]+)") do names[#names + 1] = k .. "=" end
    assert.same({}, missing(names))
  end)

  it("documents every error code the C code can give", function()
    local names = {}
    for _, f in ipairs { "csrc/core/engine.h", "csrc/net/client.h" } do
      for code in read(f):gmatch('#define NIM_ERR_[%u_]+%s+"([%w_]+)"') do names[#names + 1] = '`"' .. code .. '"`' end
    end
    assert.is_true(#names >= 8)
    assert.same({}, missing(names))
  end)
end)
-- README.md is the lead's; its blocks run as they are (no markers there).
run_file("README.md", {})
