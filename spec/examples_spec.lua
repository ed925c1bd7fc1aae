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
end)
