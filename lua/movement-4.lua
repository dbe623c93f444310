#!lua
--[[
  One on_hand movement of one (sku, location), of the kind ARGV[13] names:
    inbound     stock received at a location (purchase order, production): delta = qty;
    adjust      a correction of on_hand (damage, loss, found, count, correction,
                reconcile): a delta, or with ARGV[7] a count that sets on_hand, with
                ARGV[8] only if on_hand still has the expected value (compare-and-set);
    return      a customer return: restocked (delta = qty) or only recorded (delta = 0);
    pos_sale    a till sale, delta = -qty: the goods already left, so it is never
                refused, even below locked or 0;
    pos_return  a return at the till, restocked: delta = qty;
    pos_count   an RFID or hand count at a store: sets on_hand (ARGV[7]), recorded as
                the difference.

  Input:
    KEYS[1] readiness marker of the SKU's group
    KEYS[2] stock hash of the SKU
    KEYS[3] idempotency record of this movement
    KEYS[4] event stream of the group
    ARGV[1] op id            ARGV[2] ref            ARGV[3] reason
    ARGV[4] sku              ARGV[5] location       ARGV[6] delta
    ARGV[7] set_on_hand or ''                       ARGV[8] expected on_hand or ''
    ARGV[9] fingerprint of the request              ARGV[10] now, ms
    ARGV[11] retention of the idempotency record, ms
    ARGV[12] idempotency suffix (kind:len(sku):sku:ref), copied into the event
    ARGV[13] kind: 'inbound' | 'adjust' | 'return' | 'pos_sale' | 'pos_return' | 'pos_count'
  Output: JSON {sku, location, on_hand, locked, safety_stock, available[, replayed]}
  Errors: not_ready, idempotency_mismatch, invalid_state, validation_error (an unknown kind)
  Events: one entry whose type is the kind, with one row.
]]
--- @include "applyMovement"
--- @include "fail"
if not FLOORS[ARGV[13]] then
  return fail('validation_error', {detail = 'unknown movement kind ' .. tostring(ARGV[13])})
end
return apply_movement(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV, ARGV[13])
