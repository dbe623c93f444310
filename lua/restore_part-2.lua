#!lua
--[[
  Warmup: restores one reservation part (the lines of one order in one slot group) from
  PostgreSQL, unless Redis already holds that part. An active part goes back into the
  group's expiry index; a settled one gets the expiry it had.

  Input:
    KEYS[1] reservation part of the order in this group
    KEYS[2] expiry index of the group (zset, score = expires_at ms)
    ARGV[1] order id            ARGV[2] status: active, cancelled, expired or shipped
    ARGV[3] part fingerprint    ARGV[4] attempt token
    ARGV[5] reserved at, ms     ARGV[6] expires_at, ms
    ARGV[7] JSON lines, each an array: sku, location, qty (in the part's order)
    ARGV[8] fingerprint of the whole order
    ARGV[9] settled at, ms ('' while active)
    ARGV[10] absolute expiry of a settled part, ms ('' while active)
    ARGV[11] JSON bundle lines of the part, as `reserve-4.lua` got them ('' = none)
    ARGV[12] customer id ('' = none)
    ARGV[13] JSON [ [sku, qty, limit generation], ...] the part counted against
             per-customer limits ('' = none)
  Output: JSON {restored: true} or {kept: true}
  Errors: validation_error (unknown status, bad numbers, lines not an array)
]]
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local STATUSES = {active = true, cancelled = true, expired = true, shipped = true}
if not STATUSES[ARGV[2]] then return fail('validation_error', {detail = 'status'}) end
if not tonumber(ARGV[5]) or not tonumber(ARGV[6]) then
  return fail('validation_error', {detail = 'times'})
end
local settled = ARGV[2] ~= 'active'
if settled and (not tonumber(ARGV[9]) or not tonumber(ARGV[10])) then
  return fail('validation_error', {detail = 'a settled part needs its settle time and expiry'})
end
if type(cjson.decode(ARGV[7])) ~= 'table' then
  return fail('validation_error', {detail = 'lines'})
end
if ARGV[13] and ARGV[13] ~= '' and type(cjson.decode(ARGV[13])) ~= 'table' then
  return fail('validation_error', {detail = 'counted'})
end
if rcall('EXISTS', KEYS[1]) == 1 then return reply({kept = true}) end
rcall('HSET', KEYS[1], 'st', ARGV[2], 'fp', ARGV[3], 'tok', ARGV[4], 'at', ARGV[5],
      'exp', ARGV[6], 'lines', ARGV[7], 'ofp', ARGV[8])
if ARGV[11] and ARGV[11] ~= '' then rcall('HSET', KEYS[1], 'bdl', ARGV[11]) end
if ARGV[13] and ARGV[13] ~= '' then rcall('HSET', KEYS[1], 'cu', ARGV[12], 'cnt', ARGV[13]) end
if settled then
  rcall('HSET', KEYS[1], 'done', ARGV[9])
  rcall('PEXPIREAT', KEYS[1], ARGV[10])
else
  rcall('ZADD', KEYS[2], ARGV[6], ARGV[1])
end
return reply({restored = true})
