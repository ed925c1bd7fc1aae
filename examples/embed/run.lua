-- examples/embed/run.lua: the whole embed example in one command.
--
--   lua5.4 examples/embed/run.lua [COUNT] [RATE]      (defaults 10000 5000)
--
-- Starts nim-server on a free loopback port with a temporary database,
-- registers "player" and "flooder", runs the C host (build/embed-host, a
-- 60 Hz frame loop calling game.lua's update(), which calls nim:poll(0))
-- logged in as player, and floods player with COUNT messages at RATE per
-- second from a second client (flood.lua). Prints the flooder's line, the
-- game's line and the host's frame budget; exits non-zero if any part failed.
--   env NIM_EMBED_HOST   the host binary (default ./build/embed-host)
--   env NIM_SERVER       the server binary (default ./build/nim-server)
--   env NIM_LUA          the interpreter for flood.lua (default lua5.4)
local server = require "nim.server"

local count = tonumber(arg[1] or "10000")
local rate = tonumber(arg[2] or "5000")
assert(count and count > 0 and count == math.floor(count) and rate and rate > 0, "usage: run.lua [COUNT > 0] [RATE > 0]")
local host = os.getenv("NIM_EMBED_HOST") or "./build/embed-host"
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- the flooder sends far beyond the server's default 100 messages a second
local srv = server.start{accounts = {player = "p-token", flooder = "f-token"},
                         maxSendRate = math.floor(math.max(100, rate * 2))}
print("nim-server listening on " .. srv.url)
local ready = os.tmpname()
os.remove(ready)                                 -- game.lua creates it once synced

-- The flooder starts now and waits for the ready file; its output is read at the end.
-- Each command's last line is its exit status (5.1's close does not return it).
local lua = os.getenv("NIM_LUA") or "lua5.4"
local flood = assert(io.popen(("%s %s %s flooder f-token player %d %s %s 2>&1; echo \"exit=$?\""):format(
  lua, q(dir .. "flood.lua"), q(srv.url), count, rate, q(ready))))

-- Enough frames for the whole flood plus 10 s of slack; the game stops when all arrived.
local frames = math.ceil(count / rate * 60) + 600
local game = assert(io.popen(("NIM_URL=%s NIM_ACCOUNT=player NIM_TOKEN=p-token NIM_READY=%s NIM_EXPECT=%d %s %s %d 2>&1; echo \"exit=$?\""):format(
  q(srv.url), q(ready), count, q(host), q(dir .. "game.lua"), frames)))
local function finish(p)
  local out = p:read("*a")
  p:close()
  local body, status = out:match("^(.-)exit=(%d+)\n$")
  return body or out, status == "0"
end
local out, game_ok = finish(game)
local flood_out, flood_ok = finish(flood)
os.remove(ready)
srv:cleanup()

io.write(flood_out, out)
if not (game_ok and flood_ok) then
  io.stderr:write("embed: ", game_ok and "" or "the host failed; ", flood_ok and "" or "the flooder failed", "\n")
  os.exit(1)
end
