#!lua
--[[
  The transfer arrived: destination on_hand rises.

  Input:
    KEYS[1] readiness marker of the SKU's group
    KEYS[2] transfer record
    KEYS[3] stock hash of the SKU
    KEYS[4] event stream of the group
    ARGV[1] transfer id      ARGV[2] now, ms      ARGV[3] retention of a finished transfer, ms
  Output: JSON {transfer_id, status, sku, from_location, to_location, qty[, replayed]}
  Errors: not_ready, not_found, invalid_state {status}
  Events: one 'transfer_receive' entry with one row.
]]
--- @include "common"
--- @include "transferStep"
return transfer_step(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV, 'receive')
