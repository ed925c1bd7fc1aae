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
--   <!-- lua5.4 -->           5.4 syntax (<close>): run under lua5.4 only
local S = require "nim.server"
local H = require "helpers"

local LUA = os.getenv("NIM_DOCS_LUA") or os.getenv("NIM_LUA") or "lua5.4"
local TIMEOUT = tonumber(os.getenv("NIM_DOCS_TIMEOUT") or "") or 30

local shell_quote = H.shell_quote

local read = H.read

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local CWD = os.getenv("PWD") or io.popen("pwd"):read("*l")

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
local src = f:read("*a")
f:close()
local line = tonumber(os.getenv("NIM_DOCS_LINE"))
local chunk = assert((loadstring or load)(string.rep("\n", line - 1) .. src, "@" .. os.getenv("NIM_DOCS_NAME")))
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
  local out = p:read("*a")
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
    elseif m == "lua5.4" and LUA ~= "lua5.4" then
      b.marker = "not run: Lua 5.4 syntax, under " .. LUA
      skipped[#skipped + 1] = b
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

-- docs/api.md's layout (the comment at its top says it to its editors):
-- every function, method, option and callback of the code has a heading of
-- its own, the index at the top links every heading, every #anchor is a
-- heading's, and it names no file outside the repository.
describe("docs/api.md structure #docs", function()
  local api = read("docs/api.md")

  -- The headings outside fenced code, each {level, title, text (without
  -- backticks), line, anchor}. The anchor is GitHub's: lowercased, all but
  -- letters, digits, '_', '-' and spaces dropped, each space made '-'; a
  -- second heading of the same anchor gets "-1", a third "-2", ...
  local function headings(s)
    local list, seen, fence, n = {}, {}, false, 0
    for line in (s .. "\n"):gmatch("([^\n]*)\n") do
      n = n + 1
      if line:match("^%s*```") then
        fence = not fence
      elseif not fence then
        local hashes, title = line:match("^(#+)%s+(.-)%s*$")
        if hashes then
          local base = title:lower():gsub("[^%w_%- ]", ""):gsub(" ", "-")
          local k = seen[base] or 0
          seen[base] = k + 1
          list[#list + 1] = { level = #hashes, title = title, text = (title:gsub("`", "")), line = n,
                              anchor = k == 0 and base or (base .. "-" .. k) }
        end
      end
    end
    return list
  end
  local heads = headings(api)

  -- The text of heading h's section: up to the next heading of its level or above.
  local function section(h)
    local lines, first, last = {}, h.line, math.huge
    for _, o in ipairs(heads) do
      if o.line > h.line and o.level <= h.level then last = o.line - 1 break end
    end
    local n = 0
    for line in (api .. "\n"):gmatch("([^\n]*)\n") do
      n = n + 1
      if n > first and n <= last then lines[#lines + 1] = line end
    end
    return table.concat(lines, "\n"), first, last
  end

  -- A heading "of its own": its text is the name, or the name then a
  -- character that cannot continue it ("nim:poll([timeout_ms])").
  local function names_it(h, name)
    return h.text == name or (h.text:sub(1, #name) == name and h.text:sub(#name + 1, #name + 1):match("[^%w_]") ~= nil)
  end
  local function find_heading(name, level, from, to)
    for _, h in ipairs(heads) do
      if h.level == level and h.line >= (from or 0) and h.line <= (to or math.huge) and names_it(h, name) then
        return h
      end
    end
  end
  local function the_heading(level, name)
    local h = find_heading(name, level)
    assert(h, ("docs/api.md: no '%s %s' heading"):format(("#"):rep(level), name))
    return h
  end

  -- What the code offers, enumerated from the code itself.
  local NIM = require "nim"
  local options = require "nim.options"
  local function functions()
    local names = {}
    for k in pairs(NIM) do names[#names + 1] = "NIM." .. k end
    local nim = NIM.getInstance { account = "docs-spec", db = false }
    for k, v in pairs(getmetatable(nim).__index) do
      if type(v) == "function" and not k:match("^_") then names[#names + 1] = "nim:" .. k end
    end
    nim:destroy()
    for k, v in pairs(S) do
      if type(v) == "function" then names[#names + 1] = "S." .. k end
    end
    local srv = S.start {}
    for k, v in pairs(getmetatable(srv).__index) do
      if type(v) == "function" and not k:match("^_") then names[#names + 1] = "server:" .. k end
    end
    srv:cleanup()
    table.sort(names)
    return names
  end
  local function option_names()          -- getInstance's OPTIONS, callbacks left out
    local known
    for i = 1, math.huge do
      local name, v = debug.getupvalue(options.parse, i)
      if name == nil then break end
      if name == "OPTIONS" then known = v end
    end
    assert(type(known) == "table", "nim.options.parse no longer has the OPTIONS table as an upvalue")
    local callbacks, names = {}, {}
    for _, k in ipairs(options.CALLBACKS) do callbacks[k] = true end
    for k in pairs(known) do if not callbacks[k] then names[#names + 1] = k end end
    table.sort(names)
    return names
  end

  it("has a ### heading of its own for every function and method", function()
    local names = functions()
    assert.is_true(#names >= 50)   -- 8 NIM fields, 36 methods, 4 S functions, 4 server methods
    local missing = {}
    for _, name in ipairs(names) do
      if not find_heading(name, 3) then missing[#missing + 1] = "### " .. name end
    end
    assert.same({}, missing)
  end)

  it("has a #### heading under NIM.getInstance for every option", function()
    local names = option_names()
    assert.is_true(#names >= 15)
    local _, from, to = section(the_heading(3, "NIM.getInstance"))
    local missing = {}
    for _, name in ipairs(names) do
      if not find_heading(name, 4, from, to) then missing[#missing + 1] = "#### " .. name end
    end
    assert.same({}, missing)
  end)

  it("has a ### heading under Callbacks for every callback", function()
    local _, from, to = section(the_heading(2, "Callbacks"))
    local missing = {}
    for _, name in ipairs(options.CALLBACKS) do
      if not find_heading(name, 3, from, to) then missing[#missing + 1] = "### " .. name end
    end
    assert.is_true(#options.CALLBACKS >= 12)
    assert.same({}, missing)
  end)

  it("opens with an index that links every heading, and every #link has its heading", function()
    for _, h in ipairs(heads) do     -- the anchors above are computed for ASCII only
      assert.is_nil(h.title:find("[\128-\255]"), "docs/api.md:" .. h.line .. ": keep headings ASCII (their anchors)")
    end
    local index
    for _, h in ipairs(heads) do
      if h.level == 2 then
        assert.equal("Index", h.title, "docs/api.md: the first ## heading must be the Index")
        index = section(h)
        break
      end
    end
    assert(index, "docs/api.md: no ## Index")
    local unlisted = {}
    for _, h in ipairs(heads) do
      if h.level > 1 and h.title ~= "Index" and not index:find("](#" .. h.anchor .. ")", 1, true) then
        unlisted[#unlisted + 1] = ("[%s](#%s)"):format(h.text, h.anchor)
      end
    end
    assert.same({}, unlisted)
    local anchors, broken = {}, {}
    for _, h in ipairs(heads) do anchors[h.anchor] = true end
    local n = 0
    local shown = api:gsub("<!%-%-.-%-%->", function(c) return (c:gsub("[^\n]", "")) end)   -- comments are not shown
    for line in (shown .. "\n"):gmatch("([^\n]*)\n") do
      n = n + 1
      for target in line:gmatch("%]%(#([^)%s]*)%)") do
        if not anchors[target] then broken[#broken + 1] = ("docs/api.md:%d: #%s"):format(n, target) end
      end
    end
    assert.same({}, broken)
  end)

  it("names no file outside the repository", function()
    assert.is_nil(api:find("REFERENCE.md", 1, true), "docs/api.md cites REFERENCE.md, which is not in the repository")
    assert.is_nil(api:find("../", 1, true), "docs/api.md names a file outside docs/ by '../'")
    assert.is_nil(api:find("/work/", 1, true), "docs/api.md names a file outside the repository")
    local function exists(path)
      local f = io.open(path, "rb")
      if f then f:close() end
      return f ~= nil
    end
    local absent, fence = {}, false
    for line in (api .. "\n"):gmatch("([^\n]*)\n") do
      if line:match("^%s*```") then fence = not fence
      elseif not fence then
        for span in line:gmatch("`([^`]+)`") do          -- `docs/protocol.md`: a path from the repository's root
          if span:match("^[%w_%-]+/[%w_%-./]*%.%w+$") and not exists(span) then absent[#absent + 1] = span end
        end
        for target in line:gmatch("%]%(([^)#%s][^)%s]*)%)") do  -- [x](file): a path from docs/
          if not target:match("^%a+://") and not exists("docs/" .. target) then absent[#absent + 1] = target end
        end
      end
    end
    assert.same({}, absent)
  end)

  it("lists every field of NIM under Loading", function()
    local loading = section(the_heading(2, "Loading"))
    local missing = {}
    for k in pairs(NIM) do
      if not (loading:find("`" .. k .. "`", 1, true) or loading:find("NIM%." .. k .. "%f[^%w_]")) then
        missing[#missing + 1] = "NIM." .. k
      end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)
end)

-- README.md is the lead's; its blocks run as they are (no markers there).
run_file("README.md", {})
