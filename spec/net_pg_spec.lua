-- Several nim-servers on one PostgreSQL database (docs/scaling.md): what one
-- node stores every node serves, and writers on different nodes at once
-- still hand out ids and times in one order. Runs under make test-pg
-- (spec/pg_cluster.sh sets NIM_TEST_PG); pending without it.
local N = require "net_helpers"
local H = require "helpers"
local S = require "nim.server"

describe("nodes on PostgreSQL #net #pg", function()
  if not N.pg then
    pending("NIM_TEST_PG is not set: make test-pg runs these")
    return
  end

  local a, b
  setup(function()
    a = N.start { "alice", "bob", "carol", "dave" }
    b = N.start({}, { db = a.db })       -- a second node on the same database
  end)
  teardown(function() N.close_all(); b:stop(); a:cleanup() end)
  after_each(function() N.close_all() end)

  -- Sends n texts from nim to `to` without waiting; acks[k] is set when
  -- the server confirmed text k.
  local function burst(nim, to, prefix, n, acks)
    for k = 1, n do
      nim:sendText { scene = "p2p", to = to, text = prefix .. k, done = function(err, msg)
        assert(err == nil, tostring(err and err.message))
        acks[#acks + 1] = msg
      end }
    end
  end

  it("what one node stores, a device logging in on the other gets", function()
    local alice = N.open(a, "alice")
    for k = 1, 5 do N.send(alice, "carol", "to carol " .. k) end
    local carol, rec = N.open(b, "carol")
    assert.equals(1, #rec.offline)
    assert.equals(5, #rec.offline[1].msgs)
    assert.equals("to carol 5", rec.offline[1].msgs[5].text)
    assert.equals(5, N.session(carol, "p2p-alice").unread)
  end)

  it("writers on two nodes at once: every message once, ids in commit order, times never decrease", function()
    local alice = N.open(a, "alice")
    local carol = N.open(b, "carol")
    local n, acks_a, acks_c = 150, {}, {}
    burst(alice, "bob", "a", n, acks_a)
    burst(carol, "bob", "c", n, acks_c)
    N.wait(function() return #acks_a == n and #acks_c == n end, 30, "both bursts acknowledged")
    -- each sender's messages in its own order, ids unique across nodes
    local seen = {}
    for _, acks in ipairs { acks_a, acks_c } do
      local last = 0
      for _, m in ipairs(acks) do
        local id = tonumber(m.idServer)
        assert.is_nil(seen[id], "id " .. id .. " handed out twice")
        seen[id] = true
        assert.is_true(id > last, "a sender's ids grow")
        last = id
      end
    end
    -- bob's first device (on the node alice did not use) gets them all
    -- once; his second, on the other node, the latest 100 of each session
    local function stored(node)
      local bob = N.open(node, "bob")
      local per = {}
      for _, sid in ipairs { "p2p-alice", "p2p-carol" } do
        per[sid] = {}
        for _, m in ipairs(N.msgs(bob, sid)) do
          if m.text:match("^[ac]%d+$") then per[sid][#per[sid] + 1] = m.idServer end
        end
      end
      local all = N.msgs(bob, nil)
      N.close(bob)
      return per, all
    end
    local first, all = stored(b)
    assert.equals(n, #first["p2p-alice"])
    assert.equals(n, #first["p2p-carol"])
    table.sort(all, function(x, y) return tonumber(x.idServer) < tonumber(y.idServer) end)
    for k = 2, #all do
      assert.is_true(all[k].time >= all[k - 1].time,
        ("time of id %s (%d) below id %s (%d)"):format(all[k].idServer, all[k].time,
          all[k - 1].idServer, all[k - 1].time))
    end
    local second = stored(a)
    for sid, ids in pairs(first) do
      assert.same({ (table.unpack or unpack)(ids, #ids - 99) }, second[sid])
    end
  end)

  it("a resend through the other node is answered as the stored message, not stored twice", function()
    local alice = N.open(a, "alice")
    local first = N.send(alice, "bob", "once")
    N.close(alice)
    local again = N.open(b, "alice")
    local err, msg = N.call(again, "sendText", { scene = "p2p", to = "bob", text = "once", idClient = first.idClient })
    assert.is_nil(err)
    assert.equals(first.idServer, msg.idServer)
  end)

  it("the same idClient through two nodes at once: stored once, both answered with it", function()
    -- two devices of carol's, on different nodes, send the same messages
    -- (same idClient) at the same moment: one is stored, the other is
    -- answered as its duplicate, never with an error
    local d1 = N.open(a, "carol", { deviceId = "dup-1" })
    local d2 = N.open(b, "carol", { deviceId = "dup-2" })
    local n, answers = 60, {}
    for i = 1, n do
      for _, d in ipairs { d1, d2 } do
        d:sendText { scene = "p2p", to = "alice", text = "twice " .. i, idClient = "twice-" .. i,
          done = function(err, msg)
            answers[#answers + 1] = { i = i, err = err, id = msg and msg.idServer }
          end }
      end
    end
    N.wait(function() return #answers == 2 * n end, 30, "every send answered")
    local by = {}
    for _, x in ipairs(answers) do
      assert.is_nil(x.err, "twice " .. x.i .. ": " .. tostring(x.err and x.err.message))
      if by[x.i] then assert.equals(by[x.i], x.id, "twice " .. x.i .. ": one stored message") end
      by[x.i] = x.id
    end
    local alice = N.open(a, "alice", { deviceId = "dup-reader" })
    local count = 0
    for _, m in ipairs(N.msgs(alice, "p2p-carol")) do
      if m.text:match("^twice ") then count = count + 1 end
    end
    assert.equals(n, count)
  end)

  it("three nodes, one killed with SIGKILL mid-burst and restarted: every acknowledged message stored once", function()
    local c = N.start({}, { db = a.db })
    local nodes = { a, b, c }
    local urls = { a.url, b.url, c.url }
    -- three senders, each starting on another node, every one with the
    -- whole list; what the SDK could not send is sent again (same
    -- idClient) until it is acknowledged
    local senders, n, acked, pending = {}, 150, {}, {}
    for k, who in ipairs { "alice", "bob", "carol" } do
      local list = {}
      for j = 0, 2 do list[#list + 1] = urls[(k - 1 + j) % 3 + 1] end
      senders[k] = N.open({ url = list }, who)
      acked[k], pending[k] = {}, 0
    end
    local function send(k, i)
      pending[k] = pending[k] + 1
      senders[k]:sendText { scene = "p2p", to = "dave", text = ("k%d-%d"):format(k, i),
        idClient = ("kill-%d-%d"):format(k, i), done = function(err, msg)
          pending[k] = pending[k] - 1
          if err then send(k, i) else acked[k][i] = msg.idServer end
        end }
    end
    local function count(k) local x = 0 for _ in pairs(acked[k]) do x = x + 1 end return x end
    for i = 1, n do for k = 1, 3 do send(k, i) end end
    N.wait(function() return count(1) + count(2) + count(3) >= n end, 30, "a third acknowledged")
    local unacked = n - count(2)                   -- bob's, sent through b first
    b:kill()                                       -- mid-burst: its links drop, its senders move on
    N.wait(function() return count(1) + count(2) + count(3) == 3 * n end, 60, "every message acknowledged")
    assert.is_true(unacked > 0, "the kill came while sends through it were in flight")
    b = N.start({}, { db = a.db, port = b.port })  -- restarted on its port
    -- dave's first device, on the restarted node, gets each exactly once
    local dave, rec = N.open(b, "dave")
    local got = {}
    for _, g in ipairs(rec.offline) do
      for _, m in ipairs(g.msgs) do
        assert.is_nil(got[m.text], m.text .. " stored twice")
        got[m.text] = m.idServer
      end
    end
    for k = 1, 3 do
      for i = 1, n do
        local text = ("k%d-%d"):format(k, i)
        assert.equals(acked[k][i], got[text], text .. ": the acknowledged id")
      end
    end
    N.close(dave)
    c:stop()
  end)

  it("a node whose database connection was cut makes it again at the next request", function()
    local ok = os.execute(("psql -q -X %s -c %s >/dev/null"):format(H.shell_quote(a.db), H.shell_quote(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity " ..
      "WHERE datname = current_database() AND pid <> pg_backend_pid()")))
    assert.is_true(ok == true or ok == 0)
    -- both nodes lost theirs; each serves a login and a send
    for _, node in ipairs { a, b } do
      local alice = N.open(node, "alice")
      N.send(alice, "bob", "after the cut")
      N.close(alice)
    end
  end)

  it("a node refuses a URI it cannot reach, saying why", function()
    local ok, err = pcall(S.start, { db = "postgresql:///nosuchdb?host=" .. N.pg .. "&user=nim" })
    assert.is_false(ok)
    assert.matches("cannot connect to PostgreSQL", err)
    assert.matches("nosuchdb", err)
  end)
end)
