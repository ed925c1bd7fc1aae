-- The rock: rockspecs generated from VERSION, one version everywhere, and
-- a release (make dist) that luarocks installs offline into a fresh tree,
-- for Lua 5.4 and 5.1 (that tree also serving LuaJIT), whose nim.server
-- starts the nim-server the rock installed from a script outside the repo.
local H = require "helpers"

local read = H.read

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  local body, status = out:match("^(.-)exit=(%d+)\n$")
  return status == "0", body or out
end

local VERSION = read("VERSION"):match("^(%S+)\n$")

describe("rockspec #rockspec", function()
  it("the rockspecs are what rockspec/gen.lua makes from VERSION (make rockspec)", function()
    local ok, want = sh(H.LUA .. " rockspec/gen.lua --print")
    assert(ok, want)
    local have = {}
    for _, f in ipairs { "rockspec/nim-lua-scm-1.rockspec", "rockspec/nim-lua-" .. VERSION .. "-1.rockspec" } do
      have[#have + 1] = "== " .. f .. "\n" .. read(f)
    end
    assert.equal(want, table.concat(have), "the rockspecs are stale: run make rockspec")
    local _, listing = sh("ls rockspec")
    for name in listing:gmatch("[^\n]+") do          -- no rockspec of another version left behind
      if name:match("%.rockspec$") then
        assert.is_truthy(name == "nim-lua-scm-1.rockspec" or name == "nim-lua-" .. VERSION .. "-1.rockspec", name)
      end
    end
  end)

  it("has one version: VERSION, NIM.version, nim-server --version, the rockspec", function()
    assert.matches("^%d+%.%d+%.%d+$", VERSION)
    assert.equal(VERSION, require("nim").version)
    local ok, out = sh(H.shell_quote(os.getenv("NIM_SERVER") or "./build/nim-server") .. " --version")
    assert(ok, out)
    assert.equal("nim-server " .. VERSION .. "\n", out)
    assert.matches('\nversion = "' .. VERSION:gsub("%.", "%%.") .. '%-1"\n',
      read("rockspec/nim-lua-" .. VERSION .. "-1.rockspec"))
    assert.matches("## " .. VERSION:gsub("%.", "%%."), read("CHANGELOG.md"))
    assert.matches("MIT License", read("LICENSE"))
  end)

  it("nim.server says where it looked for nim-server and what to set", function()
    -- a copy of lua/nim outside the checkout, no NIM_SERVER, a PATH without it
    local dir = os.tmpname()
    os.remove(dir)
    assert(sh("mkdir -p " .. dir .. " && cp -r lua/nim " .. dir .. "/"))
    local code = 'local ok, e = pcall(require("nim.server").start, {}); io.write(e)'
    local ok, out = sh(("cd %s && env -u NIM_SERVER PATH=/usr/bin:/bin LUA_PATH='%s/?.lua;%s/?/init.lua' %s -e %s")
      :format(dir, dir, dir, H.LUA, H.shell_quote(code)))
    sh("rm -rf " .. dir)
    assert(ok, out)
    assert.matches("^nim%.server: nim%-server not found; looked at start{bin=} %(not given%), %$NIM_SERVER %(not set%)", out)
    assert.matches("and %$PATH %(/usr/bin:/bin%)", out)
    assert.matches("Install the nim%-lua rock", out)
    assert.matches("set NIM_SERVER=", out)
  end)
end)

-- Builds with luarocks (a few seconds each): under lua5.4's pass only, since
-- it installs for every interpreter itself.
local heavy = H.LUA == "lua5.4" and describe or function(name) pending(name .. " (under lua5.4's run)") end

heavy("the release rock #rockspec", function()
  local tmp
  setup(function()
    tmp = os.tmpname()
    os.remove(tmp)
    assert(sh("mkdir -p " .. tmp))
  end)
  teardown(function() sh("rm -rf " .. tmp) end)

  -- A script a user would write, run from tmp with nothing of the checkout
  -- in reach: no NIM_SERVER, a PATH of the system's, the tree's paths only.
  local APP = [[
local NIM = require "nim"
local srv = require("nim.server").start{accounts = {alice = "a", bob = "b"}}
io.write("server ", srv.bin, "\n")
NIM.run(function()
  local alice = NIM.getInstance{account = "alice", token = "a", server = srv.url, db = false}
  local bob = NIM.getInstance{account = "bob", token = "b", server = srv.url, db = false}
  assert(alice:waitSync{timeout = 20000} == nil and bob:waitSync{timeout = 20000} == nil)
  local err = bob:sendText{scene = "p2p", to = "alice", text = "from the rock"}
  assert(not err, tostring(err))
  assert(NIM.wait(function()
    local _, page = alice:getLocalSessions{}
    return page.sessions[1] ~= nil and page.sessions[1].unread == 1
  end, 20000))
  io.write(_VERSION, " ", NIM.version, " ok\n")
  alice:destroy(); bob:destroy()
end)
srv:cleanup()
]]

  local function run_app(tree, abi, lua)
    local f = assert(io.open(tmp .. "/app.lua", "wb"))
    f:write(APP)
    f:close()
    return sh(("cd %s && env -u NIM_SERVER -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 " ..
      "PATH=/usr/bin:/bin sh -c 'eval \"$(luarocks --lua-version %s --tree %s path)\"; exec %s app.lua'")
      :format(tmp, abi, tree, lua))
  end

  it("make dist makes the tarball, its rockspec and a .src.rock holding both", function()
    local ok, out = sh("make -s dist DIST=" .. tmp .. "/dist")
    assert(ok, out)
    local base = tmp .. "/dist/nim-lua-" .. VERSION
    local _, listing = sh("unzip -l " .. base .. "-1.src.rock")
    assert.matches("nim%-lua%-" .. VERSION:gsub("%.", "%%.") .. "%-1%.rockspec", listing)
    assert.matches("nim%-lua%-" .. VERSION:gsub("%.", "%%.") .. "%.tar%.gz", listing)
    local _, files = sh("tar tzf " .. base .. ".tar.gz")
    for _, want in ipairs { "/VERSION\n", "/LICENSE\n", "/CHANGELOG.md\n", "/Makefile\n", "/lua/nim/init.lua\n",
                            "/csrc/server/main.c\n", "/csrc/lua/compat53/compat-5.3.h\n" } do
      assert.is_truthy(files:find("nim-lua-" .. VERSION .. want, 1, true), want)
    end
  end)

  for _, case in ipairs {
    { abi = "5.4", luas = { "lua5.4" } },
    { abi = "5.1", luas = { "lua5.1", "luajit" } },   -- one 5.1 tree serves LuaJIT too
  } do
    it("installs offline into a fresh " .. case.abi .. " tree, nim-server in its bin/, and runs from outside the repo", function()
      local rock = tmp .. "/dist/nim-lua-" .. VERSION .. "-1.src.rock"
      local tree = tmp .. "/tree" .. case.abi
      local ok, out = sh(("cd %s && MAKEFLAGS=-j2 luarocks --lua-version %s --tree %s install %s")
        :format(tmp, case.abi, tree, rock))
      assert(ok, out)
      assert.matches("nim%-lua " .. VERSION:gsub("%.", "%%.") .. "%-1 is now installed", out)
      local elf = io.open(tree .. "/bin/nim-server", "rb")
      assert.equal("\127ELF", elf and elf:read(4))      -- the server itself, not a wrapper
      elf:close()
      for _, lua in ipairs(case.luas) do
        local ran, got = run_app(tree, case.abi, lua)
        assert(ran, got)
        assert.matches("^server " .. tree:gsub("%p", "%%%0") .. "/bin/nim%-server\n", got)
        assert.matches("Lua 5%.%d " .. VERSION:gsub("%.", "%%.") .. " ok\n$", got)
      end
    end)
  end

  it("make install after a build for another Lua rebuilds the binding for this one", function()
    local b, d = tmp .. "/b", tmp .. "/d"
    local ok, out = sh(("make -s -j2 BUILD=%s module && make -s -j2 LUA=lua5.1 BUILD=%s install DESTDIR=%s PREFIX=/usr")
      :format(b, b, d))
    assert(ok, out)
    local code = 'local S = require "nim.server"; io.write(require("nim").version, " ", S.find_binary())'
    local ran, got = sh(("cd %s && env -u NIM_SERVER PATH=/usr/bin:/bin LUA_PATH='%s/usr/share/lua/5.1/?.lua;%s/usr/share/lua/5.1/?/init.lua' " ..
      "LUA_CPATH='%s/usr/lib/lua/5.1/?.so' lua5.1 -e %s"):format(tmp, d, d, d, H.shell_quote(code)))
    assert(ran, got)
    assert.equal(VERSION .. " " .. d .. "/usr/bin/nim-server", got)
  end)

  it("luarocks make builds the work tree with the scm rockspec", function()
    -- in a copy: luarocks make builds in the current directory
    local src = tmp .. "/src"
    assert(sh(("mkdir -p %s && cp -r csrc lua rockspec Makefile VERSION %s/"):format(src, src)))
    local ok, out = sh(("cd %s && MAKEFLAGS=-j2 luarocks --lua-version 5.4 --tree %s/scm make rockspec/nim-lua-scm-1.rockspec")
      :format(src, tmp))
    assert(ok, out)
    local ran, got = run_app(tmp .. "/scm", "5.4", "lua5.4")
    assert(ran, got)
    assert.matches("ok\n$", got)
  end)
end)
