#!lua
--[[
  Requests a transfer of one SKU between two locations: locks the units at the source
  if, at this instant, its available covers them.

  Input:
    KEYS[1] readiness marker of the SKU's group
    KEYS[2] transfer record
    KEYS[3] stock hash of the SKU
    KEYS[4] event stream of the group
    ARGV[1] transfer id      ARGV[2] fingerprint     ARGV[3] sku
    ARGV[4] from location    ARGV[5] to location     ARGV[6] qty     ARGV[7] now, ms
  Output: JSON {transfer_id, status: 'requested', sku, from_location, to_location, qty[, replayed]}
  Errors: not_ready, idempotency_mismatch,
          insufficient_stock {lines: [{sku, requested, available}]}
  Events: one 'transfer_request' entry with one row.
]]
--- @include "assertReady"
--- @include "availableOf"
--- @include "emitEvent"
--- @include "fail"
--- @include "rcall"
--- @include "readLevel"
--- @include "reply"
--- @include "transferReply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local t = rcall('HMGET', KEYS[2], 'tid', 'sku', 'from', 'to', 'qty', 'st', 'fp')
if t[1] then
  if t[7] ~= ARGV[2] then return fail('idempotency_mismatch') end
  local out = transfer_reply(t, t[6])
  out['replayed'] = true
  return reply(out)
end
local sku, from, qty = ARGV[3], ARGV[4], tonumber(ARGV[6])
local o, l, s = read_level(KEYS[3], from)
local free = available_of(o, l, s)
if free < qty then
  return fail('insufficient_stock', {lines = {{sku = sku, requested = qty, available = free}}})
end
local v = rcall('HINCRBY', KEYS[3], 'v', 1)
l = l + qty
rcall('HSET', KEYS[3], 'o:' .. from, o, 'l:' .. from, l, 's:' .. from, s)
rcall('HSET', KEYS[2], 'tid', ARGV[1], 'sku', sku, 'from', from, 'to', ARGV[5], 'qty', qty,
      'st', 'requested', 'fp', ARGV[2], 'at', ARGV[7])
emit_event(KEYS[4], {'t', 'transfer_request', 'op', 'transfer:' .. ARGV[1] .. ':request',
      'ts', ARGV[7], 'ref', ARGV[1], 'reason', 'transfer_request',
      'rows', cjson.encode({{sku, from, 0, qty, o, l, s, v}}),
      'tid', ARGV[1], 'sku', sku, 'from', from, 'to', ARGV[5], 'qty', qty, 'st', 'requested',
      'fp', ARGV[2]})
return reply({transfer_id = ARGV[1], status = 'requested', sku = sku, from_location = from,
              to_location = ARGV[5], qty = qty})
