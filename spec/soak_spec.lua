-- A short run of the fault-injection soak (spec/soak.lua; `make soak` runs
-- a long one): through a proxy that delays, stalls, cuts and blackholes
-- connections, with devices SIGSTOPped and SIGKILLed and the server
-- SIGKILLed, every acknowledged message ends up stored exactly once on
-- every device of both accounts, and unread equals its recount.
local soak = require "soak"

describe("soak #net", function()
  it("loses nothing acknowledged and counts unread right through every fault", function()
    local seed = tonumber(os.getenv("SOAK_SEED"))
    local report = soak.run { seconds = tonumber(os.getenv("SOAK_SHORT_SECONDS")) or 12, seed = seed,
                              say = function(s) io.stderr:write(s, "\n") end }
    assert.is_true(report.acked > 20, "too few messages acknowledged to mean anything")
    assert.is_true(report.stats.kills + report.stats.stops + report.stats.server_kills > 3, "too few faults")
    assert.is_true(report.stats.long_stops >= 1, "no long stall")
    for _, d in ipairs(report.devices) do
      local where = d.id .. " (seed " .. report.seed .. ")"
      assert.is_true(d.synced, where .. " synced")
      assert.same({}, d.missing, where .. ": acknowledged messages missing")
      assert.same({}, d.dupes, where .. ": messages stored twice")
      assert.same({}, d.mismatches, where .. ": unread differs from its recount")
    end
  end)
end)
