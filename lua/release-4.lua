#!lua flags=allow-oom
--[[
  Compensation: undo a part that this attempt created when another group refused; the part is deleted so a retry starts afresh.

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
  Output: JSON {status, expires_at, lines: [ [sku, location, qty], ...][, replayed]}
  Errors: not_ready, not_found, invalid_state {status}, keys (a SKU of the part has no key)
  Units counted against a per-customer limit go back to the customer.
  Events: one 'release' entry, a row per line; `cu`, `cnt`, `cat` (counted at) when
          the part counted units against a per-customer limit.
]]
--- @include "common"
--- @include "customerLimit"
--- @include "preorderBook"
--- @include "settlePart"
return settle_from_keys('release')
