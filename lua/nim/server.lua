-- nim.server: start and stop the reference server (nim-server) from Lua, for
-- prototypes, demos and tests.
--
--   local server = require("nim.server").start{
--     accounts = {alice = "secret", bob = "secret"},   -- registered first
--     db = "/tmp/chat.db",          -- optional: default a new temporary file
--     port = 0,                     -- optional: 0 (default) picks a free port
--     host = "127.0.0.1",           -- optional
--     bin = "./build/nim-server",   -- optional: else $NIM_SERVER, next to the module, PATH
--     tls = true,                   -- optional: wss:// with a throwaway CA (openssl)
--     -- or tls = {cert = "server.pem", key = "server.key"} (PEM files of your own)
--   }
--   print(server.url)               -- ws://127.0.0.1:PORT (wss://... with tls)
--   print(server.caFile)            -- with tls = true: the throwaway CA, for tlsCAFile
--   server:stop()                   -- SIGTERM, waits; returns true on a clean exit
--   server:kill()                   -- SIGKILL (crash tests); restart with start{db=server.db, port=server.port}
--
-- start() returns once the server printed "listening on HOST:PORT", so the
-- port is ready; it raises with the server's own message if it cannot start.
local compat = require "nim.compat"
local math_type, tointeger = compat.math_type, compat.tointeger

local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- Where nim-server sits next to this file: an install (the rock, make
-- install) puts it in PREFIX/bin beside PREFIX/share/lua/5.x/nim/; a
-- checkout builds it into build/ beside lua/nim/.
local function beside_module()
  local src = debug.getinfo(1, "S").source:match("^@(.*)$") or ""
  -- relative to the working directory, as the path that loaded this file
  -- was ($PWD may be stale: env -C, a subprocess's cwd=)
  if not src:match("^/") and not src:match("^%.%.?/") then src = "./" .. src end
  local prefix = src:match("^(.*)/share/lua/[^/]+/nim/server%.lua$")
  if prefix then return prefix .. "/bin/nim-server" end
  local root = src:match("^(.*)/lua/nim/server%.lua$")
  if root then return root .. "/build/nim-server" end
  return nil
end

local function on_path(name)
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local path = dir .. "/" .. name
    if exists(path) then return path end
  end
  return nil
end

-- The nim-server binary: opts.bin, $NIM_SERVER, next to this module (the
-- rock's bin/, a checkout's build/), then PATH; else raises saying where it
-- looked and what to set.
function M.find_binary(bin)
  if bin then return bin end
  local env = os.getenv("NIM_SERVER")
  if env and env ~= "" then return env end
  local beside = beside_module()
  if beside and exists(beside) then return beside end
  local found = on_path("nim-server")
  if found then return found end
  error("nim.server: nim-server not found; looked at start{bin=} (not given), $NIM_SERVER (not set), " ..
    (beside and (beside .. " (next to this module)") or "next to this module (not an install or a checkout)") ..
    " and $PATH (" .. (os.getenv("PATH") or "") .. "). Install the nim-lua rock (it puts nim-server in the " ..
    "tree's bin/), run make in a checkout, or set NIM_SERVER=/path/to/nim-server (or start{bin = ...})", 3)
end

local function tmpname(suffix)
  local name = os.tmpname()         -- creates the file: keep it as the unique name's owner
  return name .. suffix, name
end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local run_quiet = compat.execute_ok

local Server = {}
Server.__index = Server

-- A throwaway CA and a certificate it signed for names (host names or IP
-- addresses; default localhost, 127.0.0.1 and ::1), valid 7 days, made with
-- the openssl command in dir (which must exist); returns the paths of the
-- CA, the certificate and its key.
function M.make_tls(dir, names)
  local ca, cakey = dir .. "/ca.pem", dir .. "/ca.key"
  local cert, key, csr, ext = dir .. "/server.pem", dir .. "/server.key", dir .. "/server.csr", dir .. "/ext.cnf"
  names = names or { "localhost", "127.0.0.1", "::1" }
  local san, seen = {}, {}
  for _, h in ipairs(names) do
    if not seen[h] then
      seen[h] = true
      san[#san + 1] = (h:match("^[%d.]+$") or h:find(":")) and ("IP:" .. h) or ("DNS:" .. h)
    end
  end
  local f = assert(io.open(ext, "w"))
  f:write("subjectAltName=", table.concat(san, ","), "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
  f:close()
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local log = dir .. "/openssl.log"
  local steps = {
    ("openssl req -x509 %s -keyout %s -out %s -days 7 -subj '/CN=nim-lua throwaway CA' "
     .. "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"):format(
      ec, shell_quote(cakey), shell_quote(ca)),
    ("openssl req %s -keyout %s -out %s -subj '/CN=nim-server'"):format(ec, shell_quote(key), shell_quote(csr)),
    ("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -out %s -days 7 -extfile %s"):format(
      shell_quote(csr), shell_quote(ca), shell_quote(cakey), shell_quote(cert), shell_quote(ext)),
  }
  for _, cmd in ipairs(steps) do
    if not run_quiet(cmd .. " >>" .. shell_quote(log) .. " 2>&1") then
      error("nim.server: making a throwaway certificate failed (is the openssl command installed?): "
            .. read_all(log), 3)
    end
  end
  return ca, cert, key
end


-- Registers an account (runs `nim-server --db DB adduser ACCOUNT TOKEN`).
-- The token goes through standard input, never the command line (ps).
function M.adduser(bin, db, account, token, kdfIterations)
  if type(account) ~= "string" or type(token) ~= "string" then
    error("nim.server: adduser: account and token strings expected", 2)
  end
  if token:find("[\r\n]") then
    error("nim.server: adduser " .. account .. ": a token cannot hold a line break (it is read as one line)", 2)
  end
  local log = os.tmpname()
  local kdf = kdfIterations and ("--kdf-iterations %d "):format(tointeger(kdfIterations)) or ""
  -- The exit status is the log's last line (5.1's close does not return it).
  local p = assert(io.popen(("%s %s--db %s adduser %s >%s 2>&1; echo \"exit=$?\" >>%s"):format(shell_quote(bin), kdf,
    shell_quote(db), shell_quote(account), shell_quote(log), shell_quote(log)), "w"))
  p:write(token, "\n")
  p:close()
  local out = read_all(log)
  os.remove(log)
  local body, status = out:match("^(.-)exit=(%d+)\n$")
  if status ~= "0" then
    error("nim.server: adduser " .. account .. " failed: " .. (body or out), 2)
  end
end

function M.start(opts)
  opts = opts or {}
  local bin = M.find_binary(opts.bin)
  local db, owner = opts.db, nil
  if not db then db, owner = tmpname(".db") end
  local kdf, rate = opts.kdfIterations, opts.maxSendRate
  if kdf ~= nil and math_type(kdf) ~= "integer" then error("nim.server: kdfIterations: an integer expected", 2) end
  if rate ~= nil and math_type(rate) ~= "integer" then error("nim.server: maxSendRate: an integer expected", 2) end
  for account, token in pairs(opts.accounts or {}) do
    local ok, err = pcall(M.adduser, bin, db, account, token, kdf)
    if not ok then
      if owner then for _, f in ipairs { db, db .. "-wal", db .. "-shm", owner } do os.remove(f) end end
      error(err, 2)
    end
  end
  local host, port = opts.host or "127.0.0.1", opts.port or 0
  -- the log and the TLS folder sit beside a database file; beside nothing
  -- for a PostgreSQL URI
  local base = db
  if db:match("^postgres") then base, owner = tmpname("") end
  local errlog = opts.log or (base .. ".log")
  local args = { "--listen", host .. ":" .. port, "--db", db }
  if kdf then args[#args + 1] = "--kdf-iterations"; args[#args + 1] = tostring(kdf) end
  if rate then args[#args + 1] = "--max-send-rate"; args[#args + 1] = tostring(rate) end
  local tls, ca, tlsdir = opts.tls, nil, nil
  if tls == true then
    tlsdir = base .. ".tls"
    assert(run_quiet("mkdir -p " .. shell_quote(tlsdir)), "nim.server: cannot make " .. tlsdir)
    local cert, key
    ca, cert, key = M.make_tls(tlsdir, { host, "localhost", "127.0.0.1", "::1" })
    tls = { cert = cert, key = key }
  end
  if tls then
    if type(tls) ~= "table" or type(tls.cert) ~= "string" or type(tls.key) ~= "string" then
      error("nim.server: tls = true or {cert = FILE, key = FILE} expected", 2)
    end
    args[#args + 1] = "--tls-cert"; args[#args + 1] = tls.cert
    args[#args + 1] = "--tls-key"; args[#args + 1] = tls.key
  end
  if opts.openRegistration then args[#args + 1] = "--open-registration" end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  for i, a in ipairs(args) do args[i] = shell_quote(a) end
  -- A shell (our child until close reaps it, so its pid is never reused
  -- meanwhile) starts the server, prints both pids, passes on TERM (stop)
  -- and USR1 (kill: SIGKILL) to the server, and prints its exit status
  -- ("exit=N": 5.1's close does not return it) once the server is gone.
  local script = [[
log=$1; shift
"$@" 2>>"$log" &
pid=$!
trap 'got=1; kill -TERM $pid 2>/dev/null' TERM
trap 'got=1; kill -KILL $pid 2>/dev/null' USR1
echo "pid $pid $$"
exec 2>/dev/null
while :; do got=0; wait $pid; st=$?; [ $got = 1 ] || break; done
trap - TERM USR1
echo "exit=$st"]]
  local cmd = ("exec sh -c %s sh %s %s %s"):format(shell_quote(script), shell_quote(errlog), shell_quote(bin),
    table.concat(args, " "))
  local pipe = assert(io.popen(cmd, "r"))
  -- The pids and the server's first line, in either order.
  local pid, shpid, line, h, p
  for _ = 1, 2 do
    local l = pipe:read("*l")
    if not l then break end
    local a, b = l:match("^pid (%d+) (%d+)$")
    if not pid and a then pid, shpid = tonumber(a), tonumber(b)
    else line = l; h, p = l:match("^listening on (.+):(%d+)$") end
  end
  if not (pid and h) then
    pipe:close()
    local status = (line or ""):match("^exit=(%d+)$")
    local why = (status and "" or (line or "")) .. read_all(errlog) .. (status and (" (exit status " .. status .. ")") or "")
    if owner then for _, f in ipairs { db, db .. "-wal", db .. "-shm", errlog, owner } do os.remove(f) end end
    if tlsdir then run_quiet("rm -rf " .. shell_quote(tlsdir)) end
    error("nim.server: " .. bin .. " did not start: " .. why, 2)
  end
  return compat.setgc(setmetatable({
    pid = pid, host = h, port = tonumber(p), url = ("%s://%s:%s"):format(tls and "wss" or "ws", h, p),
    caFile = ca, tls = tls, db = db, log = errlog, bin = bin, kdfIterations = kdf, maxSendRate = rate,
    _pipe = pipe, _shpid = shpid, _owner = owner, _tlsdir = tlsdir, _base = base,
  }, Server), "_gc", Server.stop)
end

-- Registers one more account on this server's database (safe while running:
-- SQLite serialises the writers).
function Server:adduser(account, token)
  M.adduser(self.bin, self.db, account, token, self.kdfIterations)
end

-- Signals the server through its shell (TERM, or USR1 for SIGKILL), which
-- outlives it until close; a server gone by itself is never signalled.
local function finish(self, signal)
  if not self._pipe then return true end
  os.execute(("kill -%s %d 2>/dev/null"):format(signal, self._shpid))
  local status
  for line in self._pipe:lines() do status = line:match("^exit=(%d+)$") or status end
  self._pipe:close()
  self._pipe = nil
  return status == "0"
end

-- SIGTERM and wait: true when the server exited cleanly.
function Server:stop() return finish(self, "TERM") end

-- SIGKILL and wait: a crash, for tests. The database stays.
function Server:kill()
  finish(self, "USR1")
  return true
end

-- Stops the server and removes the temporary database it was started with.
function Server:cleanup()
  self:stop()
  if self._owner then
    for _, suffix in ipairs { "", "-wal", "-shm", ".log" } do os.remove(self._base .. suffix) end
    os.remove(self._owner)
    if self._tlsdir then run_quiet("rm -rf " .. shell_quote(self._tlsdir)) end
  end
end

Server.__gc = Server.stop          -- 5.1 and LuaJIT: compat.setgc in start
Server.__close = Server.cleanup

return M
