#!lua
--[[
  Reserves the lines of one order that fall in one slot group: all of them or none.

  Input:
    KEYS[1] readiness marker of the group
    KEYS[2] reservation part of this order in this group
    KEYS[3] expiry index of the group (zset, score = expires_at ms)
    KEYS[4] event stream of the group
    KEYS[5..] stock hash of each line's SKU, in line order
    ARGV[1] order id         ARGV[2] attempt token      ARGV[3] fingerprint of the part
    ARGV[4] now, ms          ARGV[5] expires_at, ms
    ARGV[6] location priority, space separated (tried first, in order, for lines
            that name no location; other locations follow by name)
    ARGV[7] JSON lines [ [sku, qty, location or ''], ...]; one (sku, location) at most once
    ARGV[8] fingerprint of the whole order (kept so warmup can rebuild the order index)
    ARGV[9] JSON bundle lines whose components are in this part, [ [bundle sku, qty,
            location or '', [ [component sku, qty per bundle], ...] ], ...] ('' = none);
            kept on the part (`bdl`) and in the event, so the ledger names the bundle
  Output: JSON {status, expires_at, lines: [ [sku, location, qty], ...][, replayed]}
  Errors: not_ready, idempotency_mismatch,
          insufficient_stock {lines: [{sku, requested, available}]} (nothing written)
  Events: one 'reserve' entry, a row per (sku, location) locked; `bdl` = ARGV[9].
]]
--- @include "common"
--- @include "planPart"
--- @include "applyPart"
local stocks = {}
for i = 5, #KEYS do stocks[#stocks + 1] = KEYS[i] end
local done, plan = plan_part(KEYS[1], KEYS[2], stocks, ARGV)
if done then return done end
return reply(apply_part(KEYS[2], KEYS[3], KEYS[4], ARGV, plan))
