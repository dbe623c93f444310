--[[
  `limit_of(limit)`: a per-customer limit's units per customer (`n`, 0 = no limit),
  window in seconds (`w`, 0 = the SKU's lifetime) and generation (`gen`).

  Per-customer limits, kept in the SKU's slot group so that the reserve script checks and
  counts in the same call that locks the stock.

  A limit (hash, `Keys.limit`): `n` units per customer (0 = no limit), `w` window in
  seconds (0 = the SKU's lifetime), `v` version (+1 per change), `gen` the version at
  which the limit was set where there was none: counts of an older generation are stale,
  so a limit removed and set again starts every customer from zero.
  A count (zset, `Keys.customer_count`): member '@' scored -gen, member '#' scored minus
  the units the entries hold, and one entry '<qty>:<order id>' per order, scored by the
  time it was counted (ms, the caller's "now"). Entries that left the window are trimmed
  when the count is next used, once each, so a check costs O(1) plus what left the window
  since the last one. Both meta scores are <= 0 and every entry's is a time > 0, so a range
  `(0 .. t` holds entries only.
]]
--- @include "rcall"
local function limit_of(limit)
  -- EXISTS first: most SKUs have no limit, and an empty field costs more than the check.
  if rcall('EXISTS', limit) == 0 then return 0, 0, 0 end
  local v = rcall('HMGET', limit, 'n', 'w', 'gen')
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
end
