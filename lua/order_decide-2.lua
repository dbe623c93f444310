#!lua
--[[
  Decides the fate of a whole order on its index record: the single arbiter when a ship
  races an expiry or a cancel, whatever groups the order's parts live in. The caller
  then applies the decision to every part (settle-4: cancel, ship, expire).

  An order whose reservation attempt has not committed (`ph` = 'p', see index_open-2) is
  not decided unless ARGV[3] names its attempt token: the caller vouches that it saw
  every part of that attempt in place (or, for cancel and expire only, that the attempt
  is past its lease and presumed dead; releasing what it placed is always safe).

  Input:
    KEYS[1] readiness marker of the order id's group
    KEYS[2] order index record
    ARGV[1] action: 'cancel' | 'ship' | 'expire'
    ARGV[2] now, ms
    ARGV[3] token of a pending attempt the caller vouches for ('' = none)
    ARGV[4] '1': the caller saw every pre-order line of the order converted into a lock
            (an order with pre-order lines, `pre` = '1' on the index, ships only then)
  Output: JSON {status, tok, exp, body[, replayed][, lapsed]}; `lapsed` means the
          reservation had passed expires_at, so it was decided 'expired' instead.
  Errors: not_ready, not_found, invalid_state {status, tok, body[, pending, at]}:
          `pending` means the attempt is still placing its parts, `preorders` that a ship
          needs ARGV[4] (nothing changed).
]]
--- @include "assertReady"
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local cur = rcall('HMGET', KEYS[2], 'st', 'tok', 'exp', 'body', 'ph', 'at', 'pre')
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
if cur[5] == 'p' and ARGV[3] ~= cur[2] then
  out['pending'] = true
  out['at'] = tonumber(cur[6])
  return fail('invalid_state', out)
end
if ARGV[1] ~= 'expire' and now >= exp then
  target = 'expired'
  out['lapsed'] = true
end
if target == 'shipped' and cur[7] == '1' and ARGV[4] ~= '1' then
  out['preorders'] = true
  return fail('invalid_state', out)
end
rcall('HSET', KEYS[2], 'st', target, 'done', ARGV[2])
rcall('HDEL', KEYS[2], 'ph')
out['status'] = target
return reply(out)
