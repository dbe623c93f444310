--[[
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
-- A windowed count outlives its newest entry by the window plus this margin (clock skew
-- between the callers that pass "now" and Redis, which applies the expiry).
local LIMIT_EXPIRY_MARGIN_MS = 60000

local function limit_of(limit)
  local v = rcall('HMGET', limit, 'n', 'w', 'gen')
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
end

local function entry_qty(member)
  return tonumber(string.match(member, '^(%d+):'))
end

-- What the customer holds within the window at `now` (nothing is written): the units,
-- the entries that left the window, and whether the count is stale (another generation).
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

-- Counts `qty` units of the order `member` names, after trimming `gone` (from limit_used).
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

-- Gives back what an order counted: nothing if its entry already left the window or the
-- count belongs to a newer generation of the limit.
local function limit_give(count, gen, qty, member)
  if tonumber(rcall('ZSCORE', count, '@')) ~= -gen then return end
  if rcall('ZREM', count, member) == 0 then return end
  rcall('ZINCRBY', count, qty, '#')
  if rcall('ZCARD', count) <= 2 then rcall('DEL', count) end
end
