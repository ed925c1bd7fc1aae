-- nim.server: start and stop the reference server (nim-server) from Lua, for
-- prototypes, demos and tests.
--
--   local server = require("nim.server").start{
--     accounts = {alice = "secret", bob = "secret"},   -- registered first
--     db = "/tmp/chat.db",          -- optional: default a new temporary file
--     port = 0,                     -- optional: 0 (default) picks a free port
--     host = "127.0.0.1",           -- optional
--     bin = "./build/nim-server",   -- optional: else $NIM_SERVER, else found
--   }
--   print(server.url)               -- ws://127.0.0.1:PORT
--   server:stop()                   -- SIGTERM, waits; returns true on a clean exit
--   server:kill()                   -- SIGKILL (crash tests); restart with start{db=server.db, port=server.port}
--
-- start() returns once the server printed "listening on HOST:PORT", so the
-- port is ready; it raises with the server's own message if it cannot start.
local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- The nim-server binary: opts.bin, $NIM_SERVER, ./build/nim-server, then PATH.
function M.find_binary(bin)
  if bin then return bin end
  local env = os.getenv("NIM_SERVER")
  if env and env ~= "" then return env end
  if exists("./build/nim-server") then return "./build/nim-server" end
  return "nim-server"
end

local function tmpname(suffix)
  local name = os.tmpname()         -- creates the file: keep it as the unique name's owner
  return name .. suffix, name
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local Server = {}
Server.__index = Server

local function run_quiet(cmd)
  local ok, how, code = os.execute(cmd)
  return ok == true or (how == "exit" and code == 0)
end

-- Registers an account (runs `nim-server --db DB adduser ACCOUNT TOKEN`).
function M.adduser(bin, db, account, token)
  local log = os.tmpname()
  local ok = run_quiet(("%s --db %s adduser %s %s >%s 2>&1"):format(shell_quote(bin), shell_quote(db),
    shell_quote(account), shell_quote(token), shell_quote(log)))
  local out = read_all(log)
  os.remove(log)
  if not ok then error("nim.server: adduser " .. account .. " failed: " .. out, 2) end
end

function M.start(opts)
  opts = opts or {}
  local bin = M.find_binary(opts.bin)
  local db, owner = opts.db, nil
  if not db then db, owner = tmpname(".db") end
  for account, token in pairs(opts.accounts or {}) do M.adduser(bin, db, account, token) end
  local host, port = opts.host or "127.0.0.1", opts.port or 0
  local errlog = opts.log or (db .. ".log")
  local args = { "--listen", host .. ":" .. port, "--db", db }
  if opts.openRegistration then args[#args + 1] = "--open-registration" end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  for i, a in ipairs(args) do args[i] = shell_quote(a) end
  -- sh prints its pid, then becomes the server (exec): that pid is the server's.
  local cmd = ("exec sh -c 'log=$1; shift; echo $$; exec \"$@\" 2>>\"$log\"' sh %s %s %s"):format(
    shell_quote(errlog), shell_quote(bin), table.concat(args, " "))
  local pipe = assert(io.popen(cmd, "r"))
  local pid = tonumber(pipe:read("l"))
  local line = pipe:read("l")
  local h, p = (line or ""):match("^listening on (.+):(%d+)$")
  if not (pid and h) then
    pipe:close()
    local why = (line or "") .. read_all(errlog)
    if owner then for _, f in ipairs { db, db .. "-wal", db .. "-shm", errlog, owner } do os.remove(f) end end
    error("nim.server: " .. bin .. " did not start: " .. why, 2)
  end
  return setmetatable({
    pid = pid, host = h, port = tonumber(p), url = ("ws://%s:%s"):format(h, p),
    db = db, log = errlog, bin = bin, _pipe = pipe, _owner = owner,
  }, Server)
end

-- Registers one more account on this server's database (safe while running:
-- SQLite serialises the writers).
function Server:adduser(account, token)
  M.adduser(self.bin, self.db, account, token)
end

local function finish(self, signal)
  if not self._pipe then return true end
  os.execute(("kill -%s %d 2>/dev/null"):format(signal, self.pid))
  local ok, how, code = self._pipe:close()      -- waits for the server to exit
  self._pipe = nil
  return ok == true or (how == "exit" and code == 0)
end

-- SIGTERM and wait: true when the server exited cleanly.
function Server:stop() return finish(self, "TERM") end

-- SIGKILL and wait: a crash, for tests. The database stays.
function Server:kill()
  finish(self, "KILL")
  return true
end

-- Stops the server and removes the temporary database it was started with.
function Server:cleanup()
  self:stop()
  if self._owner then
    for _, suffix in ipairs { "", "-wal", "-shm", ".log" } do os.remove(self.db .. suffix) end
    os.remove(self._owner)
  end
end

Server.__gc = Server.stop
Server.__close = Server.cleanup

return M
