-- The embed example as a benchmark: a 60 Hz C game loop (examples/embed/host.c)
-- calling nim:poll(0[, budget]) once per frame while a second client sends it
-- messages through nim-server. The figure is the share of the 16.667 ms
-- frame the SDK used (its peer: the frame itself), and how fast the messages
-- got through: the default budget (0.5 ms of dispatch per poll) protects the
-- frame, a wider one trades frame time for throughput.
local function run(count, rate, budget)
  local env = budget and ("NIM_BUDGET=" .. budget .. " ") or ""
  local p = assert(io.popen(("%slua5.4 examples/embed/run.lua %d %d 2>&1"):format(env, count, rate)))
  local out = p:read("*a")
  local ok = p:close()
  local max, p99, mean = out:match("max ([%d.]+) ms, p99 ([%d.]+) ms, mean ([%d.]+) ms")
  local frames = tonumber(out:match("received %d+ messages in (%d+) frames") or "")
  if not (ok and max and frames) then io.stderr:write(out) error("embed bench failed") end
  print(("embed: %d msgs offered at %d/s, poll budget %-6s SDK per frame max %.3f ms (%.1f%% of the frame), p99 %.3f ms, mean %.3f ms; all in %d frames = %.0f msg/s"):format(
    count, rate, budget and (budget .. " ms") or "default", max, max / 16.667 * 100, p99, mean, frames, count / (frames / 60)))
end
run(10000, 5000)
run(20000, 10000)
run(20000, 10000, 2)
