#!lua
--[[
  Decides the fate of a whole order on its index record: the single arbiter when a ship
  races an expiry or a cancel, whatever groups the order's parts live in. The caller
  then applies the decision to every part (cancel-4, ship-4, expire-4).

  Input:
    KEYS[1] readiness marker of the order id's group
    KEYS[2] order index record
    ARGV[1] action: 'cancel' | 'ship' | 'expire'
    ARGV[2] now, ms
  Output: JSON {status, tok, exp, body[, replayed][, lapsed]}; `lapsed` means the
          reservation had passed expires_at, so it was decided 'expired' instead.
  Errors: not_ready, not_found, invalid_state {status, tok, body}
]]
--- @include "common"
if rcall('EXISTS', KEYS[1]) == 0 then return fail('not_ready') end
local cur = rcall('HMGET', KEYS[2], 'st', 'tok', 'exp', 'body')
if not cur[1] then return fail('not_found') end
local target = ({cancel = 'cancelled', ship = 'shipped', expire = 'expired'})[ARGV[1]]
local st, exp, now = cur[1], tonumber(cur[3]), tonumber(ARGV[2])
local out = {status = st, tok = cur[2], exp = exp, body = cjson.decode(cur[4])}
if st == target then
  out['replayed'] = true
  return reply(out)
end
if st ~= 'active' then return fail('invalid_state', out) end
if ARGV[1] == 'expire' and now < exp then return fail('invalid_state', out) end
if ARGV[1] ~= 'expire' and now >= exp then
  target = 'expired'
  out['lapsed'] = true
end
rcall('HSET', KEYS[2], 'st', target, 'done', ARGV[2])
out['status'] = target
return reply(out)
