#!lua
--[[
  Moves a transfer one step, the one ARGV[4] names:
    ship     the transfer left its source: source on_hand and locked drop, the units are
             in transit;
    receive  the transfer arrived: destination on_hand rises;
    cancel   the transfer was called off before shipping: the source's lock is released.

  Input:
    KEYS[1] readiness marker of the SKU's group
    KEYS[2] transfer record
    KEYS[3] stock hash of the SKU
    KEYS[4] event stream of the group
    ARGV[1] transfer id      ARGV[2] now, ms      ARGV[3] retention of a finished transfer, ms
    ARGV[4] step: 'ship' | 'receive' | 'cancel'
  Output: JSON {transfer_id, status, sku, from_location, to_location, qty[, replayed]}
  Errors: not_ready, not_found, invalid_state {status}, validation_error (an unknown step)
  Events: one 'transfer_<step>' entry with one row.
]]
--- @include "fail"
--- @include "transferStep"
if not STEPS[ARGV[4]] then
  return fail('validation_error', {detail = 'unknown transfer step ' .. tostring(ARGV[4])})
end
return transfer_step(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV, ARGV[4])
