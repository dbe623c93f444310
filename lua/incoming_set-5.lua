#!lua
--[[
  Creates or changes an incoming record: stock expected at a location on a date (a
  purchase order, a production run). Setting the values it already has changes nothing
  and emits nothing. A change that leaves fewer units incoming than are pre-ordered there
  takes the cover from the latest pre-orders (`rebalance`, includes/rebalance.lua).

  Input:
    KEYS[1] readiness marker of the SKU's group
    KEYS[2] stock hash of the SKU
    KEYS[3] closed incoming records of the SKU
    KEYS[4] pre-order book of the SKU
    KEYS[5] event stream of the group
    ARGV[1] ref     ARGV[2] sku     ARGV[3] location     ARGV[4] qty (>= 1)
    ARGV[5] expected_at, ms         ARGV[6] now, ms
  Output: JSON {ref, sku, location, qty, expected_at, status = 'open', received_qty = 0,
          created, preorders = [ [order, token, seq, location, qty, expected_at, state],
          ...] (pre-orders this change uncovered)[, replayed]}
  Errors: not_ready, invalid_state {status} (the ref is received or cancelled, or is
          for another location)
  Events: one 'incoming' entry (reason incoming_create or incoming_change) with one row
          of zero deltas, `in` = [sku, location, qty, expected_at, 'open', 0] and, when
          pre-orders lost their cover, `pre`.
]]
--- @include "assertReady"
--- @include "emitEvent"
--- @include "fail"
--- @include "rcall"
--- @include "readLevel"
--- @include "rebalance"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local ref, sku, loc, qty, exp = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local closed = rcall('HGET', KEYS[3], ref)
if closed then
  local c = cjson.decode(closed)
  return fail('invalid_state', {status = c[4], detail = 'incoming ' .. ref .. ' is ' .. c[4]})
end
local answer = {ref = ref, sku = sku, location = loc, qty = qty, expected_at = exp,
                status = 'open', received_qty = 0}
local cur = rcall('HGET', KEYS[2], 'n:' .. ref)
if cur then
  local r = cjson.decode(cur)
  if r[1] ~= loc then
    return fail('invalid_state', {status = 'open',
      detail = 'incoming ' .. ref .. ' is for location ' .. r[1]})
  end
  if tonumber(r[2]) == qty and tonumber(r[3]) == exp then
    answer.created, answer.replayed = false, true
    return reply(answer)
  end
end
local o, l, s = read_level(KEYS[2], loc)
rcall('HSET', KEYS[2], 'o:' .. loc, o, 'l:' .. loc, l, 's:' .. loc, s,
      'n:' .. ref, cjson.encode({loc, qty, exp}))
local changes = rebalance(KEYS[2], KEYS[4], loc, false)
local v = rcall('HINCRBY', KEYS[2], 'v', 1)
local event = {'t', 'incoming', 'op', 'incoming:' .. ref .. ':' .. v, 'ts', ARGV[6],
               'ref', ref, 'reason', cur and 'incoming_change' or 'incoming_create',
               'rows', cjson.encode({{sku, loc, 0, 0, o, l, s, v}}),
               'in', cjson.encode({sku, loc, qty, exp, 'open', 0})}
if #changes > 0 then
  event[#event + 1] = 'pre'; event[#event + 1] = cjson.encode(changes)
end
emit_event(KEYS[5], event)
answer.created = not cur
if #changes > 0 then answer.preorders = changes end
return reply(answer)
