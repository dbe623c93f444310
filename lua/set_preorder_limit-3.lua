#!lua
--[[
  Sets the units of one (sku, location) that reservations may take from its incoming
  stock (pre-orders). Setting the value it already has changes nothing and emits nothing.
  Lowering it takes nothing from pre-orders already taken: it only stops new ones while
  the awaiting units are at or above it.

  Input:
    KEYS[1] readiness marker of the SKU's group
    KEYS[2] stock hash of the SKU
    KEYS[3] event stream of the group
    ARGV[1] sku     ARGV[2] location     ARGV[3] pre-order limit (>= 0)     ARGV[4] now, ms
  Output: JSON {sku, location, preorder_limit, preorders_awaiting}
  Errors: not_ready
  Events: one 'policy' entry (reason preorder_limit) with one row of zero deltas and
          `pl` = [sku, location, limit], when the value changes.
]]
--- @include "assertReady"
--- @include "emitEvent"
--- @include "rcall"
--- @include "readLevel"
--- @include "reply"
--- @include "setOrClear"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local sku, loc, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local cur = rcall('HMGET', KEYS[2], 'p:' .. loc, 'q:' .. loc)
local answer = {sku = sku, location = loc, preorder_limit = limit,
                preorders_awaiting = tonumber(cur[2]) or 0}
if (tonumber(cur[1]) or 0) == limit then return reply(answer) end
local o, l, s = read_level(KEYS[2], loc)
rcall('HSET', KEYS[2], 'o:' .. loc, o, 'l:' .. loc, l, 's:' .. loc, s)
set_or_clear(KEYS[2], 'p:' .. loc, limit)
local v = rcall('HINCRBY', KEYS[2], 'v', 1)
emit_event(KEYS[3], {'t', 'policy', 'op', 'policy:' .. sku .. ':' .. loc .. ':' .. v,
      'ts', ARGV[4], 'ref', sku, 'reason', 'preorder_limit',
      'rows', cjson.encode({{sku, loc, 0, 0, o, l, s, v}}),
      'pl', cjson.encode({sku, loc, limit})})
return reply(answer)
