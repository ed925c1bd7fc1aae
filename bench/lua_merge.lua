-- A careful pure-Lua mergeSessions with the same contract as NIM.mergeSessions:
-- a hash index of ids, shallow merge into a new table, then table.sort with the
-- input position as tie-breaker (table.sort is not stable on its own). It is
-- the benchmark's peer and the specs' oracle for randomised inputs.
local M = {}

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

function M.mergeSessions(olds, news)
  if news.id ~= nil then news = {news} end
  local out, pos, index, merged = {}, {}, {}, {}
  local n = 0
  if olds then
    for i = 1, #olds do
      local s = olds[i]
      n = n + 1
      out[n] = s
      pos[s] = n
      if index[s.id] == nil then index[s.id] = n end
    end
  end
  local dedup = n > 0   -- with no olds, news come back sorted as given (JS SDK)
  for j = 1, #news do
    local s = news[j]
    local at = dedup and index[s.id]
    if at then
      local m = out[at]
      if not merged[m] then
        local p = pos[m]
        m = copy(m)
        merged[m] = true
        pos[m] = p
        out[at] = m
      end
      for k, v in pairs(s) do m[k] = v end
    else
      n = n + 1
      out[n] = s
      pos[s] = n
      index[s.id] = n
    end
  end
  table.sort(out, function(a, b)
    local ta, tb = a.updateTime, b.updateTime
    if ta ~= tb then
      if ta == nil then return false end
      if tb == nil then return true end
      return ta > tb
    end
    return pos[a] < pos[b]
  end)
  return out
end

return M
