-- The embed example as a benchmark: a 60 Hz C game loop (examples/embed/host.c)
-- calling nim:poll(0) once per frame while a second client sends it 10,000
-- messages at 5,000/s through nim-server. The figure is the share of a
-- 16.667 ms frame the SDK used (its peer: the frame itself).
local p = assert(io.popen("lua5.4 examples/embed/run.lua 10000 5000 2>&1"))
local out = p:read("a")
local ok = p:close()
local max, p99, mean = out:match("max ([%d.]+) ms, p99 ([%d.]+) ms, mean ([%d.]+) ms")
if not (ok and max) then io.stderr:write(out) error("embed bench failed") end
local frames = out:match("received %d+ messages in (%d+) frames")
print(("embed: 10,000 msgs at 5,000/s into a 60 Hz loop (%s frames): SDK per frame max %.3f ms (%.1f%% of the frame), p99 %.3f ms (%.1f%%), mean %.3f ms"):format(
  frames, max, max / 16.667 * 100, p99, p99 / 16.667 * 100, mean))
