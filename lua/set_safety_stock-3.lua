#!lua
--[[
  Sets the units of one (sku, location) held back from online sale. Setting the value it
  already has changes nothing and emits nothing (PUT semantics).

  Input:
    KEYS[1] readiness marker of the SKU's group
    KEYS[2] stock hash of the SKU
    KEYS[3] event stream of the group
    ARGV[1] sku     ARGV[2] location     ARGV[3] safety stock (>= 0)     ARGV[4] now, ms
  Output: JSON {sku, location, on_hand, locked, safety_stock, available}
  Errors: not_ready
  Events: one 'policy' entry with one row (deltas 0), when the value changes.
]]
--- @include "assertReady"
--- @include "emitEvent"
--- @include "levelsReply"
--- @include "rcall"
--- @include "readLevel"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local sku, loc, ss = ARGV[1], ARGV[2], tonumber(ARGV[3])
local o, l, s = read_level(KEYS[2], loc)
if rcall('HEXISTS', KEYS[2], 'o:' .. loc) == 1 and s == ss then
  return reply(levels_reply(sku, loc, o, l, s))
end
local v = rcall('HINCRBY', KEYS[2], 'v', 1)
rcall('HSET', KEYS[2], 'o:' .. loc, o, 'l:' .. loc, l, 's:' .. loc, ss)
emit_event(KEYS[3], {'t', 'policy', 'op', 'policy:' .. sku .. ':' .. loc .. ':' .. v,
      'ts', ARGV[4], 'ref', sku, 'reason', 'safety_stock',
      'rows', cjson.encode({{sku, loc, 0, 0, o, l, ss, v}})})
return reply(levels_reply(sku, loc, o, l, ss))
