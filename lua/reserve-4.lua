#!lua
--[[
  Reserves the lines of one order that fall in one slot group: all of them or none.

  Input:
    KEYS[1] readiness marker of the group
    KEYS[2] reservation part of this order in this group
    KEYS[3] expiry index of the group (zset, score = expires_at ms)
    KEYS[4] event stream of the group
    KEYS[5..] stock hash of each line's SKU, in line order (n lines: KEYS[5..4+n]); then
              the per-customer limit of each line's SKU (KEYS[5+n..4+2n]); then the
              pre-order book of each line's SKU (KEYS[5+2n..4+3n]); then, with a customer
              id, that customer's count of each line's SKU (KEYS[5+3n..4+4n])
    ARGV[1] order id         ARGV[2] attempt token      ARGV[3] fingerprint of the part
    ARGV[4] now, ms          ARGV[5] expires_at, ms
    ARGV[6] location priority, space separated (tried first, in order, for lines
            that name no location; other locations follow by name)
    ARGV[7] JSON lines [ [sku, location or '', qty], ...] (the order of a reply's lines);
            one (sku, location) at most once
    ARGV[8] fingerprint of the whole order (kept so warmup can rebuild the order index)
    ARGV[9] JSON bundle lines whose components are in this part, [ [bundle sku, qty,
            location or '', [ [component sku, qty per bundle], ...] ], ...] ('' = none);
            kept on the part (`bdl`) and in the event, so the ledger names the bundle
    ARGV[10] customer id, or '' (none)
  Output: JSON {status, expires_at, lines: [ [sku, location, qty], ...][, pre: [ [sku,
          location, qty, seq, expected_at], ...] (pre-ordered units)][, replayed]}
  Errors: not_ready, idempotency_mismatch,
          validation_error {field: customer_id} (a limited SKU and no customer id),
          limit_exceeded {lines: [{sku, requested, allowed}]},
          insufficient_stock {lines: [{sku, requested, available}]} (nothing written)
  Events: one 'reserve' entry, a row per (sku, location) locked or pre-ordered (`pre`:
          the pre-order lines, as in the output); `bdl` = ARGV[9]; with
          `cu` (customer) and `cnt` (JSON [ [sku, qty, limit generation], ...]) when units
          were counted.
]]
--- @include "applyPart"
--- @include "planPart"
local n = (#KEYS - 4) / ((ARGV[10] or '') ~= '' and 4 or 3)
local stocks, limits, books, counts = {}, {}, {}, {}
for i = 1, n do
  stocks[i] = KEYS[4 + i]
  limits[i] = KEYS[4 + n + i]
  books[i] = KEYS[4 + 2 * n + i]
  counts[i] = KEYS[4 + 3 * n + i]
end
local done, plan, counting = plan_part(KEYS[1], KEYS[2], stocks, limits, counts, books, ARGV)
if done then return done end
-- The answer from the JSON the part's lines were stored as, not encoded a second time.
local lines_json, pre_json = apply_part(KEYS[2], KEYS[3], KEYS[4], ARGV, plan, counting)
local pre = pre_json and (',"pre":' .. pre_json) or ''
return '{"status":"active","expires_at":' .. ARGV[5] .. ',"lines":' .. lines_json .. pre .. '}'
