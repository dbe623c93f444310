#!lua flags=allow-oom
--[[
  Moves a reservation part out of 'active', once, by the transition ARGV[6] names:
    cancel   the order was abandoned or cancelled: its locks go back to available;
    expire   the reservation outlived its TTL: its locks go back to available (only once
             expires_at <= now);
    ship     the order left the warehouse: on_hand and locked both drop by the reserved qty;
    release  compensation: undo a part that this attempt created when another group
             refused; the part is deleted so a retry starts afresh.

  Why `allow-oom` for all four: `release` must run on a full Redis (it frees what a
  refused attempt took; refusing it would leave its locks held until their TTL), and the
  other three only ever roll forward a decision the order index took first
  (`order_decide-2.lua`, a writing script a full Redis refuses before it runs, so a new
  cancel or ship is still refused on a full Redis). Every transition frees memory (locks,
  the expiry entry, pre-order book entries; a released part is deleted) but for its one
  event entry, O(lines) like release's has always been.

  Input:
    KEYS[1] readiness marker of the group
    KEYS[2] reservation part of the order in this group
    KEYS[3] expiry index of the group
    KEYS[4] event stream of the group
    KEYS[5..] stock hash of each SKU named in ARGV[4], same order (m SKUs:
              KEYS[5..4+m]); then the pre-order book of each (KEYS[5+m..4+2m]); then,
              for an order with a customer id, that customer's count of each of those
              SKUs (KEYS[5+2m..4+3m])
    ARGV[1] order id        ARGV[2] now, ms        ARGV[3] retention of the settled part, ms
    ARGV[4] JSON [sku, ...] naming KEYS[5..]
    ARGV[5] attempt token that must own the part, or '' for any
    ARGV[6] transition: 'cancel' | 'expire' | 'ship' | 'release'
  Output: JSON {status, expires_at, lines: [ [sku, location, qty], ...][, replayed]}
  Errors: not_ready, not_found, invalid_state {status}, keys (a SKU of the part has no key),
          validation_error (an unknown transition)
  Units counted against a per-customer limit go back to the customer, except on ship.
  Events: one entry whose type is the transition, a row per line; `cu`, `cnt`, `cat`
          (counted at) when the part counted units against a per-customer limit.
]]
--- @include "fail"
--- @include "settlePart"
local action = ARGV[6]
if not SETTLE[action] then
  return fail('validation_error', {detail = 'unknown transition ' .. tostring(action)})
end
local stocks, books, counts, skus = {}, {}, {}, cjson.decode(ARGV[4])
for i = 1, #skus do
  stocks[skus[i]] = KEYS[4 + i]
  books[skus[i]] = KEYS[4 + #skus + i]
  counts[skus[i]] = KEYS[4 + 2 * #skus + i]
end
return settle_part(KEYS[1], KEYS[2], KEYS[3], KEYS[4], stocks, books, counts, ARGV, action)
