#!lua
--[[
  Receives or cancels an incoming record, once. Receiving books the units on hand, then
  turns the awaiting pre-orders of that location into locks in the order they were
  taken, while the available units cover each; either way, pre-orders beyond what is
  still incoming there lose their cover, the latest first (`rebalance`, includes/rebalance.lua).
  Repeating the same close answers the record as it was closed.

  Input:
    KEYS[1] readiness marker of the SKU's group
    KEYS[2] stock hash of the SKU
    KEYS[3] closed incoming records of the SKU
    KEYS[4] pre-order book of the SKU
    KEYS[5] event stream of the group
    ARGV[1] ref     ARGV[2] sku     ARGV[3] 'receive' | 'cancel'
    ARGV[4] units received ('' = the units expected; receive only)     ARGV[5] now, ms
  Output: JSON {ref, sku, location, qty, expected_at, status, received_qty,
          preorders = [ [order, token, seq, location, qty, expected_at, state], ...]
          (pre-orders converted, state 'locked', or uncovered, state 'uncovered')
          [, replayed]}
  Errors: not_ready, not_found, invalid_state {status} (closed the other way, or
          received before with another quantity)
  Events: one 'incoming' entry (reason incoming_receive or incoming_cancel), one row:
          d_on_hand the units received, d_locked the units converted; `in` with the
          record's final status; `pre` when pre-orders changed.
]]
--- @include "assertReady"
--- @include "emitEvent"
--- @include "fail"
--- @include "rcall"
--- @include "readLevel"
--- @include "rebalance"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local ref, sku, action, now = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local status = action == 'receive' and 'received' or 'cancelled'
local cur = rcall('HGET', KEYS[2], 'n:' .. ref)
if not cur then
  local closed = rcall('HGET', KEYS[3], ref)
  if not closed then return fail('not_found') end
  local c = cjson.decode(closed)
  local same = c[4] == status and (ARGV[4] == '' or tonumber(ARGV[4]) == tonumber(c[5]))
  if not same then
    return fail('invalid_state', {status = c[4], detail = 'incoming ' .. ref .. ' is ' .. c[4]
      .. (c[4] == 'received' and (' (' .. c[5] .. ' units)') or '')})
  end
  return reply({ref = ref, sku = sku, location = c[1], qty = tonumber(c[2]),
                expected_at = tonumber(c[3]), status = c[4], received_qty = tonumber(c[5]),
                preorders = {}, replayed = true})
end
local r = cjson.decode(cur)
local loc, qty, exp = r[1], tonumber(r[2]), tonumber(r[3])
local got = 0
if action == 'receive' then
  got = ARGV[4] == '' and qty or tonumber(ARGV[4])
  rcall('HINCRBY', KEYS[2], 'o:' .. loc, got)
end
rcall('HDEL', KEYS[2], 'n:' .. ref)
rcall('HSET', KEYS[3], ref, cjson.encode({loc, qty, exp, status, got}))
local changes, converted = rebalance(KEYS[2], KEYS[4], loc, action == 'receive')
local v = rcall('HINCRBY', KEYS[2], 'v', 1)
local o, l, s = read_level(KEYS[2], loc)
local event = {'t', 'incoming', 'op', 'incoming:' .. ref .. ':' .. v, 'ts', now,
               'ref', ref, 'reason', 'incoming_' .. action,
               'rows', cjson.encode({{sku, loc, got, converted, o, l, s, v}}),
               'in', cjson.encode({sku, loc, qty, exp, status, got})}
if #changes > 0 then
  event[#event + 1] = 'pre'; event[#event + 1] = cjson.encode(changes)
end
emit_event(KEYS[5], event)
return reply({ref = ref, sku = sku, location = loc, qty = qty, expected_at = exp,
              status = status, received_qty = got, preorders = changes})
