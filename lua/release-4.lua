#!lua flags=allow-oom
--[[
  Compensation: undo a part that this attempt created when another group refused; the part is deleted so a retry starts afresh.

  Input:
    KEYS[1] readiness marker of the group
    KEYS[2] reservation part of the order in this group
    KEYS[3] expiry index of the group
    KEYS[4] event stream of the group
    KEYS[5..] stock hash of each SKU named in ARGV[4], same order
    ARGV[1] order id        ARGV[2] now, ms        ARGV[3] retention of the settled part, ms
    ARGV[4] JSON [sku, ...] naming KEYS[5..]
    ARGV[5] attempt token that must own the part, or '' for any
  Output: JSON {status, expires_at, lines: [ [sku, location, qty], ...][, replayed]}
  Errors: not_ready, not_found, invalid_state {status}, keys (a SKU of the part has no key)
  Events: one 'release' entry, a row per line.
]]
--- @include "common"
--- @include "settlePart"
local stocks, skus = {}, cjson.decode(ARGV[4])
for i = 1, #skus do stocks[skus[i]] = KEYS[4 + i] end
return settle_part(KEYS[1], KEYS[2], KEYS[3], KEYS[4], stocks, ARGV, 'release')
