-- Every example runs, so the docs cannot rot.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("a")
  p:close()
  return out
end

describe("examples #examples", function()
  it("examples/demo.lua (make demo) runs and shows the merged list", function()
    local out = run("lua5.4 examples/demo.lua")
    assert.matches("exit=0", out)
    assert.matches("p2p%-bob%s+3%s+1700000009000%s+bob: at noon%?", out)
    assert.matches("findSession%(sessions, 'team%-42'%)%.unread = 7", out)
  end)

  it("examples/luv_loop.lua drives the SDK from a luv loop through getfd", function()
    local out = run("timeout 20 lua5.4 examples/luv_loop.lua")
    assert.matches("exit=0", out)
    assert.matches("sync done", out)
    assert.matches("update: p2p%-bob%s+unread=3%s+message 6", out)
    assert.matches("6 messages stored, 6 session updates delivered", out)
  end)
end)
