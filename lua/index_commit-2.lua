#!lua flags=allow-oom
--[[
  Marks an order's attempt finished: every part of it is in place. From now on ship,
  cancel and expiry may decide the order on its index without looking at the parts.

  Input:
    KEYS[1] readiness marker of the order id's group
    KEYS[2] order index record
    ARGV[1] attempt token that must own the record
    ARGV[2] '1' when a part holds pre-order lines: the index is marked (`pre`), so a ship
            first checks that they were converted (order_decide-2.lua)
  Output: JSON {status} (the order's status now: normally 'active'; another one when a
          ship, cancel or expiry saw every part in place and decided first)
  Errors: not_ready, not_found (the record was dropped: the attempt was presumed dead and
          compensated), invalid_state {detail} (another attempt took the record over)
]]
--- @include "assertReady"
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local cur = rcall('HMGET', KEYS[2], 'tok', 'st')
if not cur[1] then return fail('not_found') end
if cur[1] ~= ARGV[1] then return fail('invalid_state', {detail = 'taken over by another attempt'}) end
rcall('HDEL', KEYS[2], 'ph')
if ARGV[2] == '1' then rcall('HSET', KEYS[2], 'pre', '1') end
return reply({status = cur[2]})
