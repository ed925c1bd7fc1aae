-- examples/love, the LÖVE 11 game with a chat overlay, under xvfb-run
-- against the real nim-server: bob, carol and dave write to alice, another
-- device of alice's pins dave's session, and the game (alice) is driven as
-- a player would: a click opens bob's session, keys type and send a reply,
-- Ctrl+P pins it, Esc quits. Each step waits for what the game drew
-- (NIM_LOVE_TEST's state.json) and for what the peers received; then the
-- screenshot the game captured is checked as a PNG of its window and read
-- back with OCR (tesseract): the names, the badge and the messages are in
-- the picture where the game says it drew them.
--
-- LÖVE embeds LuaJIT, so the game loads the module built for LuaJIT: the
-- spec runs under make LUA=luajit BUILD=build-luajit (its LUA_CPATH is that
-- build's) and is pending under the other interpreters. The README's
-- picture is this spec's screenshot:
--   NIM_LOVE_SCREENSHOT=docs/images/love.png make LUA=luajit BUILD=build-luajit \
--     test-lua BUSTED_ARGS=--pattern=love_spec
local H = require "helpers"

local skip = not H.LUA:find("luajit", 1, true) and "LÖVE embeds LuaJIT: runs under make LUA=luajit"
  or (os.getenv("LD_PRELOAD") or "") ~= "" and "LÖVE is not run under the sanitizers' LD_PRELOAD (make asan)"
if skip then
  describe("examples/love #love", function() pending(skip) end)
  return
end

local N = require "net_helpers"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The output of shell command cmd, its standard error too unless quiet
-- (tesseract and netpbm print notes there).
local function run(cmd, quiet)
  local p = assert(io.popen(cmd .. (quiet and " 2>/dev/null" or " 2>&1")))
  local out = p:read("*a")
  p:close()
  return out
end

-- The PNG's IHDR and the names of its chunks, which must add up to the file.
local function png(path)
  local data = assert(read(path), "no screenshot at " .. path)
  assert.equal("\137PNG\r\n\26\n", data:sub(1, 8))
  local function u32(i)
    local a, b, c, d = data:byte(i, i + 3)
    return ((a * 256 + b) * 256 + c) * 256 + d
  end
  local pos, chunks, info = 9, {}, nil
  while pos + 11 <= #data do
    local len, kind = u32(pos), data:sub(pos + 4, pos + 7)
    chunks[#chunks + 1] = kind
    if kind == "IHDR" then
      assert.equal(13, len)
      info = { width = u32(pos + 8), height = u32(pos + 12), depth = data:byte(pos + 16), color = data:byte(pos + 17) }
    end
    pos = pos + 12 + len
  end
  assert.equal(#data + 1, pos, "the chunks do not add up to the file")
  return info, chunks
end

-- One thread: its OpenMP threads spin, taking seconds a call from a busy machine.
local TESSERACT = "OMP_THREAD_LIMIT=1 tesseract "

-- Box r = {x, y, w, h} of the picture cut out as a PAM for the pipe that follows.
local function cut(file, r, rest)
  return run(("pngtopam %s | pamcut -left %d -top %d -width %d -height %d | %s"):format(
    H.shell_quote(file), r.x, r.y, r.w, r.h, rest), true)
end

-- What tesseract reads in box r, its lines joined by "|": the box cut out,
-- scaled 3x, grey and inverted (dark text on light is what it reads best;
-- white on a red badge it does not read at the window's scale).
local function ocr(file, r)
  local big = file .. ".box.png"
  cut(file, r, "pamscale 3 | ppmtopgm | pnminvert | pnmtopng > " .. H.shell_quote(big))
  local text = run(TESSERACT .. H.shell_quote(big) .. " stdout --psm 6", true)
  return (text:gsub("%s*\n%s*", "|"):gsub("^|+", ""):gsub("|+$", ""))
end

-- How many pixels of box r satisfy pred(red, green, blue) (0-255 each).
local function count_pixels(file, r, pred)
  local body = cut(file, r, "pnmtoplainpnm"):match("^P3%s+%d+%s+%d+%s+255%s+(.*)$")
  assert(body, "no pixels read from " .. file)
  local v, n = {}, 0
  for x in body:gmatch("%d+") do
    v[#v + 1] = tonumber(x)
    if #v == 3 then
      if pred(v[1], v[2], v[3]) then n = n + 1 end
      v = {}
    end
  end
  return n
end

local function gold(r, g, b) return r > 200 and g > 150 and b < 110 end
local function red(r, g, b) return r > 180 and g < 80 and b < 90 end

describe("examples/love under xvfb-run #love #net", function()
  local srv, bob, bobrec, carol, dave, phone, phonerec
  local dir, pid, sent = nil, nil, 0

  local function path(name) return dir .. "/" .. name end

  local function command(line)
    local f = assert(io.open(path("commands"), "ab"))
    f:write(line, "\n")
    f:close()
    sent = sent + 1
  end

  local function log_tail()
    local log = read(path("love.log")) or ""
    return log:sub(-3000)
  end

  -- Waits until the game ran every command sent and drew a state for which
  -- pred holds (pumping the peers meanwhile); returns that state.
  local function wait_state(pred, what)
    local state
    local ok, err = pcall(N.wait, function()
      if read(path("exit")) then error("the game exited; its log:\n" .. log_tail()) end
      local raw = read(path("state.json"))
      state = raw and H.read_json(path("state.json"))
      return state ~= nil and state.commands >= sent and pred(state)
    end, 20, what)
    if not ok then error(tostring(err) .. "\nlast state: " .. tostring(read(path("state.json"))), 2) end
    return state
  end

  local function row(state, id)
    for i, r in ipairs(state.sessions) do
      if r.id == id then return r, i end
    end
  end

  local function ids(state)
    local t = {}
    for i, r in ipairs(state.sessions) do t[i] = r.id end
    return table.concat(t, " ")
  end

  local function lines(state)
    local t = {}
    for i, l in ipairs(state.lines) do t[i] = l.text end
    return t
  end

  setup(function()
    for _, tool in ipairs({ "love", "xvfb-run", "tesseract", "setsid" }) do
      assert(run("command -v " .. tool):find("/"), tool .. " is missing: make deps installs it")
    end
    srv = N.start({ "alice", "bob", "carol", "dave" })
    bob, bobrec = N.open(srv, "bob", { db = false })
    carol = N.open(srv, "carol", { db = false })
    dave = N.open(srv, "dave", { db = false })
    phone, phonerec = N.open(srv, "alice", { db = false, deviceId = "phone", syncStickTopSessions = true })
    N.send(dave, "alice", "gg, rematch?")
    N.send(carol, "alice", "are you coming?")
    N.send(carol, "alice", "the raid starts at 9")
    N.send(bob, "alice", "hello alice")
    local err = N.call(phone, "addStickTopSession", { id = "p2p-dave" })
    assert(err == nil, tostring(err))
    dir = run("mktemp -d /tmp/nim-love.XXXXXX"):match("^(/tmp/%S+)\n$")   -- owned: no other tmpname reuses it
    assert(dir, "mktemp -d failed")
    assert(io.open(path("commands"), "wb")):close()
    -- the module of this build (LUA_CPATH: make's ./build-luajit/?.so), the Lua files of this checkout
    local game = ("NIM_LOVE_TEST=%s NIM_LUA_PATH=%s NIM_LUA_CPATH=%s timeout 120 xvfb-run -a -s %s love examples/love %s alice %s %s; echo $? > %s")
      :format(H.shell_quote(dir), H.shell_quote("./lua/?.lua;./lua/?/init.lua"),
        H.shell_quote((os.getenv("LUA_CPATH") or ""):gsub(";;$", "")), H.shell_quote("-screen 0 1024x768x24"),
        srv.url, N.token("alice"), H.shell_quote(path("data")), H.shell_quote(path("exit")))
    -- its own process group (setsid), so that teardown can end all of it
    local p = assert(io.popen(("setsid sh -c %s > %s 2>&1 < /dev/null & echo $!"):format(
      H.shell_quote(game), H.shell_quote(path("love.log")))))
    pid = tonumber(p:read("*l"))
    p:close()
    assert(pid, "the game did not start")
  end)

  teardown(function()
    if pid and dir and not read(path("exit")) then os.execute("kill -TERM -- -" .. pid .. " 2>/dev/null") end
    N.close_all()
    if srv then srv:cleanup() end
    if dir then H.rmdir(dir) end
  end)

  it("logs in and lists the sessions: the pinned one first, unread counts in badges", function()
    local s = wait_state(function(s) return s.status == "connected, synced" and #s.sessions == 3 end, "the synced list")
    assert.equal("p2p-dave p2p-bob p2p-carol", ids(s))       -- dave is older than bob and carol, but pinned
    local d, b, c = row(s, "p2p-dave"), row(s, "p2p-bob"), row(s, "p2p-carol")
    assert.same({ true, false, false }, { d.pinned, b.pinned, c.pinned })
    assert.same({ "1", "1", "2" }, { d.badge, b.badge, c.badge })
    assert.same({ "dave", "bob", "carol" }, { d.label, b.label, c.label })
    assert.equal("carol: the raid starts at 9", c.last)
    assert.equal(false, s.current)
    assert.same({}, s.lines)
  end)

  it("opens a session at a click: its conversation shows, its badge goes", function()
    local b = row(wait_state(function() return true end), "p2p-bob")
    command(("click %d %d"):format(math.floor(b.x + b.w / 2), math.floor(b.y + b.h / 2)))
    local s = wait_state(function(s)
      return s.current == "p2p-bob" and #s.lines == 1 and row(s, "p2p-bob").badge == nil
    end, "bob's conversation")
    assert.same({ "bob: hello alice" }, lines(s))
    assert.equal("Chat with bob", s.title)
    assert.is_true(row(s, "p2p-bob").open)
    assert.equal("2", row(s, "p2p-carol").badge)             -- the others keep theirs
  end)

  it("types and sends with the keys (backspace takes a whole character): the peer receives it", function()
    command("text hi bob, from the gameé")
    local s = wait_state(function(s) return s.input == "> hi bob, from the gameé_" end, "the typed text")
    command("key backspace")                                 -- é is two bytes, one character
    s = wait_state(function(s) return s.input == "> hi bob, from the game_" end, "the backspace")
    command("key return")
    N.wait(function()
      local m = bobrec.msgs[#bobrec.msgs]
      return m ~= nil and m.from == "alice" and m.text == "hi bob, from the game"
    end, 10, "bob receives the game's message")
    s = wait_state(function(s)
      local l = lines(s)
      return l[#l] == "me: hi bob, from the game" and s.input == "> _"
    end, "the sent message in the conversation")
    assert.same({ "bob: hello alice", "me: hi bob, from the game" }, lines(s))
    assert.equal("me: hi bob, from the game", row(s, "p2p-bob").last)
  end)

  it("pins the open session with Ctrl+P: alice's other device sees it", function()
    command("key ctrl+p")
    N.wait_update(phonerec, "p2p-bob", function(u) return u.isTop == true end, "the pin on alice's phone")
    local s = wait_state(function(s) return row(s, "p2p-bob").pinned and s.notice == "pinned bob" end, "bob pinned")
    assert.equal("p2p-bob p2p-dave p2p-carol", ids(s))
  end)

  it("shows live messages: the reply in the conversation, a badge that grows, pinned sessions above a newer one", function()
    N.send(bob, "alice", "great, see you in game")
    N.send(carol, "alice", "hurry up!")
    command("text on my way")                                -- typing, not sent: the picture shows it
    local s = wait_state(function(s)
      local l = lines(s)
      return l[#l] == "bob: great, see you in game" and row(s, "p2p-carol").badge == "3" and s.input == "> on my way_"
    end, "the live messages")
    assert.same({ "bob: hello alice", "me: hi bob, from the game", "bob: great, see you in game" }, lines(s))
    assert.equal("p2p-bob p2p-dave p2p-carol", ids(s))       -- carol's is the newest, below the pinned two
    assert.is_nil(row(s, "p2p-bob").badge)                   -- the open session counts nothing
    assert.equal("1", row(s, "p2p-dave").badge)
    assert.equal("carol: hurry up!", row(s, "p2p-carol").last)
  end)

  local shot

  it("captures a screenshot: a PNG of the window's size, with what that frame drew", function()
    command("shot")
    wait_state(function(s) return s.shots == 1 end, "the screenshot")
    shot = H.read_json(path("shot.json"))
    local info, chunks = png(path("shot.png"))
    assert.same({ width = shot.width, height = shot.height, depth = 8 }, { width = info.width, height = info.height, depth = info.depth })
    assert.same({ 800, 600 }, { info.width, info.height })
    assert.is_true(info.color == 6 or info.color == 2, "colour type " .. info.color)
    assert.equal("IHDR", chunks[1])
    assert.equal("IEND", chunks[#chunks])
    assert.is_truthy(table.concat(chunks, " "):find("IDAT"))
    -- the frame captured is the state waited for above
    assert.equal("p2p-bob p2p-dave p2p-carol", ids(shot))
    assert.same({ "bob: hello alice", "me: hi bob, from the game", "bob: great, see you in game" }, lines(shot))
    assert.equal("> on my way_", shot.input)
    local copy = os.getenv("NIM_LOVE_SCREENSHOT")
    if copy and copy ~= "" then os.execute(("cp %s %s"):format(H.shell_quote(path("shot.png")), H.shell_quote(copy))) end
  end)

  it("quits on Esc, closing the instance cleanly", function()
    command("key escape")
    N.wait(function() return read(path("exit")) ~= nil end, 20, "the game to exit")
    assert.equal("0", (read(path("exit")):gsub("%s", "")), "exit status; log:\n" .. log_tail())
    assert.is_falsy(log_tail():find("error:"), log_tail())
  end)

  it("shows in the picture what it says it drew (OCR, pixels): names, badges, pins, messages, the typed text", function()
    assert.is_truthy(shot, "no screenshot")
    local file = path("shot.png")
    local function shows(r, want, what)
      local got = ocr(file, r)
      assert(got:lower():find(want, 1, true), ("%s: expected %q at %d,%d %dx%d, OCR read %q there; the whole picture:\n%s")
        :format(what, want, r.x, r.y, r.w, r.h, got, run(TESSERACT .. H.shell_quote(file) .. " stdout", true)))
      return got
    end
    local b, d, c = row(shot, "p2p-bob"), row(shot, "p2p-dave"), row(shot, "p2p-carol")
    shows(b.labelBox, "bob", "bob's name")
    shows(d.labelBox, "dave", "dave's name")
    shows(c.labelBox, "carol", "carol's name")
    shows(c.lastBox, "carol: hurry up!", "carol's last message")
    shows(b.lastBox, "bob: great, see you in game", "bob's last message")
    assert.equal("3", ocr(file, c.badgeBox))
    assert.equal("1", ocr(file, d.badgeBox))
    assert.is_true(count_pixels(file, c.badgeBox, red) > 200, "carol's badge is not red")
    -- the gold star of the pinned rows, and none in the same place on carol's
    for _, r in ipairs({ b, d }) do
      assert.is_true(count_pixels(file, r.star, gold) > 40, r.id .. " shows no pin")
    end
    local unpinned = { x = c.x + 6, y = c.y + 8, w = 16, h = 16 }
    assert.equal(0, count_pixels(file, unpinned, gold))
    local want = { "bob: hello alice", "me: hi bob, from the game", "bob: great, see you in game" }
    for i, l in ipairs(shot.lines) do shows(l, want[i], "conversation line " .. i) end
    shows(shot.inputBox, "> on my way", "the input line")
  end)

end)
