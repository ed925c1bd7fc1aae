-- The rockspec builds the same sources as the Makefile.
describe("rockspec", function()
  it("lists every C source of the module (make rockspec regenerates it)", function()
    local p = assert(io.popen("lua5.4 rockspec/gen.lua --print"))
    local want = p:read("*a")
    p:close()
    local f = assert(io.open("rockspec/nim-scm-1.rockspec"))
    local have = f:read("*a")
    f:close()
    assert.equal(want, have, "rockspec/nim-scm-1.rockspec is stale: run make rockspec")
  end)
end)

describe("rockspec install #rockspec", function()
  it("installs a module that require 'nim' loads", function()
    local tree = os.tmpname()
    os.remove(tree)
    -- luarocks builds in the current directory (objects beside the sources,
    -- nim/core.so at the top): build in a copy, so the work tree stays clean
    -- and two runs cannot collide
    local src = tree .. ".src"
    assert(os.execute(("mkdir -p %s && cp -r csrc lua rockspec %s/"):format(src, src)))
    local r = os.execute("cd " .. src .. " && luarocks --lua-version 5.4 --tree " .. tree ..
      " make rockspec/nim-scm-1.rockspec > " .. tree .. ".log 2>&1")
    local log = io.open(tree .. ".log"):read("*a")
    assert.is_true(r == true or r == 0, log)            -- 5.2+: true; 5.1: the status
    local p = io.popen(("LUA_PATH='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua' " ..
      "LUA_CPATH='%s/lib/lua/5.4/?.so' lua5.4 -e 'local N = require \"nim\"; " ..
      "io.write(N.version, \" \", N.mergeSessions(nil, {id = \"p2p-a\"})[1].id)' 2>&1"):format(tree, tree, tree))
    local out = p:read("*a")
    p:close()
    os.execute("rm -rf " .. tree .. " " .. tree .. ".log " .. src)
    assert.matches("^%d+%.%d+%.%d+ p2p%-a$", out)
  end)
end)
