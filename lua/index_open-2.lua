#!lua
--[[
  Opens (or finds) the index record of an order or transfer in the group of its own id,
  so that GET/cancel/ship by id alone find where its parts live, and a retry with a
  different body is refused before anything is locked.

  Input:
    KEYS[1] readiness marker of the id's group
    KEYS[2] index record
    ARGV[1] fingerprint of the whole request   ARGV[2] attempt token
    ARGV[3] now, ms                             ARGV[4] expires_at, ms ('' = none)
    ARGV[5] body JSON (where the parts live)    ARGV[6] retention after expiry, ms
    ARGV[7] token of a stale attempt to take over from ('' = none)
  Expiry: with an expires_at (an order), a new record expires at expires_at + retention.
          Without one (a transfer, open until received or cancelled), it gets no expiry:
          `index_close-2.lua` sets one when the transfer ends.
  Phase: a record opened or taken over is *pending* (`ph` = 'p') until its attempt has
         placed every part and calls `index_commit-2.lua`; `order_decide-2.lua` will not
         decide a pending order on its own (see there).
  Output: JSON {new: true} when this attempt owns the record now, else
          {dup: true, tok, at, st, exp, body, pending} describing the existing record
  Errors: not_ready, idempotency_mismatch
]]
--- @include "assertReady"
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local cur = rcall('HMGET', KEYS[2], 'fp', 'tok', 'at', 'st', 'exp', 'body', 'ph')
if not cur[1] then
  local fields = {'fp', ARGV[1], 'tok', ARGV[2], 'at', ARGV[3], 'st', 'active', 'body', ARGV[5],
                  'ph', 'p'}
  if ARGV[4] ~= '' then
    fields[#fields + 1] = 'exp'; fields[#fields + 1] = ARGV[4]
  end
  rcall('HSET', KEYS[2], unpack(fields))
  if ARGV[4] ~= '' then rcall('PEXPIREAT', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[6])) end
  return reply({new = true})
end
if cur[1] ~= ARGV[1] then return fail('idempotency_mismatch') end
if ARGV[7] ~= '' and cur[2] == ARGV[7] then
  rcall('HSET', KEYS[2], 'tok', ARGV[2], 'at', ARGV[3], 'ph', 'p')
  return reply({new = true, takeover = true})
end
return reply({dup = true, tok = cur[2], at = tonumber(cur[3]), st = cur[4],
              exp = tonumber(cur[5]), body = cjson.decode(cur[6]), pending = cur[7] == 'p'})
