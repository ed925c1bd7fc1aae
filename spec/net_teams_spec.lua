-- Teams with consent: the owner adds and removes members, a member leaves;
-- every change reaches the team as a notification message, which is never
-- counted unread; a member who left gets no more messages of the team and
-- keeps its session and messages locally.
local N = require "net_helpers"

describe("network teams #net", function()
  local srv
  setup(function() srv = N.start { "alice", "bob", "carol", "dave" } end)
  teardown(function() N.close_all(); srv:cleanup() end)

  local function notices(nim, sid)
    local list = {}
    for _, m in ipairs(N.msgs(nim, sid)) do if m.type == "notification" then list[#list + 1] = m end end
    return list
  end

  it("add, remove and leave, each a notification the team sees, never unread", function()
    local a = N.open(srv, "alice", { db = false })
    local b, rb = N.open(srv, "bob", { db = false })
    local c, rc = N.open(srv, "carol", { db = false })
    local d = N.open(srv, "dave", { db = false })
    local err, obj = N.call(a, "createTeam", { name = "crew", accounts = { "bob" } })
    assert.is_nil(err)
    local tid = obj.team.teamId
    local sid = "team-" .. tid
    N.send(a, tid, "before carol", "team")
    err, obj = N.call(a, "addTeamMembers", { teamId = tid, accounts = { "carol", "dave" } })
    assert.is_nil(err)
    assert.same({ "alice", "bob", "carol", "dave" }, obj.team.members)
    assert.equals("notification", obj.msg.type)
    N.wait(function() return #notices(c, sid) == 1 and #notices(b, sid) == 1 end, 10, "the add reaches old and new")
    local content = require("cjson").decode(notices(c, sid)[1].content)
    assert.same({ op = "addMembers", teamId = tid, by = "alice", accounts = { "carol", "dave" } }, content)
    assert.equals(1, #notices(a, sid))                      -- stored on the owner's own device too
    -- carol sees what is sent from now on, not before
    N.send(a, tid, "after carol", "team")
    N.wait(function() return #rc.msgs >= 2 end, 10, "carol's messages")
    assert.equals(0, N.session(c, sid).unread - 1)          -- one text unread; the notice does not count
    -- only the owner adds and removes; the owner cannot leave
    err = N.call(b, "addTeamMembers", { teamId = tid, accounts = { "carol" } })
    assert.equals(403, err.code)
    err = N.call(a, "leaveTeam", { teamId = tid })
    assert.equals(403, err.code)
    err = N.call(a, "removeTeamMembers", { teamId = tid, accounts = { "alice" } })
    assert.equals(414, err.code)
    -- bob leaves; dave is removed: both hear it, then nothing more
    err, obj = N.call(b, "leaveTeam", { teamId = tid })
    assert.is_nil(err)
    assert.same({ "alice", "carol", "dave" }, obj.team.members)
    err, obj = N.call(a, "removeTeamMembers", { teamId = tid, accounts = { "dave" } })
    assert.is_nil(err)
    N.wait(function() return #notices(d, sid) == 3 end, 10, "dave hears of his removal")
    N.wait(function() return #notices(c, sid) == 3 end, 10, "carol hears both")
    local seen_b = #N.msgs(b, sid)
    N.send(a, tid, "after bob and dave", "team")
    N.wait(function() return #N.msgs(c, sid) == #notices(c, sid) + 2 end, 10, "carol gets it")
    assert.equals(seen_b, #N.msgs(b, sid))                  -- bob got nothing more
    assert.is_truthy(N.session(b, sid))                     -- and keeps the session
    err = N.call(b, "sendText", { scene = "team", to = tid, text = "am I in?" })
    assert.equals(403, err.code)
    assert.same({}, N.verify(c).mismatches)
    assert.same({}, N.verify(d).mismatches)
  end)

  it("checks its arguments, and unknown accounts", function()
    local a = N.open(srv, "alice", { db = false })
    assert.error_matches(function() a:addTeamMembers { teamId = 7, accounts = { "bob" } } end, "teamId")
    assert.error_matches(function() a:addTeamMembers { teamId = "7", accounts = {} } end, "accounts")
    assert.error_matches(function() a:leaveTeam {} end, "teamId")
    local e0, obj = N.call(a, "createTeam", { name = "duo", accounts = { "bob" } })
    assert(obj, tostring(e0 and e0.message))
    local err = N.call(a, "addTeamMembers", { teamId = obj.team.teamId, accounts = { "nobody" } })
    assert.equals(404, err.code)
    err = N.call(a, "leaveTeam", { teamId = "999999" })
    assert.equals(404, err.code)
  end)
end)
