--[[
  `limit_used(count, gen, window, now)`: what the customer holds within the window at
  `now`, nothing written: the units, the entries that left the window, and whether the
  count is stale (another generation). See limitOf for the count's layout.
]]
--- @include "entryQty"
--- @include "rcall"
local function limit_used(count, gen, window, now)
  local g = tonumber(rcall('ZSCORE', count, '@'))
  if g ~= -gen then return 0, {}, true end
  local used = -(tonumber(rcall('ZSCORE', count, '#')) or 0)
  local gone = {}
  if window > 0 then
    gone = rcall('ZRANGEBYSCORE', count, '(0', now - window * 1000)
    for i = 1, #gone do used = used - entry_qty(gone[i]) end
  end
  return used, gone, false
end
