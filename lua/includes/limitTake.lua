--[[
  `limit_take(count, gen, window, now, stale, gone, qty, member)`: counts `qty` units of
  the order `member` names, after trimming `gone` (from limit_used); a stale count starts
  again from this generation. See limitOf for the count's layout.
]]
--- @include "entryQty"
--- @include "rcall"
-- A windowed count outlives its newest entry by the window plus this margin (clock skew
-- between the callers that pass "now" and Redis, which applies the expiry).
local LIMIT_EXPIRY_MARGIN_MS = 60000

local function limit_take(count, gen, window, now, stale, gone, qty, member)
  if stale then
    rcall('DEL', count)
    rcall('ZADD', count, -gen, '@')
  end
  local delta = 0
  for i = 1, #gone do
    rcall('ZREM', count, gone[i])
    delta = delta + entry_qty(gone[i])
  end
  if rcall('ZADD', count, now, member) == 1 then delta = delta - qty end
  rcall('ZINCRBY', count, delta, '#')
  if window > 0 then
    rcall('PEXPIREAT', count, now + window * 1000 + LIMIT_EXPIRY_MARGIN_MS)
  else
    rcall('PERSIST', count)
  end
end
