-- Every example runs, so the docs cannot rot.
local H = require "helpers"
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  return out
end

describe("examples #examples", function()
  it("examples/merge.lua runs and shows the merged list", function()
    local out = run(H.LUA .. " examples/merge.lua")
    assert.matches("exit=0", out)
    assert.matches("p2p%-bob%s+3%s+1700000009000%s+bob: at noon%?", out)
    assert.matches("findSession%(sessions, 'team%-42'%)%.unread = 7", out)
  end)

  it("examples/luv_loop.lua drives the SDK from a luv loop through getfd", function()
    local out = run("timeout 20 " .. H.LUA .. " examples/luv_loop.lua")
    assert.matches("exit=0", out)
    assert.matches("sync done", out)
    assert.matches("update: p2p%-bob%s+unread=3%s+message 6", out)
    assert.matches("6 messages stored, 6 session updates delivered", out)
  end)

  it("examples/cqueues.lua runs the SDK in cqueues coroutines (done + conditions, the fd in the loop)", function()
    local out = run("timeout 60 " .. H.LUA .. " examples/cqueues.lua")
    assert.matches("exit=0", out)
    -- inside a cqueues coroutine a call without done raises instead of yielding into cqueues
    assert.matches("without done: sendText: pass done, or call from inside NIM.run\n", out)
    assert.matches("bob sent hello 1\nbob sent hello 2\nbob sent hello 3\n", out)
    assert.matches('alice: p2p%-bob, 3 unread, last "hello 3"\ncqueues loop done\n', out)
  end)

  it("examples/tour.lua (make demo) walks through the API against a real server in < 30 s", function()
    local t0 = os.time()
    local out = run("timeout 60 " .. H.LUA .. " examples/tour.lua")
    assert.matches("exit=0", out)
    assert.is_true(os.time() - t0 < 30)
    assert.matches("nim%-server listening on ws://127%.0%.0%.1:%d+", out)
    -- offline messages became the session list at login
    assert.matches("alice's phone after login\n[^\n]*\n%s+team%-1%s+1%s+carol: release at 5", out)
    assert.matches("p2p%-bob%s+3%s+bob: are you there%?", out)              -- live update, unread 3
    assert.matches("p2p%-bob is current: unread stays 0\n[^\n]*\n%s+p2p%-bob%s+0", out)
    assert.matches("the phone, after the laptop read team%-1\n.-team%-1%s+0%s", out)
    assert.matches("page 1: p2p%-bob, team%-1\n%s+page 2: p2p%-carol", out)
    assert.matches('localCustom = {"draft":"thanks!"}', out)
    assert.matches("p2p%-carol%s+1%s+%*%s+carol: slides attached", out)
    local tablet = out:match("a fresh tablet logs in.-\n\n")
    assert.is_truthy(tablet)
    assert.is_nil(tablet:find("\n%s+p2p%-carol"))
    assert.matches("\n%s+p2p%-bob%s+4%s", tablet)
    assert.matches("Next:", out)
  end)
end)
