#!lua
--[[
  A correction of on_hand

  Input:
    KEYS[1] readiness marker of the SKU's group
    KEYS[2] stock hash of the SKU
    KEYS[3] idempotency record of this movement
    KEYS[4] event stream of the group
    ARGV[1] op id            ARGV[2] ref            ARGV[3] reason
    ARGV[4] sku              ARGV[5] location       ARGV[6] delta ( damage, loss, found, count, correction, reconcile. With a[7] it sets on_hand (a count), with a[8] only if on_hand still has the expected value (compare-and-set).:delta or set_on_hand)
    ARGV[7] set_on_hand or ''                       ARGV[8] expected on_hand or ''
    ARGV[9] fingerprint of the request              ARGV[10] now, ms
    ARGV[11] retention of the idempotency record, ms
    ARGV[12] idempotency suffix (kind:len(sku):sku:ref), copied into the event
  Output: JSON {sku, location, on_hand, locked, safety_stock, available[, replayed]}
  Errors: not_ready, idempotency_mismatch, invalid_state
  Events: one 'adjust' entry with one row.
]]
--- @include "common"
--- @include "applyMovement"
return apply_movement(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV, 'adjust', 'zero')
