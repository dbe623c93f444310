#!lua
--[[
  The expiry sweep's batch: releases the locks of many due reservation parts of one slot
  group in one call (one `settle-4.lua` expire each, in effect), so a sweep costs one call per
  group and pass instead of one per part. Each part is settled on its own terms: a part
  refused (not due, no longer active, a key missing) is left as it was and reported; the
  others are expired. Nothing is written for a refused part (every check comes first).

  Input:
    KEYS[1] readiness marker of the group
    KEYS[2] expiry index of the group
    KEYS[3] event stream of the group
    KEYS[4..] for each part in ARGV[3]'s order: the part's key, then the stock hash of
              each SKU it names, in that order, then the pre-order book of each, then
              (for a part with a customer id) that customer's count of each of those
              SKUs, in that order
    ARGV[1] now, ms (the sweep's one reading of the Redis clock)
    ARGV[2] retention of a settled part, ms
    ARGV[3] JSON list of parts, each [order id, list of its SKUs] or
            [order id, list of its SKUs, customer id]
  Output: JSON [outcome, ...] per part: 'expired', 'replayed' (expired before), or the
          error code the part was refused with ('not_found', 'invalid_state', 'keys')
  Errors: not_ready
  Events: one 'expire' entry per part expired, a row per line (see settle-4.lua).
]]
--- @include "assertReady"
--- @include "settlePart"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local parts = cjson.decode(ARGV[3])
local out, k = {}, 4
for i = 1, #parts do
  local order_id, skus, customer = parts[i][1], parts[i][2], parts[i][3] or ''
  local part = KEYS[k]
  local stocks, books, counts = {}, {}, {}
  for j = 1, #skus do
    stocks[skus[j]] = KEYS[k + j]
    books[skus[j]] = KEYS[k + #skus + j]
  end
  k = k + 1 + 2 * #skus
  if customer ~= '' then
    for j = 1, #skus do counts[skus[j]] = KEYS[k + j - 1] end
    k = k + #skus
  end
  local res = cjson.decode(settle_part(KEYS[1], part, KEYS[2], KEYS[3], stocks, books, counts,
                                       {order_id, ARGV[1], ARGV[2], '', ''}, 'expire'))
  if res['err'] then
    out[i] = res['err']
  elseif res['replayed'] then
    out[i] = 'replayed'
  else
    out[i] = 'expired'
  end
end
return cjson.encode(out)
